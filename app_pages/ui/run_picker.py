"""Picking a run: the picker over the runs on disk, its note, and the pointer to Train when
there is none.
"""

from __future__ import annotations

import streamlit as st

from app_pages.ui.feedback import empty_state
from app_pages.ui.state import RUN_KEY, TRAIN_PAGE, workspace
from tl_core.runs import (
    MAX_NOTE_LENGTH,
    RunSummary,
    list_runs,
    preferred_run,
    write_note,
)


def pick_run(label: str = "Run") -> RunSummary | None:
    """A picker over the runs on disk that have weights, newest first, with the run's note
    beside it (None if no run has weights).

    Starts on the session's current run (the one just trained, or picked before), else on
    the most accurate completed run, else on the newest; the choice becomes the current run.
    """
    # Runs inside sweeps and transfer checks open here too; their titles tell them apart.
    runs = [run for run in list_runs(workspace().runs, in_groups=True) if run.has_weights]
    start = preferred_run(runs, st.session_state.get(RUN_KEY))
    if start is None:
        return None
    by_path = {str(run.path): run for run in runs}
    paths = list(by_path)
    picker_col, note_col = st.columns([4, 1], vertical_alignment="bottom")
    choice = picker_col.selectbox(
        label,
        paths,
        index=paths.index(str(start.path)),
        format_func=lambda p: by_path[p].title,
        help="Backbone · what trained · epochs done/planned · best validation accuracy "
        "(95 % interval, validation images) · started · your note",
    )
    st.session_state[RUN_KEY] = choice
    with note_col:
        run_note_input(by_path[choice])
    return by_path[choice]


def run_note_input(summary: RunSummary) -> None:
    """A text field that saves the run's note (kept in its folder) when the user presses Enter."""
    key = f"run_note:{summary.path}"
    st.text_input(
        "Note",
        value=summary.note,
        key=key,
        max_chars=MAX_NOTE_LENGTH,
        placeholder="e.g. clean data",
        help="A few words to tell this run apart; saved in the run folder and shown in the "
        "run's title.",
        on_change=lambda: write_note(summary.path, st.session_state[key]),
    )


def require_run() -> RunSummary:
    """The run picker, or (when no run has weights yet) a pointer to Train and a stop."""
    summary = pick_run()
    if summary is None:
        empty_state("No trained run yet: train a model first.", TRAIN_PAGE, "Go to Train")
        st.stop()
    return summary
