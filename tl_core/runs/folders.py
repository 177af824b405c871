"""Run folders on disk: one folder per training run, every file written atomically.

A run folder holds:
    config.json          everything needed to rebuild the model and its preprocessing
    labels.json          class names in output-index order
    metrics.json         per-epoch history, status, and the epoch (with its validation
                         accuracy) whose weights model.safetensors holds
    model.safetensors    best weights (by validation accuracy), their epoch in the metadata
    split.json           which images were used for training and validation
    val_predictions.csv  the best model's predictions on the validation images
    note.txt             the user's short note on the run (optional, editable at any time)
    calibration.json     the temperature that calibrates the probabilities (newer runs)
    open_set.safetensors what "not one of my classes" is measured against (newer runs)
    .lock                held by the training process while it writes (see tl_core.runs.locks)

Runs trained together live in a *group* folder beside single runs: the group holds ordinary
run folders and one JSON file that says what the group is (no config.json of its own):
    transfer.json        a transfer check: "pretrained" and "scratch" runs, gain, verdict
    sweep.json           a freeze-depth sweep: one row (and one run) per freeze depth
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize_weights

from tl_core import __version__
from tl_core.common import (
    DatasetError,
    RunError,
    WeightsError,
    atomic_write,
    check_output_folder,
    format_accuracy,
    write_frame_csv,
    write_json,
)
from tl_core.config import TrainConfig
from tl_core.runs.checks import (
    check_labels,
    check_metrics,
    check_model_info,
    check_preprocessing,
    check_train_settings,
    check_weights_fit,
    damaged,
    read_weights,
    unreadable_weights,
)
from tl_core.runs.locks import LOCK_FILE, FolderLock, is_locked

if TYPE_CHECKING:
    import torch as _torch

    from tl_core.data import ImageItem
    from tl_core.models import FreezeSummary, Preprocessing


class _LossWeights(Protocol):
    weights: Sequence[float] | None  # one per class, or None for the plain loss


class DescribedRun(Protocol):
    """What a run's description is written from: the training plan's fields, and no more.

    Declared here so that this package need not know the training package, which sits above it.
    """

    config: TrainConfig
    freeze: FreezeSummary
    class_names: list[str]
    weights_source: str
    preprocessing: Preprocessing
    augment: str
    caches_features: bool
    class_weighting: _LossWeights
    device: _torch.device
    train_items: Sequence[ImageItem]
    val_items: Sequence[ImageItem]


CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
SPLIT_FILE = "split.json"
PREDICTIONS_FILE = "val_predictions.csv"
NOTE_FILE = "note.txt"
CALIBRATION_FILE = "calibration.json"  # see tl_core.inference.calibration
OPEN_SET_FILE = "open_set.safetensors"  # see tl_core.inference.open_set
MAX_NOTE_LENGTH = 200
TRANSFER_FILE = "transfer.json"
SWEEP_FILE = "sweep.json"
# What each group file makes of its folder, in the order they are looked for.
GROUP_KINDS = {TRANSFER_FILE: "transfer-check", SWEEP_FILE: "sweep"}
UNFINISHED_GROUP = "group"  # run folders without a group file yet (a sweep still training)


def save_weights(
    path: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Writes a safetensors file atomically, with string ``metadata`` in its header."""
    # safetensors refuses shared or non-contiguous storage: give it independent CPU copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    # Serialised here and written by Python, so a full disk raises an OSError with its errno
    # (the library's own file writer reports it as an opaque error, or not at all).
    data = serialize_weights(tensors, dict(metadata) if metadata else None)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The metadata in a safetensors file's header (for run weights: their epoch), or {}.

    Raises:
        RunError: The file is cut short or is not a safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as weights:
            return dict(weights.metadata() or {})
    except SafetensorError as exc:
        raise unreadable_weights(Path(path), exc) from None


def run_is_live(path: str | Path) -> bool:
    """Whether a process is still training into the run folder ``path``.

    A run whose metrics still say "running" but that is not live was interrupted (its process
    was killed, or the machine stopped). Where this cannot be told, a run counts as live.
    """
    return is_locked(path) is not False


