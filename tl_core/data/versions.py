"""Versions of a dataset: the user's review decisions applied without touching their files.

Fixing data means relabelling an image, excluding it, or confirming that a suspect is right.
None of that may modify or delete the user's own files. A decision set is applied by building a
new dataset folder, a *version*, beside the original::

    datasets/flowers/            the user's images, never written to
    datasets/flowers-v2/         class folders of links to those images, relabelled or left out
        .tl-studio-version.json  what this version is: its base, its parent and every decision

The images in a version are hard links to the original files (a copy where links are not
possible, e.g. across drives), so a version costs almost no disk and is an ordinary dataset
folder: the scan, training, the CLI and every page read it as they read any other. The metadata
file starts with a dot, so the scan ignores it. A run trained on a version records it in its
config (``data`` is the version's folder) and in ``dataset_version`` of config.json.

Decisions are keyed by an image's path relative to the original dataset's root, so a version of
a version still knows which original file each decision is about; they accumulate from parent to
child.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tl_core.common import DatasetError, TLStudioError, plural, safe_name, unique_path, write_json
from tl_core.data.multilabel import labels_root, split_tags, tagged_files, write_labels_csv

VERSION_FILE = ".tl-studio-version.json"
RELABEL, EXCLUDE, KEEP = "relabel", "exclude", "keep"
ACTIONS = (RELABEL, EXCLUDE, KEEP)


@dataclass(frozen=True)
class Decision:
    """What the user decided about one image of the original dataset.

    Attributes:
        image: The image's path relative to the original dataset's root (POSIX separators).
        action: RELABEL (it belongs to ``label``), EXCLUDE (leave it out of training) or KEEP
            (reviewed: its label is right, stop flagging it).
        label: The new class, for RELABEL; in a multi-label dataset (``labels.csv``) the
            image's new tags joined by ";" ("" for none).
    """

    image: str
    action: str
    label: str | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"Unknown decision {self.action!r}")
        # A multi-label relabel names the image's new tags, "" for none.
        if (self.action == RELABEL) != (self.label is not None):
            raise ValueError("A relabel, and only a relabel, names its new class")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action}
        if self.label is not None:
            data["label"] = self.label
        return data


@dataclass(frozen=True)
class DatasetVersion:
    """A version folder's metadata.

    Attributes:
        path: The version's folder.
        base: The original dataset's root (the user's own images).
        parent: The dataset this version was made from (the base, or an earlier version).
        number: 2 for the first version of a base, 3 for the next...
        decisions: Every decision since the base, by the image's path relative to the base.
        files: Where each original image is in this version (relative paths), excluded ones
            left out.
        created: When it was made (ISO 8601).
    """

    path: Path
    base: Path
    parent: Path
    number: int
    decisions: dict[str, Decision] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    created: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """How many decisions of each kind."""
        return {
            action: sum(d.action == action for d in self.decisions.values()) for action in ACTIONS
        }

    @property
    def changes(self) -> str:
        """What this version changed since the original, e.g. "3 relabelled, 1 excluded,
        2 confirmed" (decisions accumulate, so this counts its parents' too)."""
        counts = self.counts
        return f"{counts[RELABEL]} relabelled, {counts[EXCLUDE]} excluded, {counts[KEEP]} confirmed"

    def describe(self) -> str:
        """E.g. "version 2 of flowers: 3 relabelled, 1 excluded, 2 confirmed"."""
        return f"version {self.number} of {self.base.name}: {self.changes}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "dataset-version",
            "base": str(self.base),
            "parent": str(self.parent),
            "version": self.number,
            "created": self.created,
            "decisions": {image: d.to_dict() for image, d in sorted(self.decisions.items())},
            "files": dict(sorted(self.files.items())),
        }


