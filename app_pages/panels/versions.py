"""The Data page's list of a dataset's versions: the original and each saved set of decisions,
the one in use marked, a button to switch to any other."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.ui import state
from tl_core.common import escape_markdown
from tl_core.data import DatasetVersion, base_dataset, list_versions, read_version

ORIGINAL_LABEL = "Use the original"
IN_USE = ":green-badge[:material/check: in use]"


def use_label(version: DatasetVersion) -> str:
    """The switch button's text, e.g. "Use v2"."""
    return f"Use v{version.number}"


def version_caption(dataset: str) -> None:
    """Under the dataset's name: which version it is, and of what."""
    version = read_version(dataset)
    if version is not None:
        st.caption(escape_markdown(version.describe().capitalize()))


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _switch(path: Path) -> None:
    st.session_state[state.DATASET_KEY] = str(path)
    st.rerun()  # the sidebar, drawn before this page, names the dataset


def _row(text: str, in_use: bool, button_label: str, path: Path | None) -> None:
    """One line of the list; a switch button unless it is in use or cannot be used."""
    text_col, button_col = st.columns([5, 1], vertical_alignment="center")
    text_col.markdown(f"{text} {IN_USE}" if in_use else text)
    if not in_use and path is not None and button_col.button(button_label, key=f"use:{path}"):
        _switch(path)


def versions_panel(dataset: str, datasets_root: Path) -> None:
    """Every version of ``dataset``'s original, oldest first; nothing when there is none."""
    versions = list_versions(dataset, datasets_root)
    if not versions:
        return
    base = base_dataset(dataset)
    numbers = {v.path.resolve(): v.number for v in versions}
    with st.container(border=True):
        st.markdown("**Versions**")
        st.caption(
            "Each version is your original images with the decisions saved from the galleries "
            "below applied; the original files are never changed. Training uses the one in use."
        )
        if base.is_dir():
            original = f"**Original** · {escape_markdown(base.name)} · your files as they are"
            _row(original, _same(base, dataset), ORIGINAL_LABEL, base)
        else:
            _row(
                f"**Original** · no longer at {escape_markdown(base)} (deleted, moved or "
                "renamed): the versions still train, but a new one needs the original back "
                "there.",
                in_use=False,
                button_label=ORIGINAL_LABEL,
                path=None,
            )
        for version in versions:
            parent = numbers.get(version.parent.resolve())
            origin = f" (from v{parent})" if parent else ""
            created = version.created.replace("T", " ")
            text = (
                f"**v{version.number}**{origin} · {escape_markdown(version.changes)} since "
                f"the original · {escape_markdown(version.path.name)}, saved {created}"
            )
            _row(text, _same(version.path, dataset), use_label(version), version.path)