def live_status(status: str, path: str | Path) -> str:
    """The status to show for a run: "interrupted" for a "running" run whose process is gone."""
    return "interrupted" if status == "running" and not run_is_live(path) else status


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(
            f"{Path(path).name} is missing from the run folder {Path(path).parent}.",
            "Pick another run, or train again: the run may have been interrupted.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(f"{Path(path).name} is not valid JSON ({exc})") from None


def new_run_dir(root: str | Path, backbone: str) -> Path:
    """Creates a new, uniquely named run folder such as ``20261122-204512-resnet18``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe_backbone = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{safe_backbone}"
    for attempt in range(1000):
        path = root / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"Could not create a new run folder in {root}.")


def _taken(path: Path) -> RunError:
    return RunError(
        f"The run folder {path} already exists and is not empty.",
        "Choose a new folder, so no earlier run is overwritten.",
    )


def require_new_run_dir(path: str | Path) -> Path:
    """Checks that ``path`` is free for a new run: missing, or an empty folder, and writable.

    Raises:
        RunError: It holds files, which a new run must never overwrite.
        TLStudioError: It cannot be created or written (read-only, no permission, a file in
            the way, a name too long).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise _taken(path)
    check_output_folder(path)
    return path


class RunWriter:
    """Writes one run folder in the format this module reads back, every file atomically.

    :meth:`create` claims the folder: exactly one writer may own it, and it holds the folder's
    lock (so readers can tell a live run from an interrupted one) until :meth:`close`.

    Args:
        path: The run folder.
        lock: The folder's lock, held by this writer.
        created: True when this writer created the folder, so it may delete it again.
    """

    def __init__(self, path: str | Path, lock: FolderLock | None = None, created: bool = False):
        self.path = Path(path)
        self.created = created
        self._lock = lock

    @classmethod
    def create(cls, path: str | Path) -> RunWriter:
        """Claims a new (missing or empty) folder, creating it if it is missing.

        Raises:
            RunError: The folder holds files, or another training claimed it first.
            TLStudioError: It cannot be created or written.
        """
        path = require_new_run_dir(path)
        try:
            path.mkdir(parents=True)
            created = True
        except FileExistsError:  # an empty folder the user made, or a concurrent claim
            created = False
        return cls._claim(path, created)

    @classmethod
    def create_new(cls, root: str | Path, backbone: str) -> RunWriter:
        """Claims a new, uniquely named run folder under ``root`` (see :func:`new_run_dir`)."""
        return cls._claim(new_run_dir(root, backbone), created=True)

    @classmethod
    def _claim(cls, path: Path, created: bool) -> RunWriter:
        lock = FolderLock.acquire(path)
        if lock is None:
            raise RunError(
                f"Another training is already writing to the run folder {path}.",
                "Give each training a folder of its own (a new --out).",
            )
        if any(entry.name != LOCK_FILE for entry in path.iterdir()):
            lock.release(remove=True)
            raise _taken(path)
        return cls(path, lock, created)

    def close(self) -> None:
        """Releases the folder: the run is no longer being written (its lock file goes)."""
        if self._lock is not None:
            self._lock.release(remove=True)

    def discard(self) -> None:
        """Removes what this writer wrote, and the folder only if this writer created it.

        The folder was empty when claimed, so everything in it came from this run.
        """
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            for entry in self.path.iterdir():
                if entry.name == LOCK_FILE:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release(remove=True)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def write_description(self, plan: DescribedRun) -> None:
        """config.json, labels.json and split.json: written before the first epoch."""
        from tl_core.data import version_info

        config = plan.config
        freeze = plan.freeze
        write_json(
            self.path / CONFIG_FILE,
            {
                "train": config.to_dict(),
                "model": {
                    "backbone": config.backbone,
                    "num_classes": len(plan.class_names),
                    "weights_source": plan.weights_source,
                    "preprocessing": plan.preprocessing.to_dict(),
                    "augment": plan.augment,
                    "feature_cache": plan.caches_features,
                    # The loss weight of each class (None: the plain loss); see
                    # tl_core.training.class_weights.
                    "class_weights": (
                        dict(zip(plan.class_names, weights, strict=True))
                        if (weights := plan.class_weighting.weights)
                        else None
                    ),
                    "freeze": {
                        "frozen_groups": freeze.frozen_count,
                        "groups": [g.name for g in freeze.groups],
                        "trainable_params": freeze.trainable_params,
                        "frozen_params": freeze.frozen_params,
                    },
                },
                "device": str(plan.device),
                # Which reviewed version of the images it trained on (None: the originals).
                "dataset_version": version_info(config.data),
                "created": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
                "tl_studio_version": __version__,
            },
        )
        write_json(self.path / LABELS_FILE, plan.class_names)
        write_json(
            self.path / SPLIT_FILE,
            {
                "train": [[str(i.path), i.label] for i in plan.train_items],
                "val": [[str(i.path), i.label] for i in plan.val_items],
            },
        )

    def write_metrics(
        self, history: list[dict], best_epoch: int | None, status: str, error: str | None = None
    ) -> None:
        """metrics.json: the per-epoch history, the best epoch and its accuracy, the status.

        Args:
            history: One row per finished epoch.
            best_epoch: The epoch whose weights model.safetensors holds (None: no weights yet,
                or they are being replaced), so metrics.json never names weights that are
                not on disk. A better epoch still waiting in memory is not named.
            status: "running", "completed", "stopped" or "failed".
            error: What went wrong, for a failed run.
        """
        best = history[best_epoch - 1]["val_accuracy"] if best_epoch else None
        write_json(
            self.path / METRICS_FILE,
            {
                "history": history,
                "best_val_accuracy": best,
                "best_epoch": best_epoch,
                "status": status,
                "error": error,
            },
        )

    def write_weights(
        self, state_dict: Mapping[str, torch.Tensor], epoch: int | None = None
    ) -> None:
        """model.safetensors, with the epoch the weights come from in its metadata."""
        metadata = {"epoch": str(epoch)} if epoch is not None else None
        save_weights(self.path / WEIGHTS_FILE, state_dict, metadata)

    def write_val_predictions(self, predictions: pd.DataFrame) -> None:
        """The best model's predictions on the validation images, for the Evaluate page."""
        write_frame_csv(self.path / PREDICTIONS_FILE, predictions)


@dataclass(frozen=True)
class RunSummary:
    """What a list of runs shows, read without loading any weights.

    Attributes:
        freeze: What trained, in words: "head only", "full fine-tune" or "3/7 groups frozen".
        epochs_planned: The epochs the run was set to train (``epochs_done`` may be fewer:
            stopped, failed or stopped early).
        num_val_images: The images ``best_val_accuracy`` was measured on, when known.
        note: The user's note on the run ("" when none).
    """

    path: Path
    name: str
    created: datetime
    backbone: str
    status: str
    best_val_accuracy: float | None
    epochs_done: int
    labels: tuple[str, ...]
    has_weights: bool
    freeze: str = "?"
    pretrained: bool = True
    epochs_planned: int | None = None
    num_val_images: int | None = None
    note: str = ""

    @property
    def accuracy_text(self) -> str:
        """The best validation accuracy, with its interval and sample size when known."""
        if self.best_val_accuracy is None:
            return "no accuracy yet"
        if self.num_val_images:
            return format_accuracy(self.best_val_accuracy, self.num_val_images)
        return f"{self.best_val_accuracy:.1%}"

    @property
    def title(self) -> str:
        """A line that tells runs apart: "tf_efficientnet_lite0 · head only · 10/10 epochs ·
        94.4% (95 % CI 74%–99%, 18 images) · 2026-05-01 14:32:05 · “clean data”"."""
        planned = self.epochs_planned if self.epochs_planned is not None else "?"
        parts = [self.backbone, self.freeze]
        if not self.pretrained:
            parts.append("from scratch")
        parts.append(f"{self.epochs_done}/{planned} epochs")
        if self.status != "completed":
            parts.append(self.status)
        parts += [self.accuracy_text, f"{self.created:%Y-%m-%d %H:%M:%S}"]
        if self.note:
            parts.append(f"“{self.note}”")
        return " · ".join(parts)


def _typed(value: Any, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """``value`` if it is of ``kind``, else ``default``; true and false are never numbers.

    A summary shows what it can of a run whose files were edited; loading the run then says
    what is wrong with it.
    """
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def describe_freeze(config: Mapping[str, Any]) -> str:
    """A run's freeze depth in words, from its config.json (older runs: the train setting)."""
    freeze = _typed(_typed(config.get("model"), dict, {}).get("freeze"), dict, {})
    frozen, groups = _typed(freeze.get("frozen_groups"), int), _typed(freeze.get("groups"), list)
    if frozen is not None and groups:
        backbone_groups = len(groups) - 1  # the last group is the head, which always trains
        spec = "all" if frozen >= backbone_groups else "none" if frozen == 0 else None
        detail = f"{frozen}/{backbone_groups} groups frozen"
    else:
        spec = str(_typed(config.get("train"), dict, {}).get("freeze", "?"))
        detail = f"{spec} groups frozen" if spec.isdigit() else spec
    depth = {"all": "head only", "none": "full fine-tune"}.get(spec, detail)
    # Gradual unfreezing ends at the recorded depth; older runs have no mode (a fixed one).
    if _typed(config.get("train"), dict, {}).get("mode") == "gradual":
        return f"gradual unfreezing to {depth}"
    return depth


def _num_val_images(path: Path) -> int | None:
    try:
        return len(read_json(path / SPLIT_FILE)["val"])
    except (RunError, KeyError, TypeError):
        return None


def _read_leniently(path: Path) -> Any:
    """A JSON file of a run, or None when it is missing or unreadable."""
    try:
        return read_json(path)
    except RunError:
        return None


def _created(config: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(config["created"])
    except (KeyError, TypeError, ValueError):
        return datetime.fromtimestamp(0)


def summarize_run(path: Path) -> RunSummary:
    """What a list of runs shows of the run folder ``path``.

    A value of the wrong type in an edited file shows as unknown, so the run stays listed and
    loading it says what is wrong.

    Raises:
        RunError: config.json is missing, not JSON, or not an object: nothing tells what the
            folder holds.
    """
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict):
        raise damaged("config.json does not describe a run")
    metrics = _typed(_read_leniently(path / METRICS_FILE), dict, {})
    labels = _typed(_read_leniently(path / LABELS_FILE), list, [])
    train = _typed(config.get("train"), dict, {})
    return RunSummary(
        path=path,
        name=path.name,
        created=_created(config),
        backbone=_typed(_typed(config.get("model"), dict, {}).get("backbone"), str, "?"),
        status=live_status(_typed(metrics.get("status"), str, "unknown"), path),
        best_val_accuracy=_typed(metrics.get("best_val_accuracy"), (int, float)),
        epochs_done=len(_typed(metrics.get("history"), list, [])),
        labels=tuple(str(label) for label in labels),
        has_weights=(path / WEIGHTS_FILE).exists(),
        freeze=describe_freeze(config),
        pretrained=bool(train.get("pretrained", True)),
        epochs_planned=_typed(train.get("epochs"), int),
        num_val_images=_num_val_images(path),
        note=read_note(path),
    )


def _summaries(paths: Iterable[Path]) -> list[RunSummary]:
    """Summaries of the run folders among ``paths``; a folder that cannot be read is skipped."""
    summaries = []
    for path in paths:
        if not (path / CONFIG_FILE).is_file():
            continue
        try:
            summaries.append(summarize_run(path))
        except (RunError, OSError):
            continue
    return summaries


def _folders(root: Path) -> list[Path]:
    try:
        return sorted(path for path in root.iterdir() if path.is_dir())
    except OSError:  # missing, or not a folder
        return []


def list_runs(root: str | Path, in_groups: bool = False) -> list[RunSummary]:
    """Every run folder under ``root``, newest first.

    A damaged run is listed when its config.json still tells what it is (loading it then says
    what is wrong); a folder that cannot be read at all is skipped.

    Args:
        root: The folder that holds run folders (and, maybe, group folders).
        in_groups: Also list the runs inside the group folders under ``root`` (transfer checks,
            sweeps; see :func:`list_groups`).
    """
    root = Path(root)
    summaries = _summaries(_folders(root))
    if in_groups:
        for group in list_groups(root):
            summaries.extend(group.runs)
    return sorted(summaries, key=lambda s: (s.created, s.name), reverse=True)


@dataclass(frozen=True)
class RunGroup:
    """A folder of runs trained together: a transfer check or a freeze-depth sweep.

    Attributes:
        kind: "transfer-check" or "sweep" (from the group file), or "group" while the group
            has run folders but no group file yet (a sweep still training, or one stopped).
        result: The group file's contents ({} when there is none yet, or it is unreadable).
        runs: Its runs: those the group file names first, in its order, then the others by
            folder name.
    """

    path: Path
    name: str
    kind: str
    result: dict[str, Any]
    runs: tuple[RunSummary, ...]

    @property
    def created(self) -> datetime:
        """When its first run started (for a group without runs: the folder's time)."""
        if self.runs:
            return min(run.created for run in self.runs)
        return datetime.fromtimestamp(self.path.stat().st_mtime)


def _named_runs(kind: str, result: Mapping[str, Any]) -> list[str]:
    """The run folder names a group file gives, in its order."""
    if kind == "transfer-check":
        names = _typed(result.get("runs"), dict, {}).values()
    else:
        names = [_typed(row, dict, {}).get("run") for row in _typed(result.get("rows"), list, [])]
    return [name for name in names if isinstance(name, str)]


def read_group(path: str | Path) -> RunGroup | None:
    """The group in folder ``path``, or None when it is not one.

    A group is a folder with no config.json of its own that holds a group file
    (``GROUP_KINDS``) or at least one run folder.
    """
    path = Path(path)
    if not path.is_dir() or (path / CONFIG_FILE).exists():
        return None
    kind, result = UNFINISHED_GROUP, {}
    for file_name, file_kind in GROUP_KINDS.items():
        if (path / file_name).is_file():
            kind, result = file_kind, _typed(_read_leniently(path / file_name), dict, {})
            break
    runs = {run.name: run for run in _summaries(_folders(path))}
    if not runs and kind == UNFINISHED_GROUP:
        return None
    order = [name for name in dict.fromkeys(_named_runs(kind, result)) if name in runs]
    order += sorted(set(runs) - set(order))
    return RunGroup(path, path.name, kind, result, tuple(runs[name] for name in order))


def list_groups(root: str | Path) -> list[RunGroup]:
    """Every group folder directly under ``root``, newest first."""
    groups = [group for path in _folders(Path(root)) if (group := read_group(path)) is not None]
    return sorted(groups, key=lambda g: (g.created, g.name), reverse=True)


def preferred_run(
    runs: Sequence[RunSummary], current: str | Path | None = None
) -> RunSummary | None:
    """The run a picker starts on, among those with weights.

    The session's current run (the one just trained, or picked before) comes first; else the
    most accurate completed run, since a stopped one-epoch run is rarely what the user wants;
    else the newest.

    Args:
        runs: Run summaries, as ``list_runs`` gives them.
        current: The session's current run folder, if any.

    Returns:
        The run to preselect, or None when no run has weights.
    """
    usable = [run for run in runs if run.has_weights]
    for run in usable:
        if current is not None and run.path == Path(current):
            return run
    completed = [r for r in usable if r.status == "completed" and r.best_val_accuracy is not None]
    if completed:
        return max(completed, key=lambda r: (r.best_val_accuracy, r.created, r.name))
    return max(usable, key=lambda r: (r.created, r.name), default=None)


def run_dataset(run_dir: str | Path) -> Path:
    """The dataset folder a run trained on (its config.json's ``data``), to make a new version
    of it from the run's evaluation.

    Raises:
        RunError: The run's config.json is missing or unreadable.
        DatasetError: The folder is no longer there (deleted, moved or renamed) or is a .zip
            (unpacked to a temporary folder while the run trained).
    """
    config = read_json(Path(run_dir) / CONFIG_FILE)
    data = config.get("train", {}).get("data") if isinstance(config, dict) else None
    if not isinstance(data, str) or not data:
        raise DatasetError(
            "The run's config.json does not say which dataset it trained on.",
            "Fix the images on the Data page instead: the next training uses the fixes.",
        )
    folder = Path(data)
    if folder.is_file():
        raise DatasetError(
            f"The run trained on the archive {folder.name}, not on a folder, so there is no "
            "dataset folder to make a version of.",
            "Import the archive on the Data page, train on it, then fix images from here.",
        )
    if not folder.is_dir():
        raise DatasetError(
            f"The dataset this run trained on is no longer at {folder} (deleted, moved or "
            "renamed), so its images cannot be fixed from here.",
            "Put the folder back where it was, or load the dataset on the Data page and fix "
            "its images there.",
        )
    return folder


def read_note(path: str | Path) -> str:
    """The user's note on a run, or "" when it has none."""
    try:
        return (Path(path) / NOTE_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def write_note(path: str | Path, text: str) -> str:
    """Saves (or, for blank text, removes) the user's note on a run, atomically.

    The note is kept on one line, since it is shown in run titles.

    Returns:
        The note as saved.

    Raises:
        RunError: ``path`` is not a run folder, or the note is too long.
    """
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise RunError(f"{path} is not a run folder.", "Check the path of the run.")
    note = " ".join(text.split())
    if len(note) > MAX_NOTE_LENGTH:
        raise RunError(
            f"The note has {len(note)} characters; a note holds at most {MAX_NOTE_LENGTH}.",
            "Shorten it: a few words that tell this run apart are enough.",
        )
    if note:
        atomic_write(path / NOTE_FILE, lambda tmp: tmp.write_text(note + "\n", encoding="utf-8"))
    else:
        (path / NOTE_FILE).unlink(missing_ok=True)
    return note


class Run:
    """A run folder that has weights: enough to rebuild the model and its preprocessing."""

    def __init__(
        self, path: Path, config: TrainConfig, model_info: dict, labels: list[str], metrics: dict
    ):
        self.path = path
        self.config = config
        self.model_info = model_info
        self.labels = labels
        self.metrics = metrics
        self.preprocessing = check_preprocessing(model_info)

    @property
    def backbone(self) -> str:
        return self.model_info["backbone"]

    def build_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The architecture with the run's best weights, in eval mode.

        Raises:
            RunError: The backbone is unknown, or the weights file is unreadable or does not
                fit the architecture and the number of classes.
        """
        from tl_core.models import create_model

        try:
            model, _ = create_model(self.backbone, len(self.labels), pretrained=False)
        except WeightsError as exc:
            raise damaged(
                f"config.json names the backbone {self.backbone!r}, which cannot be built "
                f"({exc.message.rstrip('.')})"
            ) from None
        state = read_weights(self.path / WEIGHTS_FILE)
        check_weights_fit(model, state, self.labels, self.backbone)
        model.load_state_dict(state)
        return model.to(device).eval()

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics.get("history", []))


def load_run(path: str | Path) -> Run:
    """Loads a run's description, checking all it can without building the model.

    Settings, preprocessing, class names and metrics are checked here; the weights when
    :meth:`Run.build_model` builds the model.

    Raises:
        RunError: No run folder or no weights at ``path``, or a file that is damaged or was
            edited (the message says which, and what is wrong with it).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"No run folder at {path}.", "Check the path, or train a model first.")
    config_data = read_json(path / CONFIG_FILE)
    if not (path / WEIGHTS_FILE).is_file():
        raise RunError(
            f"The run {path.name} has no saved weights.",
            "It stopped before finishing its first epoch: train again.",
        )
    config = check_train_settings(config_data)
    model_info = check_model_info(config_data)
    labels = check_labels(read_json(path / LABELS_FILE), model_info)
    metrics = read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
    return Run(path, config, model_info, labels, check_metrics(metrics))


def as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else load_run(run)
