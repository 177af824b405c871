"""Labelled image datasets: safe ingestion, a health report and stratified splits.

A dataset is a folder holding one subfolder per class, or a .zip of such a folder (wrapped in a
single top folder or not). Every file is read and really decoded once by :func:`scan_dataset`, so
anything that would break training later is reported up front, with the reason, instead.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import random
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tl_core.common import DatasetError, plural
from tl_core.data.folders import find_root, is_clutter, visible_entries, walk_visible_files
from tl_core.data.image_hash import Fingerprint, connected_groups, fingerprint, similar_pairs
from tl_core.data.images import (
    MAX_IMAGE_BYTES,
    UnusableFile,
    decode,
    decode_failure,
    open_image_file,
)

if TYPE_CHECKING:
    import pandas as pd


MAX_EXTRACT_BYTES = 4 * 1024**3
MAX_EXTRACT_FILES = 200_000
# Photos barely compress (JPEG, PNG and WebP are compressed already); a member that expands
# more than this many times and past _RATIO_FLOOR_BYTES is a decompression bomb, not a photo.
# Flat drawings saved as BMP can compress far better, but they stay small.
MAX_COMPRESSION_RATIO = 100
_RATIO_FLOOR_BYTES = 16 * 1024**2
# Extraction leaves this much disk free, so the workspace never fills the disk to the last byte.
DISK_HEADROOM_BYTES = 512 * 1024**2
MIN_IMAGES_PER_CLASS = 2
TINY_CLASS_IMAGES = 10
IMBALANCE_WARNING_RATIO = 3.0

# Scanning decodes JPEGs at a reduced DCT scale: the entropy-coded data is still read to the
# end, so truncation is caught, at a fraction of the cost of a full-resolution decode.
_SCAN_DRAFT_SIZE = 64
_COPY_CHUNK = 1024 * 1024

SKIP_LOOSE = "not inside a class folder"


# slots: a scan of 100,000 images holds 100,000 items; without a __dict__ each is ~100 bytes
# lighter (tests/test_scale.py bounds the bytes per item).
@dataclass(frozen=True, slots=True)
class ImageItem:
    """One labelled image file.

    Attributes:
        path: The file.
        label: Its class.
        digest: BLAKE2b hash of the file's bytes, set by the scan (equal for exact copies).
        fingerprint: Perceptual fingerprint of the picture, set by the scan (close for resized
            or re-encoded copies); None for an image too flat to fingerprint.
    """

    path: Path
    label: str
    # What the scan measured; not part of the item's identity (a hand-made item has neither).
    digest: str | None = field(default=None, compare=False, repr=False)
    fingerprint: Fingerprint | None = field(default=None, compare=False, repr=False)


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
    _counts: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        counts = Counter(item.label for item in self.items)
        object.__setattr__(self, "_counts", {name: counts[name] for name in self.class_names})

    @property
    def counts(self) -> dict[str, int]:
        """Readable images per class, in ``class_names`` order."""
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
        """A JSON-serialisable summary; file paths are relative to ``root``."""
        return {
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

    def counts_frame(self) -> pd.DataFrame:
        """Images per class as a DataFrame with columns ``class`` and ``images``."""
        import pandas as pd  # Deferred: DataLoader workers import this module but never need it.

        return pd.DataFrame(
            {"class": list(self._counts), "images": list(self._counts.values())}
        ).astype({"class": "string", "images": "int64"})


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


# --------------------------------------------------------------------------- zip extraction


def _safe_member_path(name: str) -> PurePosixPath:
    """The member's relative path; raises DatasetError for names that escape the folder."""
    normalised = name.replace("\\", "/")
    parts = PurePosixPath(normalised).parts
    if (
        normalised.startswith("/")
        or (parts and len(parts[0]) >= 2 and parts[0][1] == ":")  # a Windows drive, "C:"
        or ".." in parts
        or "\x00" in normalised
    ):
        raise DatasetError(
            f"The zip contains an unsafe path {name!r} that points outside its folder.",
            hint="The archive was not extracted. Re-create the zip from the dataset folder.",
        )
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_bytes: int = MAX_EXTRACT_BYTES,
    max_files: int = MAX_EXTRACT_FILES,
) -> Path:
    """Safely extracts a zip into ``dest``, which must not exist yet (or be an empty folder).

    Every member is checked before anything is written: absolute paths and ``..`` are rejected
    (zip slip), as are archives declaring more than ``max_files`` files or ``max_bytes`` bytes.
    Sizes are counted again while decompressing, since headers can lie. Hidden files, macOS
    resource forks and symbolic links are not extracted. Files go to a temporary sibling folder
    renamed to ``dest`` on success, so a failure leaves no half-extracted folder.

    Returns:
        ``dest``.

    Raises:
        DatasetError: The file is not a readable zip, is unsafe, too large, encrypted, or
            ``dest`` is a non-empty folder.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(
            f"Cannot extract into {dest}: it already exists and is not empty.",
            hint="Choose a new folder, or delete that one first.",
        )
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{zip_path.name} could not be read as a zip archive ({exc}).",
            hint="The file may be damaged or incompletely uploaded; create the zip again.",
        ) from exc
    with archive:
        members = _plan_extraction(archive, max_bytes=max_bytes, max_files=max_files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _check_free_space(dest.parent, sum(info.file_size for info, _ in members))
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            _extract_members(archive, members, staging, max_bytes=max_bytes)
            if dest.exists():
                dest.rmdir()  # Empty, checked above; os.replace cannot replace a folder everywhere.
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


def _plan_extraction(
    archive: zipfile.ZipFile, *, max_bytes: int, max_files: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = archive.infolist()
    # Validate every name, clutter included, so a hostile archive is refused as a whole.
    targets = [(info, _safe_member_path(info.filename)) for info in infos]
    files = [
        (info, target)
        for info, target in targets
        if not info.is_dir()
        and target.parts
        and not any(is_clutter(part) for part in target.parts)
        and stat.S_IFMT(info.external_attr >> 16) != stat.S_IFLNK
    ]
    for info, _ in files:
        if info.file_size > MAX_IMAGE_BYTES:
            raise DatasetError(
                f"{info.filename} in the zip is {info.file_size / 1024**2:,.0f} MB; one image "
                f"may be at most {MAX_IMAGE_BYTES / 1024**2:,.0f} MB.",
                hint="Remove that file from the zip (or resize it) and upload it again.",
            )
        _check_ratio(info, info.file_size)
    if len(files) > max_files:
        raise DatasetError(
            f"The zip holds {len(files):,} files, more than the limit of {max_files:,}.",
            hint="Split the dataset into smaller archives, or point at an extracted folder.",
        )
    declared = sum(info.file_size for info, _ in files)
    if declared > max_bytes:
        raise DatasetError(
            f"The zip would expand to {declared / 1024**3:.1f} GiB, more than the "
            f"{max_bytes / 1024**3:.1f} GiB limit.",
            hint="Use smaller images or fewer of them, or point at an extracted folder.",
        )
    return files


def _check_ratio(info: zipfile.ZipInfo, expanded: int) -> None:
    """Refuses a member that would expand like a decompression bomb.

    The declared size is enough to go by: zipfile never yields more than it, and a member that
    declares less than it holds fails its CRC check.
    """
    if expanded > _RATIO_FLOOR_BYTES and expanded > MAX_COMPRESSION_RATIO * max(
        info.compress_size, 1
    ):
        raise DatasetError(
            f"{info.filename} in the zip expands {expanded / max(info.compress_size, 1):,.0f} "
            f"times (to {expanded / 1024**2:,.0f} MB): real images never compress like that, "
            "so the archive was not extracted.",
            hint="The zip looks malformed or hostile; create it again from the image folders.",
        )


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed + DISK_HEADROOM_BYTES > free:
        raise DatasetError(
            f"Extracting the zip needs {needed / 1024**3:.2f} GB, but only "
            f"{free / 1024**3:.2f} GB are free on the disk holding {folder}.",
            hint="Free some disk space (for example delete old datasets and runs), then try again.",
        )


def _extract_members(
    archive: zipfile.ZipFile,
    members: Iterable[tuple[zipfile.ZipInfo, PurePosixPath]],
    staging: Path,
    *,
    max_bytes: int,
) -> None:
    written = 0
    for info, target in members:
        out_path = staging.joinpath(*target.parts)
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(out_path, "wb") as dst:
                while chunk := src.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise DatasetError(
                            "The zip expands to more than its declared size and the "
                            f"{max_bytes / 1024**3:.1f} GiB limit; extraction was stopped.",
                            hint="The archive looks malformed or hostile; create it again.",
                        )
                    dst.write(chunk)
        except RuntimeError as exc:  # zipfile's error for encrypted members
            raise DatasetError(
                f"{info.filename} in the zip is password-protected.",
                hint="Create the zip again without a password.",
            ) from exc
        except NotImplementedError as exc:
            raise DatasetError(
                f"{info.filename} in the zip uses an unsupported compression method.",
                hint="Create the zip again with standard (deflate) compression.",
            ) from exc
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{info.filename} in the zip is damaged ({exc}).",
                hint="The file may be incompletely uploaded; create the zip again.",
            ) from exc
        except OSError as exc:  # Disk full, a name clash between a file and a folder, ...
            raise DatasetError(
                f"Could not extract {info.filename} from the zip: {exc.strerror or exc}.",
                hint="Check the free disk space, and that no file and folder share a name.",
            ) from exc


# --------------------------------------------------------------------------- scanning


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
    root = find_root(extracted)
    class_dirs, _ = visible_entries(root)
    class_names = tuple(d.name for d in class_dirs)
    hidden_folders = tuple(
        sorted(
            entry.name
            for entry in os.scandir(root)
            if entry.name.startswith(".") and entry.is_dir()
        )
    )

    candidates: list[tuple[Path, str | None]] = [(path, None) for path in visible_entries(root)[1]]
    for class_dir in class_dirs:
        candidates.extend((path, class_dir.name) for path in walk_visible_files(class_dir))

    workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
    items: list[ImageItem] = []
    skipped: list[SkippedFile] = []
    first_of_digest: dict[str, ImageItem] = {}
    copies: dict[str, list[ImageItem]] = {}  # only digests seen twice or more
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = _in_order(pool, _check_file, [path for path, _ in candidates], workers * 4)
        for done, ((path, label), check) in enumerate(zip(candidates, checks, strict=True), 1):
            if check.problem is not None:
                skipped.append(SkippedFile(path, check.problem))
            elif label is None:
                skipped.append(SkippedFile(path, SKIP_LOOSE))
            else:
                item = ImageItem(path, label, check.digest, check.fingerprint)
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
    report = DatasetReport(
        source=source,
        root=root,
        class_names=class_names,
        items=tuple(items),
        skipped=tuple(skipped),
        duplicates=duplicates,
        near_duplicates=near_duplicate_groups(items),
        hidden_folders=hidden_folders,
    )
    return replace(
        report,
        errors=tuple(_blocking_errors(report)),
        warnings=tuple(_warnings(report)),
        scan_seconds=time.perf_counter() - started,
    )


def _blocking_errors(report: DatasetReport) -> Iterator[Issue]:
    loose = sum(1 for s in report.skipped if s.reason == SKIP_LOOSE)
    if not report.items:
        hint = (
            f" {plural(loose, 'image')} lie at the top level: put each class's images in a "
            "folder named after the class."
            if loose
            else " Expected one folder per class, each holding that class's images."
        )
        yield Issue("no_images", f"No readable images were found in {report.root.name}.{hint}")
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
    ratio = report.imbalance_ratio
    if ratio is not None and ratio >= IMBALANCE_WARNING_RATIO:
        counts = {k: v for k, v in report.counts.items() if v}
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        yield Issue(
            "imbalance",
            f"Classes are imbalanced ({ratio:.1f}x): {big!r} has {counts[big]:,} images, "
            f"{small!r} only {counts[small]:,}. Add images to the small classes if you can; "
            "accuracy alone will flatter the model.",
        )
    for name in report.tiny_classes:
        yield Issue(
            "tiny_class",
            f"Class {name!r} has only {plural(report.counts[name], 'image')}; "
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


# --------------------------------------------------------------------------- splits


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
    val_classes = {item.label for item in val_report.items}
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
