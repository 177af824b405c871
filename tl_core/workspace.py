"""Where the app keeps what users give it: uploads, imported datasets, weights files and runs.

The workspace root comes from the ``TL_STUDIO_WORKSPACE`` environment variable, or defaults
to ``<repo>/workspace``. Uploaded files are streamed to disk in chunks and never kept in the
app's memory, so a large .zip does not stay resident once it has been saved.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from tl_core.datasets import extract_zip
from tl_core.errors import DatasetError
from tl_core.folders import find_root, visible_entries, walk_visible_files
from tl_core.images import IMAGE_SUFFIXES
from tl_core.text import plural

WORKSPACE_ENV = "TL_STUDIO_WORKSPACE"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "workspace"
CHUNK_SIZE = 1 << 20


def safe_name(text: str, fallback: str = "item") -> str:
    """Turns user text into a file or folder name that is safe on every platform.

    Letters, digits, spaces, dots, dashes and underscores survive; anything else (path
    separators included) becomes an underscore, so a name can never climb out of its folder.
    """
    name = re.sub(r"[^\w .-]+", "_", text.strip()).strip(" .")
    return name or fallback


def unique_path(folder: str | Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-1.ext``, ``stem-2.ext``... if that name is taken."""
    folder = Path(folder)
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    counter = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return candidate


def save_stream(source: BinaryIO, destination: str | Path) -> Path:
    """Copies a readable binary stream to ``destination`` in 1 MiB chunks.

    Writes to a temporary file beside the destination and renames it, so an interrupted
    upload never leaves a half-written file under the final name.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(source, "seek"):
        source.seek(0)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return destination


def count_images(folder: str | Path) -> int:
    """Image files anywhere below ``folder``, as the dataset scan walks a class folder.

    Counted by extension: contents are not opened, so a listing stays fast.
    """
    return sum(
        1 for path in walk_visible_files(Path(folder)) if path.suffix.lower() in IMAGE_SUFFIXES
    )


def folder_signature(folder: str | Path) -> tuple:
    """A cheap fingerprint that changes when files are added to or removed from a dataset.

    A directory's modification time changes whenever an entry is added, removed or renamed,
    so the root's and each class folder's times are enough: no file is opened.
    """
    folder = Path(folder)
    if not folder.exists():
        return ()
    entries = [(str(folder), folder.stat().st_mtime_ns)]
    if folder.is_dir():
        entries += sorted(
            (entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(folder) if entry.is_dir()
        )
    return tuple(entries)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset folder already in the workspace, as a picker lists it."""

    name: str
    path: Path
    classes: tuple[str, ...]
    num_images: int
    modified: datetime

    @property
    def title(self) -> str:
        return (
            f"{self.name} · {plural(len(self.classes), 'class')} · "
            f"{plural(self.num_images, 'image')}"
        )


@dataclass(frozen=True)
class Workspace:
    """The folders the app reads and writes, all under one root.

    Attributes:
        root: The workspace folder; ``datasets``, ``runs``, ``uploads`` and ``weights``
            live inside it.
    """

    root: Path

    @classmethod
    def from_env(cls) -> Workspace:
        """The workspace named by ``TL_STUDIO_WORKSPACE`` (or the default), with its folders."""
        root = Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_ROOT).expanduser()
        return cls(root.resolve()).ensure()

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    def ensure(self) -> Workspace:
        """Creates the workspace folders if they are missing."""
        for folder in (self.datasets, self.runs, self.uploads, self.weights):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def save_upload(
        self, source: BinaryIO, filename: str, folder: str | Path | None = None
    ) -> Path:
        """Streams an uploaded file into ``folder`` (default ``uploads/``) under a unique name."""
        folder = Path(folder) if folder is not None else self.uploads
        folder.mkdir(parents=True, exist_ok=True)
        return save_stream(source, unique_path(folder, safe_name(Path(filename).name, "upload")))

    def save_upload_once(
        self, source: BinaryIO, file_id: str, filename: str, folder: str | Path
    ) -> Path:
        """Saves an upload into ``folder`` once per ``file_id``; later calls reuse that file.

        Pages rerun on every interaction; keying by the upload's id keeps one copy per file.
        """
        # A folder per upload id keeps the user's file name, which messages then show.
        target = Path(folder) / safe_name(file_id) / safe_name(Path(filename).name, "upload")
        return target if target.is_file() else save_stream(source, target)

    def new_dataset_dir(self, name: str) -> Path:
        """A new, empty, uniquely named folder under ``datasets/``."""
        path = unique_path(self.datasets, safe_name(name, "dataset"))
        path.mkdir(parents=True)
        return path

    def dataset_dir(self, name: str) -> Path:
        """``datasets/<name>``, created if needed: a dataset built class by class grows here."""
        path = self.datasets / safe_name(name, "dataset")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_class_images(
        self, dataset_dir: str | Path, class_name: str, files: Iterable[tuple[str, BinaryIO]]
    ) -> list[Path]:
        """Saves images into ``dataset_dir/<class_name>/``, keeping every file (unique names).

        Args:
            dataset_dir: A dataset folder inside the workspace.
            class_name: The class the images belong to; becomes a folder name.
            files: ``(filename, stream)`` pairs, such as uploaded files or webcam shots.

        Returns:
            The saved paths.

        Raises:
            DatasetError: The class name is empty.
        """
        if not class_name.strip():
            raise DatasetError("The class needs a name.", "Type a class name, such as 'cats'.")
        class_dir = Path(dataset_dir) / safe_name(class_name, "class")
        return [self.save_upload(stream, filename, class_dir) for filename, stream in files]

    def import_zip(self, zip_path: str | Path, name: str | None = None) -> Path:
        """Safely extracts an uploaded .zip into a new folder under ``datasets/``.

        Returns:
            The new folder; a scan finds the class folders inside it, below any wrapping
            folder.

        Raises:
            DatasetError: The file is not a readable zip, or is unsafe or too large.
        """
        zip_path = Path(zip_path)
        target = self.new_dataset_dir(name or zip_path.stem)
        try:
            return extract_zip(zip_path, target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise

    def extract_upload(self, zip_path: str | Path) -> Path:
        """Extracts a .zip of images to predict on into a new folder under ``uploads/``."""
        zip_path = Path(zip_path)
        return extract_zip(zip_path, unique_path(self.uploads, safe_name(zip_path.stem, "images")))

    def list_datasets(self) -> list[DatasetEntry]:
        """Dataset folders under ``datasets/`` that hold at least one class, newest first."""
        if not self.datasets.is_dir():
            return []
        entries = []
        for folder in visible_entries(self.datasets)[0]:
            # The scan's own rule for where the class folders start, so both agree.
            root = find_root(folder)
            class_dirs, _ = visible_entries(root)
            if not class_dirs:
                continue
            entries.append(
                DatasetEntry(
                    name=folder.name,
                    path=root,
                    classes=tuple(d.name for d in class_dirs),
                    num_images=sum(count_images(d) for d in class_dirs),
                    modified=datetime.fromtimestamp(folder.stat().st_mtime),
                )
            )
        return sorted(entries, key=lambda e: (e.modified, e.name), reverse=True)
