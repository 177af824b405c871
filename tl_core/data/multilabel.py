"""Datasets with several labels per image: the ``labels.csv`` that makes a dataset multi-label,
read with a clear sentence for each way it can be wrong, and what the health report adds for it.

A multi-label dataset is a folder (or a .zip of one) of images plus a ``labels.csv`` at its
root with the columns ``image`` (the file's path relative to the root, forward slashes) and
``labels`` (its tags separated by ``;``; an empty cell means "none of these tags")::

    image,labels
    photos/001.jpg,cat;dog
    photos/002.jpg,dog
    photos/003.jpg,

A dataset without ``labels.csv`` is an ordinary one (one class folder per label): nothing about
it changes.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tl_core.common import DatasetError, atomic_write, plural
from tl_core.data.folders import is_clutter, visible_entries, walk_visible_files
from tl_core.data.images import IMAGE_SUFFIXES
from tl_core.data.records import MIN_IMAGES_PER_CLASS, ImageItem, Issue

LABELS_CSV = "labels.csv"
TAG_SEPARATOR = ";"


def labels_root(folder: Path) -> Path | None:
    """The folder holding ``labels.csv``: ``folder`` itself, or below single wrapping folders
    (``shapes.zip`` holding ``shapes/labels.csv``); None for an ordinary dataset."""
    for _ in range(8):
        if (folder / LABELS_CSV).is_file():
            return folder
        dirs, files = visible_entries(folder)
        if len(dirs) != 1 or any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            return None
        folder = dirs[0]
    return None


def is_multi_label(source: str | Path) -> bool:
    """Whether a dataset folder, or a .zip of one, carries a ``labels.csv`` (at its root or
    below single wrapping folders), without scanning its images."""
    source = Path(source)
    if source.is_dir():
        return labels_root(source) is not None
    try:
        with zipfile.ZipFile(source) as archive:
            names = [n.replace("\\", "/") for n in archive.namelist()]
    except (OSError, zipfile.BadZipFile):
        return False
    return any(
        name.rsplit("/", 1)[-1] == LABELS_CSV and name.count("/") <= 2 and not is_clutter(name)
        for name in names
    )


def join_tags(tags: Sequence[str]) -> str:
    """The tags of one image as one string, sorted: ``"cat;dog"``; ``""`` for none."""
    return TAG_SEPARATOR.join(sorted(set(tags)))


def split_tags(cell: str) -> tuple[str, ...]:
    """The tags of a ``labels`` cell, stripped, sorted and without repeats."""
    return tuple(sorted({tag.strip() for tag in cell.split(TAG_SEPARATOR) if tag.strip()}))


def read_labels_csv(path: Path) -> dict[str, tuple[str, ...]]:
    """The tags of each listed image, by its path relative to the CSV's folder.

    Raises:
        DatasetError: The file is not UTF-8 text, lacks the ``image`` or ``labels`` column,
            lists an image twice, or has a row without an image name.
    """
    name = path.name
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{name} is not UTF-8 text (byte {exc.start + 1} cannot be read).",
            hint="Save it again as 'CSV UTF-8' (in Excel: Save As, then CSV UTF-8).",
        ) from None
    except OSError as exc:
        raise DatasetError(f"{name} cannot be read ({exc.strerror or exc}).") from None
    rows = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(rows, [])]
    missing = [column for column in ("image", "labels") if column not in header]
    if missing:
        found = ", ".join(repr(c) for c in header if c) or "none"
        raise DatasetError(
            f"{name} lacks the column{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)} (its first row names: {found}).",
            hint="The first row must read: image,labels (tags separated by ';').",
        )
    image_at, labels_at = header.index("image"), header.index("labels")
    tags: dict[str, tuple[str, ...]] = {}
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        image = row[image_at].strip().replace("\\", "/") if image_at < len(row) else ""
        if not image:
            raise DatasetError(
                f"Row {line} of {name} has no image name.",
                hint="Give each row the image's path relative to the folder of labels.csv.",
            )
        image = image.removeprefix("./")
        if image in tags:
            raise DatasetError(
                f"{name} lists {image} twice (again in row {line}).",
                hint="Keep one row per image, with all its tags in one cell separated by ';'.",
            )
        tags[image] = split_tags(row[labels_at] if labels_at < len(row) else "")
    return tags


def listed_images(
    root: Path, candidates: Sequence[Path], listed: Mapping[str, tuple[str, ...]]
) -> tuple[list[tuple[Path, tuple[str, ...] | None]], list[Path]]:
    """Pairs every image file under ``root`` with its tags (None: not listed), and the files
    listed in ``labels.csv`` that are not there."""
    paired = []
    present = set()
    for path in candidates:
        key = path.relative_to(root).as_posix()
        present.add(key)
        paired.append((path, listed.get(key)))
    missing = [root / key for key in listed if key not in present]
    return paired, missing


def tag_counts(items: Sequence[ImageItem], tag_names: Sequence[str]) -> dict[str, int]:
    """Images per tag, in ``tag_names`` order."""
    counts = Counter(tag for item in items for tag in item.tags or ())
    return {name: counts[name] for name in tag_names}


def multi_label_errors(items: Sequence[ImageItem], tag_names: Sequence[str]) -> Iterator[Issue]:
    """What blocks training on a multi-label dataset (its images were found)."""
    if not tag_names:
        yield Issue(
            "no_tags",
            "labels.csv gives no image a tag: at least one tag is needed.",
        )
    for name, n in tag_counts(items, tag_names).items():
        if n < MIN_IMAGES_PER_CLASS:
            yield Issue(
                "class_too_small",
                f"Tag {name!r} is on {plural(n, 'readable image')}; each tag needs at least "
                f"{MIN_IMAGES_PER_CLASS} (one to train on, one to validate).",
            )


def multi_label_warnings(
    items: Sequence[ImageItem], not_listed: int, listed_missing: int
) -> Iterator[Issue]:
    """What may hurt training on a multi-label dataset, beyond the warnings of every dataset."""
    untagged = sum(1 for item in items if not item.tags)
    if untagged:
        yield Issue(
            "untagged_images",
            f"{plural(untagged, 'image')} {'carries' if untagged == 1 else 'carry'} none of the "
            "tags (an empty labels cell); the model learns that such images get no tag.",
        )
    if not_listed:
        yield Issue(
            "not_listed",
            f"{_are(not_listed, 'image')} in the folder but not in labels.csv, so left "
            "out; add a row for each (an empty labels cell for an image with no tag).",
        )
    if listed_missing:
        yield Issue(
            "listed_missing",
            f"{plural(listed_missing, 'image')} listed in labels.csv "
            f"{'is' if listed_missing == 1 else 'are'} not in the dataset "
            "(check the paths: they are relative to the folder of labels.csv).",
        )


def _are(count: int, noun: str) -> str:
    """ "1 image is", "3 images are"."""
    return f"{plural(count, noun)} {'is' if count == 1 else 'are'}"


def tagged_files(base: Path) -> dict[str, tuple[str | None, Path]]:
    """Every image file of a multi-label dataset by its path relative to ``base``, with its
    tags joined (:func:`join_tags`; None: not listed in labels.csv)."""
    root = labels_root(base)
    listed = read_labels_csv(root / LABELS_CSV) if root is not None else {}
    prefix = root.relative_to(base).as_posix() + "/" if root not in (None, base) else ""
    files: dict[str, tuple[str | None, Path]] = {}
    for path in walk_visible_files(base):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            key = path.relative_to(base).as_posix()
            tags = listed.get(key.removeprefix(prefix)) if key.startswith(prefix) else None
            files[key] = (None if tags is None else join_tags(tags), path)
    return files


def write_labels_csv(folder: Path, tags_by_image: Mapping[str, str]) -> Path:
    """Writes ``folder/labels.csv`` atomically: one row per image (path relative to ``folder``)
    with its tags joined by ";"."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["image", "labels"])
            writer.writerows(sorted(tags_by_image.items()))

    atomic_write(folder / LABELS_CSV, write)
    return folder / LABELS_CSV
