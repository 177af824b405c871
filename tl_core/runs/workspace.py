"""Where the app keeps what users give it: uploads, imported datasets, weights files and runs.

The workspace root comes from the ``TL_STUDIO_WORKSPACE`` environment variable, or defaults
to ``<repo>/workspace``. Uploaded files are streamed to disk in chunks and never kept in the
app's memory, so a large .zip does not stay resident once it has been saved.

Nothing here keeps what is no longer needed: uploads older than a day are cleaned away, and
old datasets and runs can be deleted (never the run a live training is writing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from tl_core.common import (
    DatasetError,
    RunError,
    format_size,
    plural,
    safe_name,
    unique_path,
)
from tl_core.data import (
    IMAGE_SUFFIXES,
    SAMPLE_DATASET_DIR,
    extract_zip,
    find_root,
    visible_entries,
    walk_visible_files,
)
from tl_core.runs.folder_access import is_inside, readable_folder
from tl_core.runs.layout import run_is_live

WORKSPACE_ENV = "TL_STUDIO_WORKSPACE"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "workspace"
CHUNK_SIZE = 1 << 20
# Uploads are working copies (images to predict, extracted archives, prediction tables):
# after a day they are no longer needed by any session that made them.
UPLOAD_MAX_AGE = timedelta(days=1)
PREDICT_UPLOADS = "predict"


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


def folder_size(path: str | Path) -> int:
    """Bytes taken by the files below ``path`` (links are counted, never followed)."""
    path = Path(path)
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):  # os.walk does not follow links to folders
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while counting
                continue
    return total


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
class StoredFolder:
    """A dataset or run folder as the workspace's clean-up lists it.

    Attributes:
        live: A training is still writing to it, so it cannot be deleted.
    """

    path: Path
    size: int
    modified: datetime
    live: bool = False

    @property
    def title(self) -> str:
        live = " · still training" if self.live else ""
        return f"{self.path.name} · {format_size(self.size)} · {self.modified:%Y-%m-%d %H:%M}{live}"


@dataclass(frozen=True)
class Usage:
    """Bytes taken by each part of the workspace."""

    datasets: int
    runs: int
    uploads: int
    weights: int
    feature_cache: int

    @property
    def total(self) -> int:
        return self.datasets + self.runs + self.uploads + self.weights + self.feature_cache


@dataclass(frozen=True)
class Workspace:
    """The folders the app reads and writes, all under one root.

    Attributes:
        root: The workspace folder; ``datasets``, ``runs``, ``uploads``, ``weights`` and
            ``feature-cache`` live inside it.
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

    @property
    def feature_cache(self) -> Path:
        """Backbone features the app computed (``tl_core.features.store``), kept for reuse."""
        return self.root / "feature-cache"

    @property
    def predict_uploads(self) -> Path:
        """Images dropped on the Predict page, one folder per upload."""
        return self.uploads / PREDICT_UPLOADS

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

    def discard_upload(self, path: str | Path) -> None:
        """Deletes ``path`` if it lies inside ``uploads/``; anything else is left alone."""
        path = Path(path).resolve()
        if path != self.uploads.resolve() and is_inside(path, self.uploads.resolve()):
            _remove(path)

    def clean_uploads(self, max_age: timedelta = UPLOAD_MAX_AGE) -> list[Path]:
        """Deletes uploads last changed more than ``max_age`` ago.

        Each upload is one entry of ``uploads/`` (an extracted archive, a prediction table, a
        file cut off mid-upload) or, for the Predict page's images, one folder of
        ``uploads/predict/``.

        Returns:
            What was deleted.
        """
        cutoff = time.time() - max_age.total_seconds()
        entries = [p for p in _children(self.uploads) if p.name != PREDICT_UPLOADS]
        entries += _children(self.predict_uploads)
        removed = []
        for entry in entries:
            # Tidying never stops the app: an entry another session removed first, or one
            # this process may not delete, is left for later.
            with contextlib.suppress(OSError):
                if entry.lstat().st_mtime < cutoff:
                    _remove(entry)
                    removed.append(entry)
        return removed

    def usage(self) -> Usage:
        """The bytes taken by datasets, runs, uploads, weights files and cached features."""
        return Usage(
            folder_size(self.datasets),
            folder_size(self.runs),
            folder_size(self.uploads),
            folder_size(self.weights),
            folder_size(self.feature_cache),
        )

    def stored_datasets(self) -> list[StoredFolder]:
        """Every folder under ``datasets/``, with its size, newest first."""
        return _stored(_children(self.datasets, folders_only=True), live=lambda _path: False)

    def stored_runs(self) -> list[StoredFolder]:
        """Every folder under ``runs/``, with its size and whether a training writes to it."""
        return _stored(_children(self.runs, folders_only=True), live=run_is_live)

    def delete_dataset(self, path: str | Path, in_use: Iterable[str | Path] = ()) -> None:
        """Deletes a dataset folder of the workspace for good.

        Args:
            path: A folder directly under ``datasets/`` (or the class root inside it).
            in_use: Datasets a live training reads; none of them is deleted.

        Raises:
            DatasetError: ``path`` is not a workspace dataset, is the built-in sample, or is
                being trained on.
        """
        folder = self._own_folder(path, self.datasets, "dataset")
        if is_inside(SAMPLE_DATASET_DIR.resolve(), folder):
            raise DatasetError("The built-in sample dataset cannot be deleted.")
        for used in in_use:
            if is_inside(Path(used).resolve(), folder):
                raise DatasetError(
                    f"{folder.name} is being trained on right now, so it was not deleted.",
                    "Stop the training, or wait for it to finish, then delete the dataset.",
                )
        _remove(folder)

    def delete_run(self, path: str | Path) -> None:
        """Deletes a run folder of the workspace for good, unless a training writes to it.

        Raises:
            RunError: ``path`` is not a workspace run, or a live training is writing to it
                (or, where that cannot be told, may be).
        """
        folder = self._own_folder(path, self.runs, "run")
        if run_is_live(folder):
            raise RunError(
                f"The run {folder.name} is still training, so it was not deleted.",
                "Stop the training, or wait for it to finish, then delete the run.",
            )
        _remove(folder)

    def _own_folder(self, path: str | Path, area: Path, kind: str) -> Path:
        """The folder directly under ``area`` that holds ``path``; refuses anything else."""
        path, area = Path(path).resolve(), area.resolve()
        if path == area or not path.is_relative_to(area) or not path.exists():
            error = DatasetError if kind == "dataset" else RunError
            raise error(
                f"{path} is not a {kind} of this workspace, so it was not deleted.",
                f"Only folders inside {area} are deleted here.",
            )
        return area / path.relative_to(area).parts[0]

    def readable_folder(self, text: str, server_address: str | None) -> Path:
        """The folder a user typed, if the server may read it for them: inside the home folder
        or this workspace always, system folders never, any other only while the server answers
        this computer alone (the rule is ``tl_core.runs.folder_access``'s).

        Args:
            text: The path as typed; ``~`` stands for the home folder.
            server_address: The address the server listens on (``server.address``).

        Raises:
            TLStudioError: The path is not a folder, or the rule refuses it.
        """
        return readable_folder(text, server_address, self.root)

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


def _children(folder: Path, folders_only: bool = False) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if not folders_only or (p.is_dir() and not p.is_symlink())
    )


def _stored(folders: list[Path], live: Callable[[Path], bool]) -> list[StoredFolder]:
    stored = [
        StoredFolder(
            path=path,
            size=folder_size(path),
            modified=datetime.fromtimestamp(path.stat().st_mtime),
            live=bool(live(path)),
        )
        for path in folders
    ]
    return sorted(stored, key=lambda f: (f.modified, f.path.name), reverse=True)


def _remove(path: Path) -> None:
    """Deletes a file, a link (not what it points to) or a whole folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
