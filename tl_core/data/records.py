"""The records a dataset scan produces: labelled images, skipped files, groups of copies,
health findings, and the report that holds them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.common import DatasetError
from tl_core.data.image_hash import Fingerprint

if TYPE_CHECKING:
    import pandas as pd


MIN_IMAGES_PER_CLASS = 2
TINY_CLASS_IMAGES = 10
# Why a file of a multi-label dataset is left out (see tl_core.data.multilabel).
SKIP_NOT_LISTED = "not listed in labels.csv"
SKIP_LISTED_MISSING = "listed in labels.csv but not found in the dataset"


# slots: a scan of 100,000 images holds 100,000 items; without a __dict__ each is ~100 bytes
# lighter (tests/test_scale.py bounds the bytes per item).
@dataclass(frozen=True, slots=True)
class ImageItem:
    """One labelled image file.

    Attributes:
        path: The file.
        label: Its class; for an image of a multi-label dataset, its tags joined by ";" in
            sorted order ("" for none), so copies with different tags tell apart.
        digest: BLAKE2b hash of the file's bytes, set by the scan (equal for exact copies).
        fingerprint: Perceptual fingerprint of the picture, set by the scan (close for resized
            or re-encoded copies); None for an image too flat to fingerprint.
        tags: The image's tags in a multi-label dataset (``labels.csv``), sorted; None in a
            dataset of class folders.
    """

    path: Path
    label: str
    # What the scan measured; not part of the item's identity (a hand-made item has neither).
    digest: str | None = field(default=None, compare=False, repr=False)
    fingerprint: Fingerprint | None = field(default=None, compare=False, repr=False)
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out of the dataset, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical content (``duplicates``) or nearly so (``near_duplicates``)."""

    paths: tuple[Path, ...]
    labels: tuple[str, ...]

    @property
    def across_classes(self) -> bool:
        """True when the copies carry different labels, i.e. the labels contradict each other."""
        return len(set(self.labels)) > 1


