"""Training jobs: a background thread per job, a locked state, and a process-wide registry.

A job trains one run, or a queue of runs that answer one question together: a freeze-depth
sweep (one run per depth) or a transfer check (pretrained, then from scratch). The thread
never touches the user interface. It updates a ``_JobState`` under a lock; the app and the
CLI read immutable ``JobSnapshot`` copies whenever they redraw.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tl_core.analysis import (
    PRETRAINED_RUN,
    SCRATCH_RUN,
    SweepObserver,
    SweepRow,
    best_row,
    transfer_check,
)
from tl_core.analysis.sweep import sweep
from tl_core.common import (
    PHASE_FEATURES,
    PHASE_PREPARING,
    BatchStats,
    JobBusyError,
    JobControl,
    Progress,
    TeeObserver,
    TrainingObserver,
    explain_failure,
    format_accuracy,
)
from tl_core.config import TrainConfig
from tl_core.jobs.events import summary_of
from tl_core.runs import RunWriter, new_run_dir
from tl_core.training import train

ACTIVE_STATUSES = ("starting", "running", "pausing", "paused", "stopping")
PAUSING_MESSAGE = "Pausing after this batch"
STOPPING_MESSAGE = "Stopping after this batch"
# Enough points for a smooth live chart; older batches are thinned out, never the epochs.
MAX_BATCH_POINTS = 2000

# What a job trains: one run, or a group of runs in a folder of their own.
TRAIN, SWEEP, TRANSFER_CHECK = "train", "sweep", "transfer-check"
KIND_NAMES = {TRAIN: "Training", SWEEP: "Freeze-depth sweep", TRANSFER_CHECK: "Transfer check"}
# The runs of a transfer check, in the order they train, with what each one is.
TRANSFER_RUNS = {PRETRAINED_RUN: "with pretrained weights", SCRATCH_RUN: "from random weights"}


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


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job's state at one moment.

    Epochs are counted one way everywhere: ``epoch`` is the number of finished epochs
    ("epochs done"); the message names the epoch in progress.
    """

    job_id: str
    kind: str  # TRAIN, SWEEP or TRANSFER_CHECK
    group_dir: str | None  # the sweep's or transfer check's folder; None for one run
    status: str
    message: str  # what to show beside the status: the activity, or the pending pause/stop
    activity: str  # what the job is doing, in words ("Epoch 2 of 6 in progress")
    phase: str  # one of the PHASE_* names of tl_core.common.control
    plan: str  # what trains, in one sentence (empty until the data and model are ready)
    # Dataset health warnings, train/validation overlap included (known with the plan).
    warnings: tuple[str, ...]
    run_dir: str  # the run training now (the last one, once the job ended)
    run_label: str  # what sets that run apart in a group ("freeze 2"); "" for one run
    run_index: int  # its place in the queue, from 1
    run_total: int  # runs in the queue
    finished_runs: tuple[FinishedRun, ...]  # the group's runs that ended, in order
    result_run: str | None  # the run to carry on with: the only one, the best depth, ...
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

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_group(self) -> bool:
        return self.group_dir is not None

    @property
    def name(self) -> str:
        """The folder the job writes, by name: the group's, for a sweep or a transfer check."""
        return Path(self.group_dir or self.run_dir).name

    @property
    def run_progress(self) -> float:
        """How far the run training now has come (0..1)."""
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
        return f"{self.status.capitalize()} · {position}{self.message}"

    @property
    def epochs_done(self) -> str:
        """Finished epochs out of the planned ones, e.g. "1/6"."""
        return f"{self.epoch}/{self.total_epochs}"

    @property
    def best_accuracy_text(self) -> str | None:
        """The best validation accuracy with its interval and image count, if there is one."""
        if self.best_val_accuracy is None or not self.num_val_images:
            return None
        return format_accuracy(self.best_val_accuracy, self.num_val_images)

    @property
    def speed(self) -> tuple[str, str]:
        """(label, value) of the throughput that means something in the current phase.

        Computing features: images through the backbone. Training only the head on cached
        features: epochs per second (its steps are far faster than the backbone and would
        mislead as images/s). Training on images: the training steps' images per second.
        """
        if self.phase == PHASE_FEATURES:
            return "Backbone images/s", _format_rate(self.images_per_second)
        if self.phase == PHASE_PREPARING:
            return "Images/s", "–"
        if self.caches_features:
            return "Head epochs/s", _format_rate(self.epochs_per_second)
        return "Training images/s", _format_rate(self.images_per_second)


