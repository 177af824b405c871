"""Run folders on disk: one folder per training run, every file written atomically.

A run folder holds:
    config.json          everything needed to rebuild the model and its preprocessing
    labels.json          class names in output-index order
    metrics.json         per-epoch history, best validation accuracy, status
    model.safetensors    best weights (by validation accuracy)
    split.json           which images were used for training and validation
    val_predictions.csv  the best model's predictions on the validation images
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from tl_core.config import TrainConfig
from tl_core.errors import RunError
from tl_core.preprocessing import Preprocessing

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
SPLIT_FILE = "split.json"
PREDICTIONS_FILE = "val_predictions.csv"


def atomic_write(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames it into place.

    A crash mid-write leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_frame_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_weights(path: Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    # safetensors refuses shared or non-contiguous storage: give it independent CPU copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(
            f"{Path(path).name} is missing from the run folder {Path(path).parent}.",
            "Pick another run, or train again: the run may have been interrupted.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc}).", "The run folder is damaged.") from None


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


@dataclass(frozen=True)
class RunSummary:
    """What a list of runs shows, read without loading any weights."""

    path: Path
    name: str
    created: datetime
    backbone: str
    status: str
    best_val_accuracy: float | None
    epochs_done: int
    labels: tuple[str, ...]
    has_weights: bool

    @property
    def title(self) -> str:
        accuracy = (
            "no accuracy yet" if self.best_val_accuracy is None else f"{self.best_val_accuracy:.1%}"
        )
        return f"{self.name} · {self.status} · {accuracy}"


def summarize_run(path: Path) -> RunSummary:
    config = read_json(path / CONFIG_FILE)
    metrics = read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
    labels = read_json(path / LABELS_FILE) if (path / LABELS_FILE).exists() else []
    created = config.get("created")
    return RunSummary(
        path=path,
        name=path.name,
        created=datetime.fromisoformat(created) if created else datetime.fromtimestamp(0),
        backbone=config.get("model", {}).get("backbone", "?"),
        status=metrics.get("status", "unknown"),
        best_val_accuracy=metrics.get("best_val_accuracy"),
        epochs_done=len(metrics.get("history", [])),
        labels=tuple(labels),
        has_weights=(path / WEIGHTS_FILE).exists(),
    )


def list_runs(root: str | Path) -> list[RunSummary]:
    """Every run folder under ``root``, newest first; damaged folders are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    summaries = []
    for path in root.iterdir():
        if not (path / CONFIG_FILE).is_file():
            continue
        try:
            summaries.append(summarize_run(path))
        except (RunError, ValueError, AttributeError):
            continue
    return sorted(summaries, key=lambda s: (s.created, s.name), reverse=True)


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
        self.preprocessing = Preprocessing.from_dict(model_info["preprocessing"])

    @property
    def backbone(self) -> str:
        return self.model_info["backbone"]

    def build_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The architecture with the run's best weights, in eval mode."""
        from tl_core.backbones import create_model  # deferred: timm model registry is slow

        model, _ = create_model(self.backbone, len(self.labels), pretrained=False)
        state = load_file(str(self.path / WEIGHTS_FILE))
        model.load_state_dict(state)
        return model.to(device).eval()

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics.get("history", []))


def load_run(path: str | Path) -> Run:
    """Loads a run's description, checking that it can rebuild a model."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"No run folder at {path}.", "Check the path, or train a model first.")
    config_data = read_json(path / CONFIG_FILE)
    if not (path / WEIGHTS_FILE).is_file():
        raise RunError(
            f"The run {path.name} has no saved weights.",
            "It stopped before finishing its first epoch: train again.",
        )
    try:
        config = TrainConfig.from_dict(config_data["train"])
        model_info = config_data["model"]
    except (KeyError, TypeError) as exc:
        raise RunError(f"{path / CONFIG_FILE} lacks {exc}.", "The run folder is damaged.") from None
    labels = read_json(path / LABELS_FILE)
    metrics = read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
    return Run(path, config, model_info, labels, metrics)


def as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else load_run(run)
