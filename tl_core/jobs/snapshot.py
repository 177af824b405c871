"""What every job is and says: its kinds, its statuses, its locked state and immutable snapshot.

One state and one snapshot serve every kind of heavy work (training, groups of runs,
comparisons, label searches, the learning-rate finder): the pages, the sidebar, the scheduler
and the command line read a job the same way whatever it does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.common import PHASE_FEATURES, PHASE_PREPARING, TLStudioError, format_score

# What a job does. Training kinds write runs: one run, or a group in a folder of its own.
TRAIN, SWEEP, TRANSFER_CHECK = "train", "sweep", "transfer-check"
TRAINING_KINDS = (TRAIN, SWEEP, TRANSFER_CHECK)
# Analyses that read a dataset and hand back a result, writing no run.
COMPARISON, LABEL_SEARCH, LR_FIND = "comparison", "label-search", "lr-find"
# The automatic recipe search: its runs and decisions in a group folder (tl_core.auto).
AUTO = "auto"
KIND_NAMES = {
    TRAIN: "Training",
    SWEEP: "Freeze-depth sweep",
    TRANSFER_CHECK: "Transfer check",
    COMPARISON: "Backbone comparison",
    LABEL_SEARCH: "Label-error search",
    LR_FIND: "Learning-rate finder",
    AUTO: "Automatic search",
}

QUEUED = "queued"
ACTIVE_STATUSES = ("starting", "running", "pausing", "paused", "stopping")
# How a job can end: ran to its end, stopped, failed, left the queue before it ran, or lost
# when the server stopped (see tl_core.jobs.scheduler).
ENDED_STATUSES = ("completed", "stopped", "failed", "cancelled", "interrupted")
PAUSING_MESSAGE = "Pausing after this batch"
STOPPING_MESSAGE = "Stopping after this batch"
# Enough points for a smooth live chart; older batches are thinned out, never the epochs.
MAX_BATCH_POINTS = 2000


def _format_rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


@dataclass(frozen=True)
class FinishedRun:
    """A run of a group that ended: what set it apart, where it is, how it ended, its epochs."""

    label: str
    run_dir: str
    status: str
    history: tuple[dict, ...]


@dataclass
class JobState:
    """What a job's thread changes under the job's lock; ``JobSnapshot`` copies it.

    Runs fill the training fields; an analysis counts its work in ``step`` of
    ``total_steps`` and leaves its answer in ``result``.
    """

    run_dir: str = ""
    run_label: str = ""
    run_index: int = 0
    run_total: int = 1
    finished_runs: list[FinishedRun] = field(default_factory=list)
    result_run: str | None = None
    result: Any = None
    status: str = "starting"
    message: str = "Starting"
    activity: str = "Starting"
    place_in_line: int = 0  # 2 for the first job waiting behind the one that runs; 0 if none
    phase: str = PHASE_PREPARING
    plan: str = ""
    warnings: tuple[str, ...] = ()
    device: str = ""
    num_val_images: int | None = None
    caches_features: bool = False
    accuracy_metric: str = "accuracy"
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    batch_losses: list[tuple[float, float]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_val_accuracy: float | None = None
    lr: float | None = None
    images_per_second: float | None = None
    epochs_per_second: float | None = None
    eta_seconds: float | None = None
    error: str | None = None
    error_hint: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


# What a run resets when the next run of a group begins: everything measured about one run.
PER_RUN_FIELDS = (
    "phase",
    "plan",
    "warnings",
    "num_val_images",
    "caches_features",
    "accuracy_metric",
    "epoch",
    "step",
    "total_steps",
    "batch_losses",
    "history",
    "best_val_accuracy",
    "lr",
    "images_per_second",
    "epochs_per_second",
    "eta_seconds",
)


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job's state at one moment.

    Epochs are counted one way everywhere: ``epoch`` is the number of finished epochs
    ("epochs done"); the message names the epoch in progress.
    """

    job_id: str
    kind: str  # one of KIND_NAMES
    title: str  # what the job is, in a few words ("Training resnet18 on flowers")
    dataset: str  # the dataset folder it reads
    group_dir: str | None  # the sweep's or transfer check's folder; None for one run
    status: str
    message: str  # what to show beside the status: the activity, the pending pause/stop, ...
    activity: str  # what the job is doing, in words ("Epoch 2 of 6 in progress")
    place_in_line: int  # while queued: 2 for the first waiting behind the running job
    phase: str  # one of the PHASE_* names of tl_core.common.control
    plan: str  # what trains, in one sentence (empty until the data and model are ready)
    # Dataset health warnings, train/validation overlap included (known with the plan).
    warnings: tuple[str, ...]
    run_dir: str  # the run training now (the last one, once the job ended); "" until claimed
    run_label: str  # what sets that run apart in a group ("freeze 2"); "" for one run
    run_index: int  # its place in the group's runs, from 1
    run_total: int  # runs in the group
    finished_runs: tuple[FinishedRun, ...]  # the group's runs that ended, in order
    result_run: str | None  # the run to carry on with: the only one, the best depth, ...
    result: Any  # an analysis's answer (a ranking, suspects, a learning-rate curve)
    backbone: str
    device: str
    num_val_images: int | None
    caches_features: bool
    epoch: int
    total_epochs: int
    step: int
    total_steps: int
    batch_losses: tuple[tuple[float, float], ...]
    history: tuple[dict, ...]
    best_val_accuracy: float | None
    lr: float | None
    images_per_second: float | None
    epochs_per_second: float | None
    eta_seconds: float | None
    error: str | None
    error_hint: str | None
    started_at: float
    finished_at: float | None
    # What ``history``'s and ``best_val_accuracy``'s accuracy measures: "accuracy", or for a
    # multi-label run the metric's name (tl_core.runs.MULTI_LABEL_METRIC), for chart labels.
    accuracy_metric: str = "accuracy"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_queued(self) -> bool:
        return self.status == QUEUED

    @property
    def is_group(self) -> bool:
        return self.group_dir is not None

    @property
    def failure(self) -> TLStudioError | None:
        """Why the job failed, as an error to show (None unless it failed)."""
        if self.status != "failed":
            return None
        return TLStudioError(self.error or "The job failed.", self.error_hint or "")

    @property
    def name(self) -> str:
        """The folder the job writes, by name (the group's, for a sweep or a transfer check);
        its title while it has none."""
        folder = self.group_dir or self.run_dir
        return Path(folder).name if folder else self.title

    @property
    def run_progress(self) -> float:
        """How far the run (or analysis) under way has come (0..1)."""
        if self.status == "completed":
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def progress(self) -> float:
        """How far the whole job has come: a group counts each of its runs as an equal part."""
        if self.status == "completed" or self.run_total <= 1:
            return self.run_progress
        return (max(self.run_index - 1, 0) + self.run_progress) / self.run_total

    @property
    def queue_position(self) -> str:
        """Which run of a group trains, e.g. "Run 2 of 5 (freeze 2)"; "" for one run."""
        if not self.is_group or not self.run_index:
            return ""
        label = f" ({self.run_label})" if self.run_label else ""
        return f"Run {self.run_index} of {self.run_total}{label}"

    @property
    def headline(self) -> str:
        """The status in words, for a progress bar: "Paused · Epoch 2 of 6 in progress"."""
        position = f"{self.queue_position} · " if self.is_active and self.queue_position else ""
        if self.status in ("pausing", "stopping"):
            return f"{self.message} · {position}{self.activity}"
        if self.status == "paused":  # nothing moves: no time left is counted down
            return f"Paused · {position}{self.activity} · ETA on hold"
        if self.is_queued:
            return self.message
        return f"{self.status.capitalize()} · {position}{self.message}"

    @property
    def epochs_done(self) -> str:
        """Finished epochs out of the planned ones, e.g. "1/6"."""
        return f"{self.epoch}/{self.total_epochs}"

    @property
    def best_accuracy_text(self) -> str | None:
        """The best validation accuracy with its interval and image count, if there is one (a
        multi-label run's metric by name, see ``accuracy_metric``)."""
        if self.best_val_accuracy is None or not self.num_val_images:
            return None
        return format_score(self.best_val_accuracy, self.num_val_images, self.accuracy_metric)

    @property
    def speed(self) -> tuple[str, str]:
        """(label, value) of the throughput that means something in the current phase.

        Computing features: images through the backbone. Training only the head on cached
        features: epochs per second (its steps are far faster than the backbone and would
        mislead as images/s). Training on images: the training steps' images per second.
        Paused: "paused", not the pace before the pause.
        """
        label, value = self._pace()
        return label, "paused" if self.status == "paused" else value

    def _pace(self) -> tuple[str, str]:
        if self.phase == PHASE_FEATURES:
            return "Backbone images/s", _format_rate(self.images_per_second)
        if self.phase == PHASE_PREPARING:
            return "Images/s", "–"
        if self.caches_features:
            return "Head epochs/s", _format_rate(self.epochs_per_second)
        return "Training images/s", _format_rate(self.images_per_second)
