"""Deciding about images from a gallery, and saving the decisions as a new dataset version.

Three galleries share this: suspected label errors and near-identical images on the Data page,
and a confusion-matrix cell on the Evaluate page. Each image gets one choice (undecided,
relabel as a class with the likeliest one first, exclude, keep) and each gallery one save
button, which builds a new version of the dataset (``tl_core.data.versions``: the user's
files are never modified) and makes it the current dataset, so the next training uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app_pages.ui import dataset_view, feedback, state
from tl_core.common import TLStudioError, escape_markdown, plural
from tl_core.data import EXCLUDE, KEEP, RELABEL, DatasetVersion, Decision, create_version

SAVE_LABEL = "Save decisions as a new version"
UNDECIDED = "Undecided"
RELABEL_PREFIX = "Relabel as "
EXCLUDE_CHOICE = "Exclude from training"
KEEP_CHOICE = "Keep: the label is right"
NOTHING_DECIDED = "Pick a decision for at least one image first: nothing is saved until then."
NOTICE_KEY = "decisions_notice"
CARD_SIZE = dataset_view.THUMB_SIZE * 2  # wide enough for the choice's text under the thumbnail


@dataclass(frozen=True)
class Candidate:
    """One image of a gallery, ready for a decision.

    Attributes:
        key: The image's path relative to the original dataset (``original_image``): what a
            decision is about, the same in every version.
        path: The file to show.
        label: The class it carries now.
        caption: Markdown under the thumbnail (user text in it already escaped).
        suggested: The class to offer first for a relabel (the model's belief, the other
            copies' label), or None.
    """

    key: str
    path: str
    label: str
    caption: str
    suggested: str | None = None


def widget_key(scope: str, dataset: str, image: str) -> str:
    """The session key of one image's choice; ``scope`` names the gallery, so one image shown
    in two galleries has two independent choices."""
    return f"decision:{scope}:{dataset}:{image}"


def choices(candidate: Candidate, class_names: Sequence[str]) -> list[str]:
    """Undecided, the suggested relabel, exclude, keep, then a relabel to every other class."""
    suggested = [candidate.suggested] if candidate.suggested not in (None, candidate.label) else []
    others = [name for name in class_names if name != candidate.label and name not in suggested]
    return [
        UNDECIDED,
        *(RELABEL_PREFIX + name for name in suggested),
        EXCLUDE_CHOICE,
        KEEP_CHOICE,
        *(RELABEL_PREFIX + name for name in others),
    ]


def decision_for(image: str, choice: str) -> Decision | None:
    """The decision a choice stands for (None while undecided)."""
    if choice == EXCLUDE_CHOICE:
        return Decision(image, EXCLUDE)
    if choice == KEEP_CHOICE:
        return Decision(image, KEEP)
    if choice.startswith(RELABEL_PREFIX):
        return Decision(image, RELABEL, choice.removeprefix(RELABEL_PREFIX))
    return None


def image_card(path: str, caption: str, size: int = CARD_SIZE) -> None:
    """A gallery cell's thumbnail (left out when unreadable) and caption."""
    thumb = dataset_view.thumbnail(path, size)
    if thumb is not None:
        st.image(thumb, width=size)
    st.caption(caption)


def gallery(
    scope: str,
    dataset: str,
    candidates: Sequence[Candidate],
    class_names: Sequence[str],
    size: int = CARD_SIZE,
) -> dict[str, Decision]:
    """Thumbnails in wrapping rows, each with its caption and choice.

    Returns:
        The decisions picked so far, by image key.
    """
    decisions: dict[str, Decision] = {}
    with st.container(horizontal=True, gap="medium"):
        for candidate in candidates:
            with st.container(width=size):
                image_card(candidate.path, candidate.caption, size)
                choice = st.selectbox(
                    "Decision",
                    choices(candidate, class_names),
                    key=widget_key(scope, dataset, candidate.key),
                    label_visibility="collapsed",
                )
                if (decision := decision_for(candidate.key, choice)) is not None:
                    decisions[candidate.key] = decision
    return decisions


def save_button(
    scope: str, dataset: str, root: Path, class_names: Sequence[str], decisions: dict[str, Decision]
) -> None:
    """The gallery's save button: disabled, with the reason, until something is decided.

    Args:
        scope: The gallery (as given to :func:`gallery`).
        dataset: The dataset as the gallery's choices were keyed.
        root: The dataset's root folder (the scan's), of which the version is made.
        class_names: The classes a relabel may use.
        decisions: What :func:`gallery` returned.
    """
    label = f"{SAVE_LABEL} ({plural(len(decisions), 'decision')})"
    if version_button(label, f"{scope}_save", NOTHING_DECIDED if not decisions else None):
        save(scope, dataset, root, class_names, decisions)


def version_button(label: str, key: str, nothing: str | None) -> bool:
    """A gallery's save button; while ``nothing`` says why there is nothing to save yet, it is
    disabled with that sentence under it. Returns whether it was clicked."""
    clicked = st.button(
        label, type="primary", icon=":material/save:", disabled=nothing is not None, key=key
    )
    if nothing is not None:
        st.caption(nothing)
    return clicked


def save(
    scope: str, dataset: str, root: Path, class_names: Sequence[str], decisions: dict[str, Decision]
) -> None:
    """Builds the version and makes it the current dataset (or shows why it could not)."""
    try:
        version = create_version(root, decisions, list(class_names), state.workspace().datasets)
    except TLStudioError as error:
        feedback.show_error(error)
        return
    for image in decisions:  # the next version starts with no pending choice
        st.session_state.pop(widget_key(scope, dataset, image), None)
    use_version(version)


def use_version(version: DatasetVersion) -> None:
    """Makes a version just saved the current dataset, with a notice saying so."""
    st.session_state[NOTICE_KEY] = (
        f"Saved {escape_markdown(version.describe())}. It is now the current dataset and the "
        "next training uses it; your original files are unchanged."
    )
    st.session_state[state.DATASET_KEY] = str(version.path)
    st.rerun()  # the page, the sidebar and the health report all show the new version


def show_notice(next_page: str | None = None, label: str = "") -> None:
    """The notice of a version just saved (once), with a link onwards when given."""
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.success(notice, icon=":material/check_circle:")
        if next_page:
            st.page_link(next_page, label=label, icon=":material/arrow_forward:")
