"""The validation split of a multi-label dataset: iterative stratification (Sechidis, Tsoumakas
and Vlahavas, "On the Stratification of Multi-Label Data", ECML PKDD 2011), seeded, with copies
of an image kept on one side.

A plain random split of multi-label data can leave a rare tag with no validation image, or none
to train on. Iterative stratification deals the images out tag by tag, rarest tag first: each
image carrying the tag goes to the side that still wants the most images with that tag (ties:
the side that wants the most images overall, then a seeded coin). Each tag then lands on both
sides in about the wanted proportion, rare tags included.

Copies of an image (byte-identical or near-identical, :func:`near_duplicate_groups`) are dealt
out as one unit carrying the union of their tags, so validation never sees a copy of a training
image; copies whose tags differ contradict each other and all train, as in the single-label
split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from tl_core.common import DatasetError
from tl_core.data.near_duplicates import near_duplicate_groups
from tl_core.data.records import DuplicateGroup, ImageItem


def iterative_split(
    items: Sequence[ImageItem],
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    copies: Sequence[DuplicateGroup] | None = None,
    keep_copies_together: bool = True,
) -> tuple[list[ImageItem], list[ImageItem]]:
    """Holds out about ``val_fraction`` of the images, and of each tag's images, for validation.

    The split depends only on ``seed`` and the set of items (not their order).

    Args:
        items: Images with tags (``ImageItem.tags``; empty for an image with none).
        val_fraction: Share held out.
        seed: Seed of the split.
        copies: ``near_duplicate_groups(items)`` when the caller has them already.
        keep_copies_together: Whether copies stay on one side.

    Returns:
        ``(train, val)``, each ordered by path.

    Raises:
        DatasetError: Fewer than 2 images, so one side would be empty.
        ValueError: ``val_fraction`` is not strictly between 0 and 1.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    members = sorted(items, key=lambda i: i.path.as_posix())
    if len(members) < 2:
        raise DatasetError(
            "A multi-label dataset needs at least 2 images to hold one out for validation.",
            hint="Add images and list them in labels.csv.",
        )
    units, must_train = _units(members, keep_copies_together, copies)
    rng = random.Random(f"{seed}/multi-label")
    val_paths = _deal(units, val_fraction, len(members), rng)
    if not val_paths:  # too few images to honour the fraction: hold out the smallest unit
        val_paths = {i.path for i in min(units, key=len)} if units else {members[-1].path}
    val_paths -= must_train
    if len(val_paths) >= len(members):  # every image held out: keep one to train on
        val_paths.discard(members[0].path)
    train = [i for i in members if i.path not in val_paths]
    val = [i for i in members if i.path in val_paths]
    return train, val


def _units(
    members: Sequence[ImageItem],
    keep_copies_together: bool,
    copies: Sequence[DuplicateGroup] | None,
) -> tuple[list[list[ImageItem]], set[Path]]:
    """The images in units that go to one side together, and the paths that must train
    (copies whose tags contradict each other)."""
    if not keep_copies_together:
        return [[item] for item in members], set()
    groups = near_duplicate_groups(members) if copies is None else copies
    group_of: dict[Path, int] = {}
    must_train: set[Path] = set()
    for number, group in enumerate(groups):
        if group.across_classes:
            must_train.update(group.paths)
        else:
            group_of.update(dict.fromkeys(group.paths, number))
    units: dict[object, list[ImageItem]] = {}
    for item in members:
        if item.path not in must_train:
            units.setdefault(group_of.get(item.path, item.path), []).append(item)
    return list(units.values()), must_train


def _deal(
    units: Sequence[list[ImageItem]], val_fraction: float, total: int, rng: random.Random
) -> set[Path]:
    """Sechidis et al.'s algorithm 1 on two sides (0: train, 1: validation): the paths dealt to
    validation."""
    shares = (1 - val_fraction, val_fraction)
    unit_tags = [frozenset(t for item in unit for t in item.tags or ()) for unit in units]
    tag_units: dict[str, list[int]] = {}
    for index, tags in enumerate(unit_tags):
        for tag in tags:
            tag_units.setdefault(tag, []).append(index)
    wanted = [share * total for share in shares]
    wanted_tag = {
        tag: [share * sum(len(units[i]) for i in indices) for share in shares]
        for tag, indices in tag_units.items()
    }
    side_of: dict[int, int] = {}

    def place(index: int, side: int) -> None:
        side_of[index] = side
        wanted[side] -= len(units[index])
        for tag in unit_tags[index]:
            wanted_tag[tag][side] -= len(units[index])

    remaining = {tag: set(indices) for tag, indices in tag_units.items()}
    while any(remaining.values()):
        # The tag with the fewest images still to deal (ties broken by the seeded coin).
        fewest = min(len(left) for left in remaining.values() if left)
        tag = rng.choice(sorted(t for t, left in remaining.items() if len(left) == fewest))
        for index in sorted(remaining[tag]):
            want = wanted_tag[tag]
            side = _pick_side(want, wanted, rng)
            place(index, side)
            for other in unit_tags[index]:
                remaining[other].discard(index)
    for index in range(len(units)):  # images with no tag: by the overall wish alone
        if index not in side_of:
            place(index, _pick_side(wanted, wanted, rng))
    return {item.path for index, side in side_of.items() if side == 1 for item in units[index]}


def _pick_side(want: list[float], overall: list[float], rng: random.Random) -> int:
    """The side that wants the most, then the one that wants the most overall, then a coin."""
    if want[0] != want[1]:
        return 0 if want[0] > want[1] else 1
    if overall[0] != overall[1]:
        return 0 if overall[0] > overall[1] else 1
    return rng.randrange(2)
