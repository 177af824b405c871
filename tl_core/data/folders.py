"""Which files in a folder count: the clutter rule and where a dataset's class folders start.

The dataset scan, the workspace's list of datasets and prediction folders all walk folders with
these functions, so they agree on what a folder holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tl_core.data.images import IMAGE_SUFFIXES

CLUTTER_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini", "@eaDir", "$RECYCLE.BIN"})
"""Operating-system clutter ignored silently, in addition to every dotfile and dot-folder."""


def is_clutter(name: str) -> bool:
    """Dotfiles, dot-folders and operating-system clutter: never part of a dataset."""
    return name.startswith(".") or name in CLUTTER_NAMES


def visible_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """Non-clutter subfolders and files of ``folder``, each sorted by name."""
    dirs, files = [], []
    for entry in os.scandir(folder):
        if is_clutter(entry.name):
            continue
        (dirs if entry.is_dir() else files).append(Path(entry.path))
    return sorted(dirs), sorted(files)


SKIP_LINK_INTO_ITSELF = (
    "a link back to a folder that holds the dataset: not followed, since reading it would "
    "read the dataset (or the whole disk) again and again"
)


def class_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """The class folders of a dataset root, and apart the links among them that lead back to
    the root or to a folder holding it (``..``, ``/``), which are never walked."""
    dirs, _ = visible_entries(root)
    real_root = root.resolve()
    kept: list[Path] = []
    looping: list[Path] = []
    for folder in dirs:
        target = folder.resolve()
        (looping if real_root.is_relative_to(target) else kept).append(folder)
    return kept, looping


def find_root(folder: Path) -> Path:
    """Steps into single wrapping folders (``animals.zip`` holding ``animals/cat/...``)."""
    for _ in range(8):
        dirs, files = visible_entries(folder)
        wrapped = (
            len(dirs) == 1
            and not folder.resolve().is_relative_to(dirs[0].resolve())  # not a link back up
            and not any(f.suffix.lower() in IMAGE_SUFFIXES for f in files)
            and bool(visible_entries(dirs[0])[0])
        )
        if not wrapped:
            return folder
        folder = dirs[0]
    return folder


def walk_visible_files(folder: Path) -> Iterator[Path]:
    """Every non-clutter file below ``folder``, in a stable order, hidden folders pruned."""
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_clutter(d))
        for name in sorted(filenames):
            if not is_clutter(name):
                yield Path(current, name)
