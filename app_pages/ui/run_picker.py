"""Picking a run: the picker over the runs on disk, its note, and the pointer to Train when
there is none.
"""

from __future__ import annotations

import streamlit as st

from app_pages.ui import state
from app_pages.ui.feedback import callback, empty_state, show_error
from tl_core.runs import (
    MAX_NOTE_LENGTH,
    RunSummary,
    list_runs,
    preferred_run,
    write_note,
)

PICK_ANOTHER = "Pick another run"


def pick_run(label: str = "Run") -> RunSummary | None:
    """A picker over the runs on disk that have weights, newest first, with the run's note
    beside it (None if no run has weights, or while none is picked).

    Starts on the session's current run (the one just trained, or picked before), else on
    the most accurate completed run, else on the newest; the choice becomes the current run.
    When the current run was deleted (in another tab, or on disk), the picker says so and
    starts empty: it never moves to another run on its own.
    """
    # Runs inside sweeps and transfer checks open here too; their titles tell them apart.
    runs = [run for run in list_runs(state.workspace().runs, in_groups=True) if run.has_weights]
    current = state.current_run()
    vanished = st.session_state.get(state.VANISHED_RUN_KEY)
    notice = st.container()  # above the picker: what became of the run it showed
    start = preferred_run(runs, current)
    if start is None:
        if vanished:
            with notice:
                show_error(state.vanished_run(vanished))
        return None
    by_path = {str(run.path): run for run in runs}
    paths = list(by_path)
    picker_col, note_col = st.columns([4, 1], vertical_alignment="bottom")
    choice = picker_col.selectbox(
        label,
        paths,
        index=None if vanished else paths.index(str(start.path)),
        format_func=lambda p: by_path[p].title,
        placeholder=PICK_ANOTHER,
        help="Backbone · what trained · epochs done/planned · best validation accuracy "
        "(95 % interval, validation images) · started · your note",
    )
    if choice is None:
        with notice:
            show_error(state.vanished_run(vanished))
        return None
    state.choose_run(choice)
    with note_col:
        run_note_input(by_path[choice])
    return by_path[choice]


def save_note(path: str, key: str) -> None:
    """Saves the note typed under ``key``; a run deleted meanwhile keeps none (the page says
    it was deleted, as the script runs next)."""
    if state.run_exists(path):
        write_note(path, st.session_state[key])


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
        on_change=callback(save_note),
        args=(str(summary.path), key),
    )


def require_run() -> RunSummary:
    """The run picker, or (when no run has weights yet) a pointer to Train and a stop."""
    summary = pick_run()
    if summary is None:
        if not st.session_state.get(state.VANISHED_RUN_KEY):  # else the picker said why
            empty_state("No trained run yet: train a model first.", state.TRAIN_PAGE, "Go to Train")
        st.stop()
    return summary