@dataclass
class _JobState:
    run_dir: str = ""
    run_label: str = ""
    run_index: int = 0
    run_total: int = 1
    finished_runs: list[FinishedRun] = field(default_factory=list)
    result_run: str | None = None
    status: str = "starting"
    message: str = "Starting"
    activity: str = "Starting"
    phase: str = PHASE_PREPARING
    plan: str = ""
    warnings: tuple[str, ...] = ()
    device: str = ""
    num_val_images: int | None = None
    caches_features: bool = False
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
_PER_RUN_FIELDS = (
    "phase",
    "plan",
    "warnings",
    "num_val_images",
    "caches_features",
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


class _StateObserver(SweepObserver):
    """Copies the trainer's events into the job's locked state; a sweep's too."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def on_run_start(self, index: int, total: int, row: SweepRow) -> None:
        self.job._begin_run(index, total, f"freeze {row.freeze}", self.job.group_dir / row.run)

    def on_run_end(self, index: int, total: int, row: SweepRow) -> None:
        self.job._end_run(row.status)

    def on_phase(self, message: str, phase: str | None = None) -> None:
        with self.job._lock:
            state = self.job._state
            state.activity = message
            if phase is not None:
                state.phase = phase
            if state.status not in ("pausing", "stopping"):  # those keep their own words
                state.message = message

    def on_plan(self, plan) -> None:
        summary = summary_of(plan)  # a TrainingPlan, or one replayed from another process
        with self.job._lock:
            state = self.job._state
            if state.status == "starting":
                state.status = "running"
            state.device = summary.device
            state.plan = summary.description
            state.warnings = summary.warnings
            state.num_val_images = summary.num_val_images
            state.caches_features = summary.caches_features

    def on_progress(self, progress: Progress) -> None:
        self.job._update(
            step=progress.step,
            total_steps=progress.total_steps,
            images_per_second=progress.images_per_second,
            epochs_per_second=progress.epochs_per_second,
            eta_seconds=progress.eta_seconds,
        )

    def on_batch(self, stats: BatchStats) -> None:
        with self.job._lock:
            state = self.job._state
            state.lr = stats.lr
            state.batch_losses.append((stats.epoch, stats.loss))
            if len(state.batch_losses) > MAX_BATCH_POINTS:
                state.batch_losses = state.batch_losses[::2]

    def on_epoch(self, row: dict, improved: bool) -> None:
        with self.job._lock:
            state = self.job._state
            state.history.append(dict(row))
            state.epoch = row["epoch"]
            if improved:
                state.best_val_accuracy = row["val_accuracy"]

    def on_pause(self, paused: bool) -> None:
        with self.job._lock:
            state = self.job._state
            if paused and state.status != "stopping":
                state.status, state.message = "paused", state.activity
            elif not paused and state.status in ("pausing", "paused"):
                state.status, state.message = "running", state.activity


class TrainingJob:
    """One training run, or a group of runs, in a background thread.

    ``pause`` and ``stop`` take effect between batches; the status says so at once
    ("pausing", "stopping") and changes again when the loop has really paused or ended. In a
    group, a stop ends the run under way and cancels the runs still waiting.

    Args:
        config: The run's settings (a group's recipe: each run changes what it compares).
        run_dir: For one run, the (new or empty) run folder, or a writer that already claimed
            it; for a group, its new or empty folder.
        kind: TRAIN, SWEEP or TRANSFER_CHECK.
        depths: The freeze depths of a sweep (None: a few from full fine-tuning to head only).
        feature_cache: Where backbone features are kept between runs and the backbone advisor
            (None: head-only runs compute them afresh).
        listener: Also receives every training event of a single run (the command line's
            ``--events`` writes them out for a program following the run).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | RunWriter,
        kind: str = TRAIN,
        depths: Sequence[str] | None = None,
        feature_cache: str | Path | None = None,
        listener: TrainingObserver | None = None,
    ):
        if kind not in KIND_NAMES:
            raise ValueError(f"Unknown job kind {kind!r}")
        self.job_id = uuid.uuid4().hex[:12]
        self.config = config
        self.kind = kind
        self.depths = list(depths) if depths is not None else None
        self.feature_cache = Path(feature_cache) if feature_cache is not None else None
        self._target = run_dir
        folder = run_dir.path if isinstance(run_dir, RunWriter) else Path(run_dir)
        self.group_dir = None if kind == TRAIN else folder
        self.run_dir = folder  # for a group: the group folder until its first run starts
        self._control = JobControl()
        self._lock = threading.Lock()
        self._state = _JobState(run_dir=str(folder))
        self._observer = _StateObserver(self)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._run, name=f"tl-studio-job-{self.job_id}", daemon=True
        )

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _begin_run(self, index: int, total: int, label: str, run_dir: Path) -> None:
        """The next run of a group starts: the live view now follows it from scratch."""
        fresh = _JobState()
        with self._lock:
            state = self._state
            for name in _PER_RUN_FIELDS:
                setattr(state, name, getattr(fresh, name))
            state.run_index, state.run_total, state.run_label = index, total, label
            state.run_dir = str(run_dir)

    def _end_run(self, status: str) -> None:
        with self._lock:
            state = self._state
            state.finished_runs.append(
                FinishedRun(
                    state.run_label,
                    state.run_dir,
                    status,
                    tuple(dict(row) for row in state.history),
                )
            )

    def _train(self, config: TrainConfig, run_dir: str | Path | RunWriter) -> str:
        observer = self._observer
        if self._listener is not None:
            observer = TeeObserver(observer, self._listener)
        return train(config, run_dir, observer, self._control, feature_cache=self.feature_cache)

    def _run_sweep(self) -> str:
        result = sweep(
            self.config,
            self.group_dir,
            self.depths,
            self._observer,
            self._control,
            feature_cache=self.feature_cache,
        )
        best = best_row(result.rows)
        if best is not None and best.run:
            self._update(result_run=str(result.path / best.run))
        return "stopped" if self._control.stop_requested else "completed"

    def _run_transfer_check(self) -> str:
        labels = enumerate(TRANSFER_RUNS.values(), start=1)

        def train_run(config: TrainConfig, writer: RunWriter) -> str:
            index, label = next(labels)
            self._begin_run(index, len(TRANSFER_RUNS), label, writer.path)
            status = self._train(config, writer)
            self._end_run(status)
            return status

        result = transfer_check(
            self.config,
            self.group_dir,
            self._observer,
            self._control,
            train_run=train_run,
            cache_dir=self.feature_cache,
        )
        if result.status == "completed":
            self._update(result_run=str(self.group_dir / PRETRAINED_RUN))
        return result.status

    def _run(self) -> None:
        try:
            if self.kind == SWEEP:
                status = self._run_sweep()
            elif self.kind == TRANSFER_CHECK:
                status = self._run_transfer_check()
            else:
                status = self._train(self.config, self._target)
                self._update(result_run=str(self.run_dir))
            message = "Finished" if status == "completed" else "Stopped by the user"
            self._update(status=status, message=message)
        except BaseException as exc:  # the thread must always end in a readable state
            error, hint = explain_failure(exc)
            self._update(status="failed", message="Failed", error=error, error_hint=hint)
        finally:
            self._discard_empty_group()
            self._update(finished_at=time.time())

    def _discard_empty_group(self) -> None:
        """A group that failed before its first run leaves no empty folder behind."""
        if self.group_dir is None:
            return
        try:
            if self.group_dir.is_dir() and not any(self.group_dir.iterdir()):
                self.group_dir.rmdir()
        except OSError:
            pass  # an empty folder left behind harms nothing

    @property
    def is_active(self) -> bool:
        """Cheaper than ``snapshot().is_active``: no copy of the loss history."""
        with self._lock:
            return self._state.status in ACTIVE_STATUSES

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        """Pauses before the next batch; the status is "pausing" until the loop holds."""
        with self._lock:
            state = self._state
            if state.status not in ("starting", "running"):
                return
            state.status, state.message = "pausing", PAUSING_MESSAGE
            self._control.pause()

    def resume(self) -> None:
        """Carries on (or cancels a pause not yet reached)."""
        with self._lock:
            state = self._state
            if state.status in ("pausing", "paused"):
                state.status = "running" if state.plan else "starting"
                state.message = state.activity
            self._control.resume()

    def stop(self) -> None:
        with self._lock:
            if self._state.status in ACTIVE_STATUSES:
                self._state.status = "stopping"
                self._state.message = STOPPING_MESSAGE
        self._control.stop()

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        self._thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> JobSnapshot:
        copied = ("batch_losses", "history", "finished_runs")
        with self._lock:
            state = self._state
            return JobSnapshot(
                job_id=self.job_id,
                kind=self.kind,
                group_dir=str(self.group_dir) if self.group_dir is not None else None,
                backbone=self.config.backbone,
                total_epochs=self.config.epochs,
                batch_losses=tuple(state.batch_losses),
                history=tuple(dict(row) for row in state.history),
                finished_runs=tuple(state.finished_runs),
                **{
                    f.name: getattr(state, f.name)
                    for f in dataclasses.fields(state)
                    if f.name not in copied
                },
            )