@dataclass(frozen=True)
class Issue:
    """A finding of the health check: ``code`` is stable for programs, ``message`` is for people."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class DatasetReport:
    """What a scan found: the usable images, what was skipped, and what may hurt training.

    Attributes:
        source: The folder or .zip that was scanned.
        root: The folder whose subfolders are the classes (inside the extraction folder for a
            zip, and below any single wrapping folder).
        class_names: Class folder names, sorted; a class folder without readable images is
            still listed, so the report can say so.
        items: Readable images, ordered by class then path.
        skipped: Files left out, each with a reason. Hidden and OS clutter files are not listed.
        duplicates: Groups of byte-identical files.
        near_duplicates: Groups of images that are copies of each other, byte-identical or
            resized, re-encoded or slightly cropped (see :func:`near_duplicate_groups`).
        hidden_folders: Folders beside the classes whose names start with a dot: never
            classes, but listed so a folder named ``.cats`` is not dropped without a word.
        errors: Problems that block training.
        warnings: Problems that do not block training but may hurt it.
        scan_seconds: How long reading and decoding every file took.
        multi_label: The dataset carries a ``labels.csv``: ``class_names`` are its tags, an
            image may carry several or none (``ImageItem.tags``), and ``counts`` are images
            per tag (see ``tl_core.data.multilabel``).
    """

    source: Path
    root: Path
    class_names: tuple[str, ...]
    items: tuple[ImageItem, ...]
    skipped: tuple[SkippedFile, ...] = ()
    duplicates: tuple[DuplicateGroup, ...] = ()
    near_duplicates: tuple[DuplicateGroup, ...] = ()
    hidden_folders: tuple[str, ...] = ()
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    scan_seconds: float = 0.0
    multi_label: bool = False
    _counts: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.multi_label:
            counts = Counter(tag for item in self.items for tag in item.tags or ())
        else:
            counts = Counter(item.label for item in self.items)
        object.__setattr__(self, "_counts", {name: counts[name] for name in self.class_names})

    @property
    def counts(self) -> dict[str, int]:
        """Readable images per class (per tag in a multi-label dataset), in ``class_names``
        order."""
        return dict(self._counts)

    @property
    def num_images(self) -> int:
        return len(self.items)

    @property
    def imbalance_ratio(self) -> float | None:
        """Largest class size over smallest non-empty class size; None without images."""
        sizes = [n for n in self._counts.values() if n > 0]
        return max(sizes) / min(sizes) if sizes else None

    @property
    def tiny_classes(self) -> list[str]:
        """Classes that can train but hold fewer than ``TINY_CLASS_IMAGES`` images."""
        return [
            name
            for name, n in self._counts.items()
            if MIN_IMAGES_PER_CLASS <= n < TINY_CLASS_IMAGES
        ]

    @property
    def can_train(self) -> bool:
        return not self.errors

    @property
    def near_copies(self) -> list[DuplicateGroup]:
        """Near-duplicate groups other than sets of byte-identical files (those are in
        ``duplicates``): resized, re-encoded or cropped copies, with or without exact ones."""
        exact = {frozenset(group.paths) for group in self.duplicates}
        return [g for g in self.near_duplicates if frozenset(g.paths) not in exact]

    def require_trainable(self) -> None:
        """Raises DatasetError listing the blocking problems, if there are any."""
        if self.errors:
            raise DatasetError(
                "The dataset cannot be used for training: "
                + " ".join(issue.message for issue in self.errors),
                hint="Fix the folders listed above and load the dataset again.",
            )

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset root, with forward slashes."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary; file paths are relative to ``root``. A multi-label
        dataset's also holds ``multi_label`` (see :meth:`multi_label_summary`) and each item's
        ``tags``."""
        summary = {
            "source": str(self.source),
            "root": str(self.root),
            "class_names": list(self.class_names),
            "classes": [{"name": name, "images": n} for name, n in self.counts.items()],
            "counts": self.counts,
            "num_images": self.num_images,
            "imbalance_ratio": self.imbalance_ratio,
            "tiny_classes": self.tiny_classes,
            "can_train": self.can_train,
            "errors": [issue.to_dict() for issue in self.errors],
            "warnings": [issue.to_dict() for issue in self.warnings],
            "items": [{"path": self.relative(i.path), "label": i.label} for i in self.items],
            "skipped": [{"path": self.relative(s.path), "reason": s.reason} for s in self.skipped],
            "duplicates": [
                {
                    "paths": [self.relative(p) for p in group.paths],
                    "labels": list(group.labels),
                    "across_classes": group.across_classes,
                }
                for group in self.duplicates
            ],
            "near_duplicates": [
                {
                    "images": [self.relative(p) for p in group.paths],
                    "labels": list(group.labels),
                    "conflict": group.across_classes,
                }
                for group in self.near_duplicates
            ],
            "hidden_folders": list(self.hidden_folders),
            "scan_seconds": round(self.scan_seconds, 3),
        }
        if self.multi_label:
            summary["multi_label"] = self.multi_label_summary()
            for row, item in zip(summary["items"], self.items, strict=True):
                row["tags"] = list(item.tags or ())
        return summary

    def multi_label_summary(self) -> dict[str, Any]:
        """A multi-label dataset's health: images per tag, tags per image, the pairs of tags
        seen together, the images with no tag, and the files left out with their reason."""

        def files(reason: str) -> list[str]:
            return [self.relative(s.path) for s in self.skipped if s.reason == reason]

        return {
            "tags": self.counts,
            "tags_per_image": {str(k): v for k, v in tags_per_image(self.items).items()},
            "co_occurrence": [
                {"tags": list(pair), "images": n} for pair, n in co_occurrence(self.items).items()
            ],
            "untagged": [self.relative(i.path) for i in self.items if not i.tags],
            "listed_missing": files(SKIP_LISTED_MISSING),
            "not_listed": files(SKIP_NOT_LISTED),
        }

    def counts_frame(self) -> pd.DataFrame:
        """Images per class as a DataFrame with columns ``class`` and ``images``."""
        import pandas as pd  # Deferred: DataLoader workers import this module but never need it.

        return pd.DataFrame(
            {"class": list(self._counts), "images": list(self._counts.values())}
        ).astype({"class": "string", "images": "int64"})


def tags_per_image(items: Sequence[ImageItem]) -> dict[int, int]:
    """How many images carry 0, 1, 2... tags (multi-label datasets)."""
    return dict(sorted(Counter(len(item.tags or ()) for item in items).items()))


def co_occurrence(items: Sequence[ImageItem]) -> dict[tuple[str, str], int]:
    """Images carrying each pair of tags together, most frequent first (multi-label datasets)."""
    pairs = Counter(pair for item in items for pair in combinations(sorted(item.tags or ()), 2))
    return dict(pairs.most_common())