def read_version(folder: str | Path) -> DatasetVersion | None:
    """The version metadata of a dataset folder, or None for an original dataset (or a version
    whose metadata cannot be read: it is then used as the plain folder it is)."""
    folder = Path(folder)
    try:
        data = json.loads((folder / VERSION_FILE).read_text())
        decisions = {
            image: Decision(image, d["action"], d.get("label"))
            for image, d in data["decisions"].items()
        }
        return DatasetVersion(
            path=folder,
            base=Path(data["base"]),
            parent=Path(data["parent"]),
            number=int(data["version"]),
            decisions=decisions,
            files={str(k): str(v) for k, v in data.get("files", {}).items()},
            created=str(data.get("created", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def version_info(folder: str | Path) -> dict[str, Any] | None:
    """What a run records about the dataset version it trained on (None for an original)."""
    version = read_version(folder)
    if version is None:
        return None
    return {"version": version.number, "base": str(version.base), "counts": version.counts}


def base_dataset(dataset: str | Path) -> Path:
    """The original dataset that ``dataset`` is a version of (``dataset`` itself for an
    original)."""
    version = read_version(dataset)
    return version.base if version else Path(dataset)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one is gone (a base deleted since): compare the names as written
        return a.resolve() == b.resolve()


def list_versions(dataset: str | Path, datasets_root: str | Path) -> list[DatasetVersion]:
    """Every version of ``dataset``'s original held in ``datasets_root``, oldest first.

    ``dataset`` may be the original or any of its versions: the list is the same. Versions
    live beside each other in the workspace's ``datasets/`` folder, where ``create_version``
    puts them; a folder whose metadata cannot be read is not a version.
    """
    base, root = base_dataset(dataset), Path(datasets_root)
    if not root.is_dir():
        return []
    versions = [
        version
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        and (version := read_version(folder)) is not None
        and _same_folder(version.base, base)
    ]
    return sorted(versions, key=lambda v: (v.number, v.created, v.path.name))


def original_image(dataset: str | Path, image: str | Path) -> str:
    """The key of ``image`` (a file inside ``dataset``): its path relative to the base dataset.

    For an original dataset that is the path relative to it; inside a version, the version's
    metadata maps the file back to the original it links to.
    """
    dataset, image = Path(dataset), Path(image)
    relative = image.relative_to(dataset).as_posix()
    version = read_version(dataset)
    if version is None:
        return relative
    back = {placed: original for original, placed in version.files.items()}
    return back.get(relative, relative)


def image_keys(dataset: str | Path, images: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The key (:func:`original_image`) of each of ``images``, files inside ``dataset``.

    Raises:
        DatasetError: Some image is not inside ``dataset`` (the folder was replaced by another
            one at the same place, or the images came from elsewhere).
    """
    dataset = Path(dataset)
    keys, outside = {}, []
    for image in images:
        try:
            keys[image] = original_image(dataset, image)
        except ValueError:
            outside.append(image)
    if outside:
        raise DatasetError(
            f"{plural(len(outside), 'image')} of the run are not inside {dataset} (first: "
            f"{outside[0]}), so they cannot be mapped back to the dataset.",
            "Load the dataset on the Data page and fix its images there.",
        )
    return keys


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another drive, or a file system without hard links
        shutil.copy2(source, target)


def _class_files(root: Path) -> dict[str, tuple[str, Path]]:
    """Every image of a dataset root by its path relative to the root: (class, file)."""
    from tl_core.data.folders import visible_entries, walk_visible_files
    from tl_core.data.images import IMAGE_SUFFIXES

    files: dict[str, tuple[str, Path]] = {}
    class_dirs, _ = visible_entries(root)
    for class_dir in class_dirs:
        for path in walk_visible_files(class_dir):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files[path.relative_to(root).as_posix()] = (class_dir.name, path)
    return files


def create_version(
    dataset: str | Path,
    decisions: Mapping[str, Decision],
    class_names: list[str] | tuple[str, ...],
    into: str | Path,
) -> DatasetVersion:
    """Builds a new version of ``dataset`` with ``decisions`` applied on top of its own.

    Args:
        dataset: The dataset root the user reviewed: an original, or a version.
        decisions: New decisions by the image's key (:func:`original_image`); they replace
            earlier decisions about the same image.
        class_names: The classes a relabel may use (the dataset's).
        into: The folder that holds datasets (the workspace's ``datasets/``).

    Returns:
        The new version; its folder is a complete dataset.

    Raises:
        DatasetError: No decision was given, a relabel names an unknown class, or a decision
            is about an image the dataset does not have.
        TLStudioError: The version could not be written (it is then removed).
    """
    dataset = Path(dataset)
    if not decisions:
        raise DatasetError(
            "There is nothing to save: no image was relabelled, excluded or confirmed.",
            "Decide about at least one image first.",
        )
    tagged = labels_root(Path(dataset)) is not None
    named = {
        name
        for d in decisions.values()
        if d.label is not None
        for name in (split_tags(d.label) if tagged else (d.label,))
    }
    unknown = sorted(named - set(class_names))
    if unknown:
        raise DatasetError(
            f"Unknown class {', '.join(map(repr, unknown))}: a relabel picks one of the "
            "dataset's classes.",
            "Pick a class from the list.",
        )
    parent = read_version(dataset)
    base = parent.base if parent else dataset
    if not base.is_dir():
        # Decisions are about the original's files, and a version links to them.
        raise DatasetError(
            f"The original dataset {base.name} is no longer at {base} (deleted, moved or "
            "renamed): a new version is built from its files.",
            f"Put the folder back at {base}, or import the images again as a new dataset.",
        )
    merged = {**(parent.decisions if parent else {}), **decisions}
    originals = tagged_files(base) if tagged else _class_files(base)
    missing = sorted(set(decisions) - set(originals))
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise DatasetError(
            f"{plural(len(missing), 'image')} to decide about {verb} not in {base.name}: "
            f"{', '.join(missing[:3])}.",
            "The original dataset changed since it was reviewed: review it again.",
        )
    # The next number of the base, not of the parent: two versions made from one parent
    # (say, from an old run's evaluation) must not both be called "v3".
    taken = [v.number for v in list_versions(base, into)]
    number = max([parent.number if parent else 1, *taken]) + 1
    target = unique_path(Path(into), safe_name(f"{base.name}-v{number}", "dataset"))
    target.mkdir(parents=True)
    files: dict[str, str] = {}
    tags_by_image: dict[str, str] = {}  # a multi-label version's labels.csv
    try:
        for key, (label, source) in originals.items():
            decision = merged.get(key)
            if decision is not None and decision.action == EXCLUDE:
                continue
            if decision is not None and decision.action == RELABEL:
                label = decision.label
            if tagged:  # the same place as in the base, the tags in labels.csv
                placed = target / key
                if label is not None:
                    tags_by_image[key] = label
            else:
                placed = unique_path(target / label, source.name)
            _link_or_copy(source, placed)
            files[key] = placed.relative_to(target).as_posix()
        if tagged:
            write_labels_csv(target, tags_by_image)
        version = DatasetVersion(
            path=target,
            base=base,
            parent=dataset,
            number=number,
            decisions=merged,
            files=files,
            created=datetime.now().isoformat(timespec="seconds"),
        )
        write_json(target / VERSION_FILE, version.to_dict())
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise TLStudioError(
            f"The new version of {base.name} could not be written ({exc.strerror or exc}).",
            "Free some disk space or check the workspace folder's permissions, then save again.",
        ) from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return version


def reviewed(dataset: str | Path) -> set[str]:
    """Keys of the images the user already decided about (any action), so galleries of suspects
    can leave them out."""
    version = read_version(dataset)
    return set(version.decisions) if version else set()
