"""Workspace: what TL Studio keeps on this computer, and a way to delete old datasets and runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from app_pages.ui import feedback, state
from tl_core.common import TLStudioError, escape_markdown, format_size, plural
from tl_core.runs import StoredFolder

st.title("Workspace")
NOTICE_KEY = "workspace_notice"  # what the last deletion did, shown after the redraw
ws = state.workspace()
st.caption(
    f"Everything TL Studio keeps is under {escape_markdown(ws.root)}. Uploads (images to "
    "predict, test sets, prediction tables) are deleted a day after they arrive. The feature "
    "cache keeps what backbones computed from your images, so comparing them again is quick."
)
if notice := st.session_state.pop(NOTICE_KEY, None):
    st.success(notice, icon=":material/check_circle:")

usage = ws.usage()
areas = {
    "Datasets": usage.datasets,
    "Runs": usage.runs,
    "Uploads": usage.uploads,
    "Weights files": usage.weights,
    "Feature cache": usage.feature_cache,
    "In all": usage.total,
}
for column, (label, size) in zip(st.columns(len(areas)), areas.items(), strict=True):
    column.metric(label, format_size(size))


def forget(deleted: list[Path]) -> None:
    """Drops the session's dataset or run if it was inside a deleted folder."""
    for key in (state.DATASET_KEY, state.RUN_KEY):
        chosen = st.session_state.get(key)
        if chosen and any(Path(chosen).resolve().is_relative_to(p) for p in deleted):
            del st.session_state[key]


def delete_form(kind: str, stored: list[StoredFolder], delete: Callable[[Path], None]) -> None:
    """Picks folders to delete; deletes them only once the user has confirmed."""
    st.subheader(f"{kind.capitalize()}s")
    live = [folder for folder in stored if folder.live]
    choices = {str(folder.path): folder for folder in stored if not folder.live}
    if live:
        st.caption(f"Not offered, since a training is writing to it: {plural(len(live), kind)}.")
    if not choices:
        st.caption(f"No {kind}s to delete.")
        return
    with st.form(f"delete_{kind}s"):
        picked = st.multiselect(
            f"{kind.capitalize()}s to delete",
            list(choices),
            format_func=lambda path: choices[path].title,
        )
        sure = st.checkbox("Yes, delete them for good")
        if not st.form_submit_button(f"Delete {kind}s", icon=":material/delete:"):
            return
    if not picked:
        st.warning(f"Pick the {kind}s to delete first.", icon=":material/warning:")
        return
    size = format_size(sum(choices[path].size for path in picked))
    if not sure:
        st.warning(
            f"Nothing was deleted: tick the box to delete {plural(len(picked), kind)} ({size}).",
            icon=":material/warning:",
        )
        return
    deleted = []
    for path in picked:
        try:
            delete(Path(path))
            deleted.append(Path(path).resolve())
        except TLStudioError as error:  # a run that started training meanwhile, say
            feedback.show_error(error)
    forget(deleted)
    if len(deleted) == len(picked):
        st.session_state[NOTICE_KEY] = f"Deleted {plural(len(deleted), kind)}, {size} freed."
        st.rerun()  # the sizes and lists above show what is left
    if deleted:
        st.success(f"Deleted {plural(len(deleted), kind)}.", icon=":material/check_circle:")


training_on = state.scheduler().datasets_in_use()  # the running job's and those waiting
delete_form(
    "dataset", ws.stored_datasets(), lambda path: ws.delete_dataset(path, in_use=training_on)
)
delete_form("run", ws.stored_runs(), ws.delete_run)
