"""Fixing the tags of a multi-label dataset from a gallery: each image shows its tags in a
multi-select, and one save button turns every change (tags added, tags removed) into a new
version of the dataset (``tl_core.data.retag_images``), which becomes the current dataset. The
user's files are never changed. The Data page's tag review and the Evaluate page's missed and
added images share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import streamlit as st

from app_pages.panels import decisions as decisions_panel
from app_pages.ui import feedback, state
from tl_core.common import TLStudioError, plural
from tl_core.data import retag_images

SAVE_LABEL = "Save tag changes as a new version"
NOTHING_CHANGED = "Add or remove a tag on at least one image first: nothing is saved until then."


@dataclass(frozen=True)
class TaggedImage:
    """One image of a tag gallery.

    Attributes:
        key: The image's path relative to the original dataset (``original_image``).
        path: The file to show.
        tags: The tags it carries now.
        caption: Markdown under the thumbnail (user text in it already escaped).
    """

    key: str
    path: str
    tags: tuple[str, ...]
    caption: str


@dataclass
class TagChanges:
    """Tags to add and to remove, by image key."""

    add: dict[str, list[str]] = field(default_factory=dict)
    remove: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(set(self.add) | set(self.remove))


def widget_key(scope: str, dataset: str, image: str) -> str:
    """The session key of one image's tag picker, per gallery, dataset and image."""
    return f"tags:{scope}:{dataset}:{image}"


def gallery(
    scope: str, dataset: str, images: Sequence[TaggedImage], tag_names: Sequence[str]
) -> TagChanges:
    """Thumbnails in wrapping rows, each with a picker of its tags (starting on its own).

    Returns:
        The tags added and removed so far.
    """
    changes = TagChanges()
    size = decisions_panel.CARD_SIZE
    with st.container(horizontal=True, gap="medium"):
        for image in images:
            with st.container(width=size):
                decisions_panel.image_card(image.path, image.caption, size)
                chosen = st.multiselect(
                    "Tags",
                    list(tag_names),
                    default=[tag for tag in image.tags if tag in tag_names],
                    key=widget_key(scope, dataset, image.key),
                    placeholder="no tag",
                    label_visibility="collapsed",
                )
                if added := sorted(set(chosen) - set(image.tags)):
                    changes.add[image.key] = added
                if removed := sorted(set(image.tags) - set(chosen)):
                    changes.remove[image.key] = removed
    return changes


def save_button(scope: str, dataset: str, changes: TagChanges) -> None:
    """The gallery's save button, disabled with the reason until a tag was changed."""
    label = f"{SAVE_LABEL} ({plural(len(changes), 'image')})"
    if decisions_panel.version_button(
        label, f"{scope}_save_tags", NOTHING_CHANGED if not changes else None
    ):
        save(scope, dataset, changes)


def save(scope: str, dataset: str, changes: TagChanges) -> None:
    """Builds the version and makes it the current dataset (or shows why it could not)."""
    try:
        version = retag_images(
            dataset, state.workspace().datasets, add=changes.add, remove=changes.remove
        )
    except TLStudioError as error:
        feedback.show_error(error)
        return
    for image in set(changes.add) | set(changes.remove):  # the new version starts afresh
        st.session_state.pop(widget_key(scope, dataset, image), None)
    decisions_panel.use_version(version)
