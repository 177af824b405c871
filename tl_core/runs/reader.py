"""The one reader of run folders: summaries for lists of runs (no weights loaded), a run loaded
with its checks (``tl_core.runs.checks``), the user's notes, and the dataset a run trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open

from tl_core.common import (
    DatasetError,
    RunError,
    TLStudioError,
    WeightsError,
    atomic_write,
    format_score,
    shorten,
)
from tl_core.config import FreezeDepth, TrainConfig, frozen_words, gradual_words
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
from tl_core.runs.layout import (
    CONFIG_FILE,
    LABELS_FILE,
    MAX_NOTE_LENGTH,
    METRICS_FILE,
    MULTI_LABEL_TASK,
    NOTE_FILE,
    SPLIT_FILE,
    WEIGHTS_FILE,
    live_status,
    of_type,
    read_json,
    read_json_or_none,
)

# A run that ended "completed", or whose metrics.json is missing or unreadable ("unknown"),
# should hold weights; without them it is listed as failed, never as a usable run. (A run
# stopped or interrupted before its first save says so itself.)
WEIGHTS_PROMISED = ("completed", "unknown")
NO_WEIGHTS_REASON = (
    "Its weights are not on disk: the training ended before it could save them, or the "
    "weights file was deleted."
)
MAX_TITLE_ERROR_CHARS = 80  # a run's title names the reason it failed, cut to this length


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


@dataclass(frozen=True)
class RunSummary:
    """What a list of runs shows, read without loading any weights.

    Attributes:
        freeze: What trained, in words: "head only", "full fine-tune" or "3/7 groups frozen".
        epochs_planned: The epochs the run was set to train (``epochs_done`` may be fewer:
            stopped, failed or stopped early).
        num_val_images: The images ``best_val_accuracy`` was measured on, when known.
        note: The user's note on the run ("" when none).
        error: Why a failed run failed, in words ("" when it did not fail, or did not say).
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
    error: str = ""
    accuracy_metric: str = "accuracy"  # a multi-label run's: its metric's name

    @property
    def accuracy_text(self) -> str:
        """The best validation accuracy, with its interval and sample size when known (a
        multi-label run's metric by name, with its sample size)."""
        if self.best_val_accuracy is None:
            return "no accuracy yet"
        if self.num_val_images:
            return format_score(self.best_val_accuracy, self.num_val_images, self.accuracy_metric)
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
        if self.status == "failed" and self.error:
            parts.append(f"failed ({shorten(self.error.rstrip('.'), MAX_TITLE_ERROR_CHARS)})")
        elif self.status != "completed":
            parts.append(self.status)
        parts += [self.accuracy_text, f"{self.created:%Y-%m-%d %H:%M:%S}"]
        if self.note:
            parts.append(f"“{self.note}”")
        return " · ".join(parts)


def describe_freeze(config: Mapping[str, Any]) -> str:
    """A run's freeze depth in words, from its config.json.

    The depth is the "train" section's freeze, resolved against the layer groups the "model"
    section lists. Runs written before the depth was stored once also hold the resolved count
    ("frozen_groups"): it is only needed where the train setting is unreadable.
    """
    train = of_type(config.get("train"), dict, {})
    freeze = of_type(of_type(config.get("model"), dict, {}).get("freeze"), dict, {})
    groups = of_type(freeze.get("groups"), list)
    # The last group is the head, which always trains.
    num_backbone_groups = len(groups) - 1 if groups else None
    try:
        depth = FreezeDepth.parse(train.get("freeze", "?")).words(num_backbone_groups)
    except TLStudioError:  # edited: show what the resolved count says, else the text itself
        frozen = of_type(freeze.get("frozen_groups"), int)
        known = frozen is not None and num_backbone_groups is not None
        depth = (
            frozen_words(frozen, num_backbone_groups) if known else str(train.get("freeze", "?"))
        )
    # Gradual unfreezing ends at the recorded depth; older runs have no mode (a fixed one).
    return gradual_words(depth) if train.get("mode") == "gradual" else depth


def _num_val_images(path: Path) -> int | None:
    try:
        return len(read_json(path / SPLIT_FILE)["val"])
    except (RunError, KeyError, TypeError):
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
    metrics = of_type(read_json_or_none(path / METRICS_FILE), dict, {})
    labels = of_type(read_json_or_none(path / LABELS_FILE), list, [])
    train = of_type(config.get("train"), dict, {})
    has_weights = (path / WEIGHTS_FILE).exists()
    status = live_status(of_type(metrics.get("status"), str, "unknown"), path)
    error = of_type(metrics.get("error"), str, "") if status == "failed" else ""
    if not has_weights and status in WEIGHTS_PROMISED:
        status, error = "failed", NO_WEIGHTS_REASON
    return RunSummary(
        path=path,
        name=path.name,
        created=_created(config),
        backbone=of_type(of_type(config.get("model"), dict, {}).get("backbone"), str, "?"),
        status=status,
        best_val_accuracy=of_type(metrics.get("best_val_accuracy"), (int, float)),
        epochs_done=len(of_type(metrics.get("history"), list, [])),
        labels=tuple(str(label) for label in labels),
        has_weights=has_weights,
        freeze=describe_freeze(config),
        pretrained=bool(train.get("pretrained", True)),
        epochs_planned=of_type(train.get("epochs"), int),
        num_val_images=_num_val_images(path),
        note=read_note(path),
        error=error,
        accuracy_metric=of_type(metrics.get("accuracy_metric"), str, "accuracy"),
    )


def summaries(paths: Iterable[Path]) -> list[RunSummary]:
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

    @property
    def multi_label(self) -> bool:
        """Whether the run has one sigmoid output per tag (trained on a labels.csv dataset):
        an image gets every tag above its threshold (``thresholds.json``), or none."""
        return self.model_info.get("task") == MULTI_LABEL_TASK

    @property
    def accuracy_metric(self) -> str:
        """What the history's accuracy measures: "accuracy", or for a multi-label run the
        metric named in metrics.json."""
        return str(self.metrics.get("accuracy_metric") or "accuracy")

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
    multi_label = model_info.get("task") == MULTI_LABEL_TASK
    labels = check_labels(read_json(path / LABELS_FILE), model_info, multi_label)
    metrics = read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
    return Run(path, config, model_info, labels, check_metrics(metrics))


def as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else load_run(run)
