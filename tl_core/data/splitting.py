"""Splitting a dataset for validation: the stratified split that keeps copies of an image on one
side, the check of a separate validation set, and how many validation images leak a copy from
training.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tl_core.common import DatasetError, plural
from tl_core.data.multilabel_split import iterative_split
from tl_core.data.near_duplicates import near_duplicate_groups
from tl_core.data.records import (
    MIN_IMAGES_PER_CLASS,
    DatasetReport,
    DuplicateGroup,
    ImageItem,
    Issue,
)


def stratified_split(
    items: Sequence[ImageItem],
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    keep_copies_together: bool = True,
    copies: Sequence[DuplicateGroup] | None = None,
) -> tuple[list[ImageItem], list[ImageItem]]:
    """Holds out about ``val_fraction`` of each class for validation.

    Every class keeps at least one training and one validation image. The split depends only on
    ``seed`` and the set of items (not their order), and each class is shuffled with its own
    seed, so adding a class does not reshuffle the others.

    Copies of an image (see :func:`near_duplicate_groups`) stay on one side, so the model is
    never validated on a copy of a training image: a class's copies are held out or kept
    together, and copies whose labels contradict each other all train. A class that is one
    group of copies cannot be split without a copy on each side; it is split image by image,
    and :func:`split_overlap` counts what leaks. A class without copies splits exactly as it
    would with ``keep_copies_together=False``.

    Images with tags (a multi-label dataset) are split by :func:`iterative_split` instead.

    Args:
        items: The images.
        val_fraction: Share of each class held out.
        seed: Seed of the split.
        keep_copies_together: Whether copies stay on one side.
        copies: ``near_duplicate_groups(items)`` when the caller has them already (a scan's
            ``report.near_duplicates``), which saves grouping the images a second time.

    Returns:
        ``(train, val)``, each ordered by class, then path.

    Raises:
        DatasetError: A class has fewer than 2 images.
        ValueError: ``val_fraction`` is not strictly between 0 and 1.
    """
    if any(item.tags is not None for item in items):  # a multi-label dataset
        return iterative_split(
            items, val_fraction, seed, keep_copies_together=keep_copies_together, copies=copies
        )
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    by_class: dict[str, list[ImageItem]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    group_of: dict[Path, int] = {}
    conflicting: set[Path] = set()
    if keep_copies_together:
        groups = near_duplicate_groups(items) if copies is None else copies
        for number, group in enumerate(groups):
            group_of.update(dict.fromkeys(group.paths, number))
            if group.across_classes:
                conflicting.update(group.paths)
    train: list[ImageItem] = []
    val: list[ImageItem] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: i.path.as_posix())
        if len(members) < MIN_IMAGES_PER_CLASS:
            raise DatasetError(
                f"Class {label!r} has {plural(len(members), 'image')}; at least 2 are needed "
                "to hold one out for validation.",
                hint="Add images to that class or remove its folder.",
            )
        n_val = min(max(round(len(members) * val_fraction), 1), len(members) - 1)
        rng = random.Random(f"{seed}/{label}")
        units = _copy_units(members, group_of)
        eligible = [unit for unit in units if not conflicting.intersection(u.path for u in unit)]
        if len(eligible) == len(members):  # no copies: the plain split
            held_out = set(rng.sample(range(len(members)), n_val))
            chosen = {members[i].path for i in held_out}
        elif len(units) >= 2 and eligible:
            chosen = {u.path for unit in _pick_units(eligible, n_val, rng) for u in unit}
        else:  # one group of copies (or only conflicts): a copy on each side is unavoidable
            chosen = {members[i].path for i in rng.sample(range(len(members)), n_val)}
        for item in members:
            (val if item.path in chosen else train).append(item)
    return train, val


def _copy_units(members: Sequence[ImageItem], group_of: dict[Path, int]) -> list[list[ImageItem]]:
    """A class's images in units that go to one side together: each group of copies, and each
    image without copies on its own; in the order of their first member."""
    units: dict[object, list[ImageItem]] = {}
    for item in members:
        units.setdefault(group_of.get(item.path, item.path), []).append(item)
    return list(units.values())


def _pick_units(
    units: Sequence[list[ImageItem]], n_val: int, rng: random.Random
) -> list[list[ImageItem]]:
    """Units in a seeded random order, held out while they fit in ``n_val`` images.

    When every unit is larger than ``n_val``, the smallest is held out, so the class still has
    a validation image; the caller ensures another unit is left to train on.
    """
    picked, count = [], 0
    for index in rng.sample(range(len(units)), len(units)):
        if count + len(units[index]) <= n_val:
            picked.append(units[index])
            count += len(units[index])
        if count == n_val:
            break
    return picked or [min(units, key=len)]


def check_validation_classes(train_report: DatasetReport, val_report: DatasetReport) -> list[str]:
    """Checks that a separate validation set fits the training classes.

    Returns:
        Training classes that have no validation images (worth a warning, not an error).

    Raises:
        DatasetError: The validation set has no readable images, or classes the training set
            lacks (the model could never predict them).
    """
    if not val_report.items:
        raise DatasetError(
            f"The validation set {val_report.source.name} has no readable images.",
            hint="Give a folder with one subfolder per class, like the training set.",
        )
    val_classes = {
        name
        for item in val_report.items
        for name in (item.tags if item.tags is not None else (item.label,))
    }
    unknown = sorted(val_classes - set(train_report.class_names))
    if unknown:
        raise DatasetError(
            "The validation set has classes the training set lacks: "
            + ", ".join(repr(c) for c in unknown)
            + ".",
            hint="Name the validation folders exactly like the training class folders.",
        )
    return [name for name in train_report.class_names if name not in val_classes]


# --------------------------------------------------------------------------- split overlap


def split_overlap(
    report: DatasetReport, train: Sequence[ImageItem], val: Sequence[ImageItem]
) -> list[ImageItem]:
    """Validation images with a copy among the training images: byte-identical, or a resized,
    re-encoded or slightly cropped version (``report.near_duplicates``).

    The model has already seen such an image when it is validated on it, so the validation
    accuracy flatters the model. Only copies within the scanned dataset are found (a split of
    ``report.items``); a separate validation folder is not compared.
    """
    train_paths = {item.path for item in train}
    copied = {
        path
        for group in report.near_duplicates or report.duplicates
        if any(p in train_paths for p in group.paths)
        for path in group.paths
    }
    return [item for item in val if item.path in copied]


@dataclass(frozen=True)
class Leakage:
    """Validation images with a copy in training, under the plain and the copy-aware split.

    Attributes:
        before: Under a stratified split that ignores copies (same fraction and seed).
        after: Under :func:`stratified_split`, which keeps copies on one side.
        num_val: Validation images of the copy-aware split.
    """

    before: int
    after: int
    num_val: int

    def to_dict(self) -> dict[str, int]:
        return {"before": self.before, "after": self.after, "num_val": self.num_val}


def split_leakage(report: DatasetReport, val_fraction: float = 0.2, seed: int = 0) -> Leakage:
    """How many validation images had a copy in training before the split kept copies
    together, and how many still do (only when a class is a single group of copies)."""
    plain = stratified_split(report.items, val_fraction, seed, keep_copies_together=False)
    train, val = stratified_split(report.items, val_fraction, seed, copies=report.near_duplicates)
    return Leakage(
        before=len(split_overlap(report, *plain)),
        after=len(split_overlap(report, train, val)),
        num_val=len(val),
    )


def overlap_issue(overlap: int, num_val: int) -> Issue | None:
    """The warning for ``overlap`` validation images (of ``num_val``) copied in training."""
    if not overlap:
        return None
    return Issue(
        "train_val_overlap",
        f"Validation images with an identical or near-identical copy in the training set: "
        f"{overlap:,} of {num_val:,}. The model is validated on images it trained on, so the "
        "validation accuracy flatters it; remove the copies for an honest measure.",
    )
