"""Relabelling a multi-label dataset: adding or removing tags on some of its images, saved as a
new dataset version (``tl_core.data.versions``) whose ``labels.csv`` is rewritten atomically; the
user's own files are never written to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tl_core.common import DatasetError, plural
from tl_core.data.multilabel import join_tags, labels_root, split_tags, tagged_files
from tl_core.data.versions import RELABEL, DatasetVersion, Decision, create_version, original_image


def current_tags(dataset: str | Path) -> dict[str, tuple[str, ...]]:
    """Each listed image's tags in a multi-label dataset (or a version of one), by the image's
    key (its path relative to the original dataset, :func:`original_image`)."""
    dataset = Path(dataset)
    return {
        original_image(dataset, path): split_tags(joined)
        for joined, path in tagged_files(dataset).values()
        if joined is not None
    }


def retag_images(
    dataset: str | Path,
    into: str | Path,
    *,
    add: Mapping[str, Sequence[str]] | None = None,
    remove: Mapping[str, Sequence[str]] | None = None,
) -> DatasetVersion:
    """Adds and removes tags on images of a multi-label dataset, as a new version.

    Args:
        dataset: The multi-label dataset (or a version of it) the user reviewed.
        into: The folder that holds datasets (the workspace's ``datasets/``).
        add: Tags to add, by image key (:func:`original_image`).
        remove: Tags to remove, by image key.

    Returns:
        The new version; its ``labels.csv`` holds every image's tags after the change.

    Raises:
        DatasetError: The dataset has no labels.csv, an image is not listed in it, a tag is
            not one of the dataset's, or nothing would change.
    """
    dataset = Path(dataset)
    add, remove = add or {}, remove or {}
    if labels_root(dataset) is None:
        raise DatasetError(
            f"{dataset.name} has no labels.csv: its images carry one class each.",
            "Move an image to another class instead of adding or removing tags.",
        )
    tags = current_tags(dataset)
    known = {tag for image_tags in tags.values() for tag in image_tags}
    unlisted = sorted((set(add) | set(remove)) - set(tags))
    if unlisted:
        raise DatasetError(
            f"{plural(len(unlisted), 'image')} to retag are not listed in labels.csv: "
            f"{', '.join(unlisted[:3])}.",
            "Load the dataset again: it changed since it was reviewed.",
        )
    unknown = sorted({t for change in (add, remove) for ts in change.values() for t in ts} - known)
    if unknown:
        raise DatasetError(
            f"Unknown tag {', '.join(map(repr, unknown))}: pick one of the dataset's tags.",
            "The dataset's tags are: " + ", ".join(sorted(known)) + ".",
        )
    decisions = {}
    for image in set(add) | set(remove):
        new = (set(tags[image]) | set(add.get(image, ()))) - set(remove.get(image, ()))
        if new != set(tags[image]):
            decisions[image] = Decision(image, RELABEL, join_tags(sorted(new)))
    if not decisions:
        raise DatasetError(
            "There is nothing to save: no image's tags would change.",
            "Add a tag an image lacks, or remove one it has.",
        )
    return create_version(dataset, decisions, sorted(known), into)
