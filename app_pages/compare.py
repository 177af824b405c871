"""Compare runs: every run on disk in one sortable table, groups of runs (transfer checks,
sweeps) with what they found, curves and settings of picked runs side by side, notes, deletion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.ui import feedback, run_picker, state
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.figures import overlay_figure
from tl_core.runs import (
    DIFFERS,
    RunDetails,
    RunGroup,
    delete_run_or_group,
    deletion_targets,
    groups_frame,
    histories,
    load_runs,
    runs_frame,
    settings_frame,
)

st.title("Compare runs")
NOTICE_KEY = "compare_notice"  # what the last deletion did, shown after the redraw
ROUND_KEY = "compare_round"  # a deletion starts the tables' selections afresh
HIGHLIGHT = "background-color: rgba(255, 189, 69, 0.3)"
DATE = st.column_config.DatetimeColumn("date", format="YYYY-MM-DD HH:mm")
GROUP_COLUMNS = {"path": None, "date": DATE, "outcome": st.column_config.TextColumn(width="large")}
RUN_COLUMNS = {
    "path": None,
    "date": DATE,
    "best val accuracy": st.column_config.NumberColumn(format="percent"),
    "training time (s)": st.column_config.NumberColumn(format="%.1f"),
}

ws = state.workspace()
runs, groups = load_runs(ws.runs)
if not runs and not groups:
    feedback.empty_state("No runs yet: train a model first.", state.TRAIN_PAGE, "Go to Train")
    st.stop()
if notice := st.session_state.pop(NOTICE_KEY, None):
    st.success(notice, icon=":material/check_circle:")
round_ = st.session_state.get(ROUND_KEY, 0)


def table(frame: pd.DataFrame, key: str, columns: dict) -> list[int]:
    """A sortable table whose rows can be picked; returns the picked rows' positions."""
    event = st.dataframe(
        frame,
        key=key,
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        column_config=columns,
    )
    return list(event.selection.rows)


def compare(picked: list[RunDetails]) -> None:
    """Curves overlaid, then the settings side by side with those that differ highlighted."""
    curves = histories(picked)
    left, right = st.columns(2)
    left.plotly_chart(overlay_figure(curves, "val_accuracy"), key="compare_accuracy")
    right.plotly_chart(overlay_figure(curves, "val_loss"), key="compare_loss")
    settings = settings_frame(picked)
    differing = int(settings[DIFFERS].sum())
    st.subheader("Settings side by side")
    st.caption(
        f"{plural(differing, 'setting')} {'differs' if differing == 1 else 'differ'}, highlighted."
        if differing
        else "Every setting is the same."
    )
    if st.toggle("Only the settings that differ", key="compare_only_differing"):
        settings = settings[settings[DIFFERS]]
    st.dataframe(
        settings.style.apply(lambda row: [HIGHLIGHT if row[DIFFERS] else ""] * len(row), axis=1)
    )


def manage(picked: list[RunDetails], picked_groups: list[RunGroup]) -> None:
    """Notes on the picked runs; deletion of the picked single runs and groups, once confirmed."""
    with st.expander(f"Notes ({plural(len(picked), 'run')})"):
        for run in picked:
            st.markdown(f"**{escape_markdown(run.label)}**")
            run_picker.run_note_input(run.summary)
    targets = deletion_targets(picked, picked_groups)
    if not picked_groups and any(run.group for run in picked):
        st.caption("A run inside a group is deleted with its group: pick the group to delete it.")
    if not targets:
        return
    with st.form("compare_delete"):
        st.markdown("Delete " + escape_markdown("; ".join(targets.values())) + "?")
        sure = st.checkbox("Yes, delete them for good")
        if not st.form_submit_button("Delete", icon=":material/delete:"):
            return
    if not sure:
        st.warning(
            "Nothing was deleted: tick the box to delete for good.", icon=":material/warning:"
        )
        return
    deleted = []
    for path, what in targets.items():
        try:
            delete_run_or_group(ws, path)
            deleted.append(what)
        except TLStudioError as error:  # a run that started training meanwhile, say
            feedback.show_error(error)
    chosen = st.session_state.get(state.RUN_KEY)
    if chosen and not Path(chosen).exists():
        del st.session_state[state.RUN_KEY]  # the session forgets a run that is gone
    st.session_state[ROUND_KEY] = round_ + 1  # the tables' rows moved: pick afresh
    notice = f"Deleted {escape_markdown('; '.join(deleted))}."
    if len(deleted) == len(targets):
        st.session_state[NOTICE_KEY] = notice
        st.rerun()  # the tables show what is left
    if deleted:  # the errors above say why the others were kept
        st.success(notice, icon=":material/check_circle:")


picked_groups: list[RunGroup] = []
if groups:
    st.subheader("Groups")
    st.caption(
        "Runs trained together to answer one question: did the pretrained weights help "
        "(transfer check), and how many layer groups to freeze (sweep). Pick a group to "
        "compare its runs."
    )
    rows = table(groups_frame(groups), f"compare_groups:{round_}", GROUP_COLUMNS)
    picked_groups = [groups[i] for i in rows]
names = [group.name for group in picked_groups]
shown = [run for run in runs if run.group in names] if names else runs
st.subheader("Runs")
scope = f"The runs of {escape_markdown(', '.join(names))}." if names else "Every run on disk."
st.caption(f"{scope} Click a column's name to sort by it; tick rows to compare them.")
rows = table(runs_frame(shown), f"compare_runs:{round_}:{'|'.join(names)}", RUN_COLUMNS)
picked = [shown[i] for i in rows] or (shown if names else [])
if len(picked) >= 2:
    compare(picked)
else:
    st.info("Tick two or more runs to overlay their curves and see their settings side by side.")
if picked or picked_groups:
    manage(picked, picked_groups)
