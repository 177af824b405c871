"""Scanning a dataset: every file of a folder (or an extracted zip) is read and really decoded
once, so anything that would break training later is reported up front, with the reason, in a
:class:`~tl_core.data.records.DatasetReport` with its blocking errors and its warnings.

A dataset is a folder holding one subfolder per class, or a .zip of such a folder (wrapped in a
single top folder or not); or, with several labels per image, a folder of images with a
``labels.csv`` (see :mod:`tl_core.data.multilabel`).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tl_core.common import DatasetError, plural
from tl_core.data.archives import extract_zip
from tl_core.data.folders import (
    SKIP_LINK_INTO_ITSELF,
    class_folders,
    find_root,
    visible_entries,
    walk_visible_files,
)
from tl_core.data.image_hash import Fingerprint, fingerprint
from tl_core.data.images import UnusableFile, decode, decode_failure, open_image_file
from tl_core.data.multilabel import (
    LABELS_CSV,
    join_tags,
    labels_root,
    listed_images,
    multi_label_errors,
    multi_label_warnings,
    read_labels_csv,
)
from tl_core.data.near_duplicates import near_duplicate_groups
from tl_core.data.records import (
    MIN_IMAGES_PER_CLASS,
    SKIP_LISTED_MISSING,
    SKIP_NOT_LISTED,
    TINY_CLASS_IMAGES,
    DatasetReport,
    DuplicateGroup,
    ImageItem,
    Issue,
    SkippedFile,
)

IMBALANCE_WARNING_RATIO = 3.0

# Scanning decodes JPEGs at a reduced DCT scale: the entropy-coded data is still read to the
# end, so truncation is caught, at a fraction of the cost of a full-resolution decode.
_SCAN_DRAFT_SIZE = 64

SKIP_LOOSE = "not inside a class folder"


@dataclass(frozen=True)
class _FileCheck:
    path: Path
    digest: str | None = None
    fingerprint: Fingerprint | None = None
    problem: str | None = None


def _check_file(path: Path) -> _FileCheck:
    """Hashes and decodes one file, streaming it from disk; never raises.

    Pipes, devices and oversized files are never read (see ``open_image_file``), and the
    file is hashed in chunks, so memory stays flat whatever the dataset holds. The decoded
    picture also gives the perceptual hash, so finding near-copies costs no second decode.
    """
    try:
        with open_image_file(path) as file:
            digest = hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16))
            file.seek(0)
            try:
                image = decode(file, _SCAN_DRAFT_SIZE)
            except Exception as exc:  # Decoders raise many exception types on malformed data.
                return _FileCheck(path, digest.hexdigest(), problem=decode_failure(exc))
    except UnusableFile as exc:
        return _FileCheck(path, problem=str(exc))
    except OSError as exc:  # a read error after the file was opened
        return _FileCheck(path, problem=f"unreadable: {exc.strerror or exc}")
    return _FileCheck(path, digest.hexdigest(), fingerprint(image))


def _in_order(
    pool: ThreadPoolExecutor, function: Callable, inputs: Sequence, in_flight: int
) -> Iterator:
    """``pool.map(function, inputs)`` with at most ``in_flight`` calls submitted at a time.

    ``Executor.map`` submits every call at once: 100,000 futures, and every result finished
    ahead of the consumer, stay in memory. A bounded window keeps the threads busy all the same.
    """
    pending: collections.deque[Future] = collections.deque()
    for value in inputs:
        if len(pending) >= in_flight:
            yield pending.popleft().result()
        pending.append(pool.submit(function, value))
    while pending:
        yield pending.popleft().result()


def _resolve_source(source: Path, extract_to: Path | None) -> Path:
    if not source.exists():
        raise DatasetError(
            f"{source} does not exist.",
            hint="Check the path, or upload the dataset as a .zip of class folders.",
        )
    if source.is_dir():
        return source
    if not zipfile.is_zipfile(source):
        if source.suffix.lower() == ".zip":
            raise DatasetError(
                f"{source.name} is not a valid zip archive.",
                hint="The file may be damaged or incompletely uploaded; create the zip again.",
            )
        raise DatasetError(
            f"{source.name} is neither a folder nor a .zip archive.",
            hint="Give a folder with one subfolder per class, or a .zip of such a folder.",
        )
    if extract_to is None:
        # A temporary extraction nobody deletes is how temp folders fill up: whoever scans a
        # zip says where it goes, or uses scanned_dataset(), which cleans up.
        raise ValueError("scanning a zip needs extract_to, or use scanned_dataset()")
    return extract_zip(source, extract_to)


@contextlib.contextmanager
def scanned_dataset(source: str | Path, **kwargs: Any) -> Iterator[DatasetReport]:
    """Scans a folder or a zip for the length of a ``with`` block.

    A zip is extracted into a temporary folder that is deleted when the block ends, also on
    an error, so a command that does not promise to keep the images leaves nothing behind.

    Args:
        source: A folder with one subfolder per class, or a .zip of such a folder.
        **kwargs: Passed to :func:`scan_dataset` (``progress``, ``max_workers``).
    """
    with tempfile.TemporaryDirectory(prefix="tl-studio-dataset-") as tmp:
        yield scan_dataset(source, extract_to=Path(tmp) / "data", **kwargs)


def scan_dataset(
    source: str | Path,
    extract_to: str | Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    max_workers: int | None = None,
) -> DatasetReport:
    """Reads, decodes and hashes every file of a dataset and reports on its health.

    Images inside a class folder may sit in nested subfolders; they take the class folder's
    name. Images loose at the top level, unreadable files and non-images are skipped with a
    reason. Files are decoded in a thread pool (Pillow releases the GIL while decoding).

    Args:
        source: A folder with one subfolder per class, or a .zip of such a folder.
        extract_to: Where a zip is extracted (a new folder); required for a zip (use
            :func:`scanned_dataset` for a temporary one). Ignored for folders.
        progress: Called as ``progress(done, total)`` while files are checked.
        max_workers: Threads used to decode; None picks one from the CPU count.

    Raises:
        DatasetError: ``source`` is missing, is neither a folder nor a zip, or the zip is
            damaged or unsafe. Problems with the images themselves go into the report.
    """
    started = time.perf_counter()
    source = Path(source).expanduser().resolve()
    extracted = _resolve_source(source, Path(extract_to) if extract_to is not None else None)
    tagged_root = labels_root(extracted)
    if tagged_root is not None:
        report = _scan_tagged(source, tagged_root, progress, max_workers)
    else:
        report = _scan_class_folders(source, find_root(extracted), progress, max_workers)
    return replace(
        report,
        errors=tuple(_blocking_errors(report)),
        warnings=tuple(_warnings(report)),
        scan_seconds=time.perf_counter() - started,
    )


# One file to check: its path, its class (None: left out for ``reason``), its tags.
_Candidate = tuple[Path, str | None, tuple[str, ...] | None]


def _scan_class_folders(
    source: Path, root: Path, progress: Callable | None, max_workers: int | None
) -> DatasetReport:
    """The report of a dataset of class folders (no labels.csv)."""
    class_dirs, looping = class_folders(root)
    class_names = tuple(d.name for d in class_dirs)
    hidden_folders = tuple(
        sorted(
            entry.name
            for entry in os.scandir(root)
            if entry.name.startswith(".") and entry.is_dir()
        )
    )
    candidates: list[_Candidate] = [(path, None, None) for path in visible_entries(root)[1]]
    for class_dir in class_dirs:
        candidates.extend((path, class_dir.name, None) for path in walk_visible_files(class_dir))
    items, skipped, duplicates = _check_candidates(candidates, SKIP_LOOSE, progress, max_workers)
    return DatasetReport(
        source=source,
        root=root,
        class_names=class_names,
        items=tuple(items),
        skipped=tuple([SkippedFile(link, SKIP_LINK_INTO_ITSELF) for link in looping] + skipped),
        duplicates=duplicates,
        near_duplicates=near_duplicate_groups(items),
        hidden_folders=hidden_folders,
    )


def _scan_tagged(
    source: Path, root: Path, progress: Callable | None, max_workers: int | None
) -> DatasetReport:
    """The report of a multi-label dataset: every image under ``root`` with its tags from
    ``labels.csv`` (see ``tl_core.data.multilabel``)."""
    listed = read_labels_csv(root / LABELS_CSV)
    files = [p for p in walk_visible_files(root) if p != root / LABELS_CSV]
    paired, missing = listed_images(root, files, listed)
    candidates: list[_Candidate] = [
        (path, None if tags is None else join_tags(tags), tags) for path, tags in paired
    ]
    items, skipped, duplicates = _check_candidates(
        candidates, SKIP_NOT_LISTED, progress, max_workers
    )
    skipped.extend(SkippedFile(path, SKIP_LISTED_MISSING) for path in missing)
    return DatasetReport(
        source=source,
        root=root,
        class_names=tuple(sorted({tag for tags in listed.values() for tag in tags})),
        items=tuple(sorted(items, key=lambda i: i.path.as_posix())),
        skipped=tuple(skipped),
        duplicates=duplicates,
        near_duplicates=near_duplicate_groups(items),
        multi_label=True,
    )


def _check_candidates(
    candidates: Sequence[_Candidate],
    unlabelled: str,
    progress: Callable[[int, int], None] | None,
    max_workers: int | None,
) -> tuple[list[ImageItem], list[SkippedFile], tuple[DuplicateGroup, ...]]:
    """Decodes and hashes every candidate in a thread pool: the readable labelled images, the
    files left out (unlabelled ones for the reason ``unlabelled``), and the groups of
    byte-identical images."""
    workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
    items: list[ImageItem] = []
    skipped: list[SkippedFile] = []
    first_of_digest: dict[str, ImageItem] = {}
    copies: dict[str, list[ImageItem]] = {}  # only digests seen twice or more
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = _in_order(pool, _check_file, [path for path, _, _ in candidates], workers * 4)
        for done, ((path, label, tags), check) in enumerate(
            zip(candidates, checks, strict=True), 1
        ):
            if check.problem is not None:
                skipped.append(SkippedFile(path, check.problem))
            elif label is None:
                skipped.append(SkippedFile(path, unlabelled))
            else:
                item = ImageItem(path, label, check.digest, check.fingerprint, tags)
                items.append(item)
                first = first_of_digest.setdefault(check.digest, item)
                if first is not item:
                    copies.setdefault(check.digest, [first]).append(item)
            if progress is not None:
                progress(done, len(candidates))
    del first_of_digest

    # Groups in the order of their first file, as the scan met them.
    order = {item.path: index for index, item in enumerate(items) if item.digest in copies}
    duplicates = tuple(
        DuplicateGroup(tuple(i.path for i in group), tuple(i.label for i in group))
        for group in sorted(copies.values(), key=lambda group: order[group[0].path])
    )
    return items, skipped, duplicates


def _blocking_errors(report: DatasetReport) -> Iterator[Issue]:
    loose = sum(1 for s in report.skipped if s.reason == SKIP_LOOSE)
    if not report.items:
        hint = (
            f" {plural(loose, 'image')} lie at the top level: put each class's images in a "
            "folder named after the class."
            if loose
            else " Expected one folder per class, each holding that class's images."
        )
        if report.multi_label:
            hint = " Check the image paths in labels.csv: they are relative to its folder."
        yield Issue("no_images", f"No readable images were found in {report.root.name}.{hint}")
        return
    if report.multi_label:
        yield from multi_label_errors(report.items, report.class_names)
        return
    if len(report.class_names) < 2:
        found = ", ".join(repr(c) for c in report.class_names) or "none"
        yield Issue(
            "too_few_classes",
            f"Found {plural(len(report.class_names), 'class')} ({found}); at least 2 are "
            "needed, each in its own folder.",
        )
    for name, n in report.counts.items():
        if n < MIN_IMAGES_PER_CLASS:
            yield Issue(
                "class_too_small",
                f"Class {name!r} has {plural(n, 'readable image')}; each class needs at least "
                f"{MIN_IMAGES_PER_CLASS} (one to train on, one to validate).",
            )


def _near_duplicate_warnings(report: DatasetReport) -> Iterator[Issue]:
    """Warnings for copies that are not byte-identical (those have warnings of their own)."""
    near = report.near_copies
    conflicts = [g for g in near if g.across_classes]
    if conflicts:
        example = " ~ ".join(report.relative(p) for p in conflicts[0].paths[:2])
        yield Issue(
            "near_duplicates_across_classes",
            f"{plural(len(conflicts), 'group')} of near-identical images (resized, re-encoded "
            f"or cropped copies) carry different labels, which contradict each other (e.g. "
            f"{example}). Keep each picture in one class.",
        )
    copies = sum(len(g.paths) - 1 for g in near if not g.across_classes)
    if copies:
        yield Issue(
            "near_duplicates_within_class",
            f"{plural(copies, 'image')} are near-identical copies (resized, re-encoded or "
            "cropped) of another image in the same class; the split keeps each group of "
            "copies on one side, so validation never sees a copy of a training image.",
        )


def _warnings(report: DatasetReport) -> Iterator[Issue]:
    if report.multi_label:
        reasons = Counter(s.reason for s in report.skipped)
        yield from multi_label_warnings(
            report.items, reasons[SKIP_NOT_LISTED], reasons[SKIP_LISTED_MISSING]
        )
    ratio = report.imbalance_ratio
    if ratio is not None and ratio >= IMBALANCE_WARNING_RATIO:
        counts = {k: v for k, v in report.counts.items() if v}
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        yield Issue(
            "imbalance",
            f"Tags are imbalanced ({ratio:.1f}x): {big!r} is on {counts[big]:,} images, "
            f"{small!r} on only {counts[small]:,}. Add images with the rare tags if you can; "
            "macro F1 counts every tag alike."
            if report.multi_label
            else f"Classes are imbalanced ({ratio:.1f}x): {big!r} has {counts[big]:,} images, "
            f"{small!r} only {counts[small]:,}. Add images to the small classes if you can; "
            "accuracy alone will flatter the model.",
        )
    for name in report.tiny_classes:
        count = plural(report.counts[name], "image")
        yield Issue(
            "tiny_class",
            f"Tag {name!r} is on only {count}; {TINY_CLASS_IMAGES} or more per tag give more "
            "reliable results."
            if report.multi_label
            else f"Class {name!r} has only {count}; "
            f"{TINY_CLASS_IMAGES} or more per class give more reliable results.",
        )
    across = [g for g in report.duplicates if g.across_classes]
    if across:
        example = " = ".join(report.relative(p) for p in across[0].paths[:2])
        yield Issue(
            "duplicates_across_classes",
            f"{plural(len(across), 'image')} appear in more than one class with identical "
            f"content, so their labels contradict each other (e.g. {example}).",
        )
    within_copies = sum(
        len(g.paths) - len(set(g.labels)) for g in report.duplicates if not g.across_classes
    )
    if within_copies:
        yield Issue(
            "duplicates_within_class",
            f"{plural(within_copies, 'file')} are exact copies of another image in the same "
            "class; they add nothing to training (the split keeps copies on one side).",
        )
    yield from _near_duplicate_warnings(report)
    if report.hidden_folders:
        names = ", ".join(report.hidden_folders)
        yield Issue(
            "hidden_folders",
            f"Ignored {plural(len(report.hidden_folders), 'folder')} whose name starts with a "
            f"dot ({names}): such folders are hidden and never used as classes. Rename a "
            "folder without the leading dot to use it.",
        )
    if report.skipped:
        reasons = Counter(s.reason for s in report.skipped)
        detail = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        yield Issue("skipped_files", f"{plural(len(report.skipped), 'file')} skipped ({detail}).")
