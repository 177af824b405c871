"""The one writer of run folders: ``RunWriter`` claims a folder and writes each file of it
atomically, in the layout ``tl_core.runs.layout`` names; weights go into safetensors files.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd
import torch
from safetensors.torch import save as serialize_weights

from tl_core import __version__
from tl_core.common import RunError, atomic_write, write_frame_csv, write_json
from tl_core.config import TrainConfig
from tl_core.runs.layout import (
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MULTI_LABEL_METRIC,
    MULTI_LABEL_TASK,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    WEIGHTS_FILE,
    new_run_dir,
    require_new_run_dir,
    taken_error,
)
from tl_core.runs.locks import LOCK_FILE, FolderLock

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


class RunWriter:
    """Writes one run folder, every file atomically, as ``tl_core.runs.reader`` reads it back.

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
        # What the history's "accuracy" measures, when not accuracy (set by write_description).
        self.accuracy_metric: str | None = None

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
            raise taken_error(path)
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
        multi_label = bool(getattr(plan, "multi_label", False))
        self.accuracy_metric = MULTI_LABEL_METRIC if multi_label else None
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
                    # One sigmoid output per tag (a labels.csv dataset); absent: one class.
                    **({"task": MULTI_LABEL_TASK} if multi_label else {}),
                    # The loss weight of each class (None: the plain loss); see
                    # tl_core.training.class_weights.
                    "class_weights": (
                        dict(zip(plan.class_names, weights, strict=True))
                        if (weights := plan.class_weighting.weights)
                        else None
                    ),
                    # The depth itself is the "train" section's freeze, written once: the
                    # groups resolve it (runs written before also hold "frozen_groups").
                    "freeze": {
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
        metrics = {
            "history": history,
            "best_val_accuracy": best,
            "best_epoch": best_epoch,
            "status": status,
            "error": error,
        }
        if self.accuracy_metric is not None:  # what "accuracy" means in this run's history
            metrics["accuracy_metric"] = self.accuracy_metric
        write_json(self.path / METRICS_FILE, metrics)

    def write_weights(
        self, state_dict: Mapping[str, torch.Tensor], epoch: int | None = None
    ) -> None:
        """model.safetensors, with the epoch the weights come from in its metadata."""
        metadata = {"epoch": str(epoch)} if epoch is not None else None
        save_weights(self.path / WEIGHTS_FILE, state_dict, metadata)

    def write_val_predictions(self, predictions: pd.DataFrame) -> None:
        """The best model's predictions on the validation images, for the Evaluate page."""
        write_frame_csv(self.path / PREDICTIONS_FILE, predictions)