class JobRegistry:
    """Every job this process started; at most one trains at a time.

    Args:
        runs_root: Where new run and group folders are created.
        feature_cache: Where head-only runs keep and find backbone features (None: nowhere).
    """

    def __init__(self, runs_root: str | Path, feature_cache: str | Path | None = None):
        self.runs_root = Path(runs_root)
        self.feature_cache = feature_cache
        self._jobs: dict[str, TrainingJob] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()

    def start(
        self,
        config: TrainConfig,
        kind: str = TRAIN,
        depths: Sequence[str] | None = None,
        nproc: int = 1,
    ) -> TrainingJob:
        """Starts a job in a new run folder (or group folder, for a sweep or transfer check).

        With ``nproc`` above 1, one run trains in that many processes of its own (one per
        GPU, see ``tl_core.jobs.processes``).

        Raises:
            JobBusyError: A job is active: one trains at a time.
        """
        with self._lock:
            active = self._active_locked()
            if active is not None:
                snapshot = active.snapshot()
                raise JobBusyError(
                    f"A training job is already {snapshot.status} ({snapshot.backbone}, "
                    f"epochs done {snapshot.epochs_done}).",
                    "Wait for it to finish, or stop it first: one job trains at a time.",
                )
            if kind == TRAIN and nproc > 1:
                from tl_core.jobs.processes import ProcessJob  # it builds on this module

                # Rank 0 of the processes claims the folder; a timestamped name keeps it new.
                target = new_run_dir(self.runs_root, config.backbone)
                job = ProcessJob(config, target, nproc, self.feature_cache)
            elif kind == TRAIN:
                target = RunWriter.create_new(self.runs_root, config.backbone)
                job = TrainingJob(config, target, kind, depths, self.feature_cache)
            else:  # the group claims its folder itself; a timestamped name keeps it new
                target = new_run_dir(self.runs_root, f"{kind}-{config.backbone}")
                job = TrainingJob(config, target, kind, depths, self.feature_cache)
            self._jobs[job.job_id] = job
            self._order.append(job.job_id)
            job.start()
            return job

    def get(self, job_id: str | None) -> TrainingJob | None:
        return self._jobs.get(job_id) if job_id else None

    def _active_locked(self) -> TrainingJob | None:
        for job_id in reversed(self._order):
            job = self._jobs[job_id]
            if job.is_active:
                return job
        return None

    def active(self) -> TrainingJob | None:
        with self._lock:
            return self._active_locked()

    def latest(self) -> TrainingJob | None:
        with self._lock:
            return self._jobs[self._order[-1]] if self._order else None
