"""Grouping a dataset's images into sets of copies: byte-identical files, or pictures whose
perceptual fingerprints match (resized, re-encoded or slightly cropped copies).
"""

from __future__ import annotations

from collections.abc import Sequence

from tl_core.data.image_hash import connected_groups, similar_pairs
from tl_core.data.records import DuplicateGroup, ImageItem


def near_duplicate_groups(items: Sequence[ImageItem]) -> tuple[DuplicateGroup, ...]:
    """Groups of images that are copies of each other: byte-identical, or with matching
    perceptual fingerprints (resized, re-encoded or slightly cropped copies; see
    ``tl_core.data.image_hash``).

    Copies are grouped transitively (A like B and B like C puts all three together), which is
    what a split must keep on one side. Items without a digest or hash (not made by a scan)
    are never grouped.

    Returns:
        The groups, members ordered by path, groups by their first member's path.
    """
    ordered = sorted(items, key=lambda i: i.path.as_posix())
    pairs = similar_pairs([item.fingerprint for item in ordered])
    first_with_digest: dict[str, int] = {}
    for index, item in enumerate(ordered):
        if item.digest is not None:
            first = first_with_digest.setdefault(item.digest, index)
            if first != index:
                pairs.append((first, index))
    return tuple(
        DuplicateGroup(
            tuple(ordered[i].path for i in group), tuple(ordered[i].label for i in group)
        )
        for group in connected_groups(len(ordered), pairs)
    )
