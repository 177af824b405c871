"""Training jobs: a background thread per run, a locked state, and a process-wide registry.

The thread never touches the user interface. It updates a ``_JobState`` under a lock; the app
and the CLI read immutable ``JobSnapshot`` copies whenever they redraw.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tl_core.config import TrainConfig
from tl_core.control import (
    PHASE_FEATURES,
    PHASE_PREPARING,
    BatchStats,
    JobControl,
    Progress,
    TrainingObserver,
)
from tl_core.devices import describe_device
from tl_core.engine import train
from tl_core.errors import JobBusyError
from tl_core.failures import explain_failure
from tl_core.intervals import format_accuracy
from tl_core.runs import RunWriter

ACTIVE_STATUSES = ("starting", "running", "pausing", "paused", "stopping")
PAUSING_MESSAGE = "Pausing after this batch"
STOPPING_MESSAGE = "Stopping after this batch"
# Enough points for a smooth live chart; older batches are thinned out, never the epochs.
MAX_BATCH_POINTS = 2000


def _format_rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job's state at one moment.

    Epochs are counted one way everywhere: ``epoch`` is the number of finished epochs
    ("epochs done"); the message names the epoch in progress.
    """

    job_id: str
    status: str
    message: str  # what to show beside the status: the activity, or the pending pause/stop
    activity: str  # what the job is doing, in words ("Epoch 2 of 6 in progress")
    phase: str  # one of the PHASE_* names of tl_core.control
    plan: str  # what trains, in one sentence (empty until the data and model are ready)
    # Dataset health warnings, train/validation overlap included (known with the plan).
    warnings: tuple[str, ...]
    run_dir: str
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
    def progress(self) -> float:
        if self.status == "completed":
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def headline(self) -> str:
        """The status in words, for a progress bar: "Paused · Epoch 2 of 6 in progress"."""
        if self.status in ("pausing", "stopping"):
            return f"{self.message} · {self.activity}"
        return f"{self.status.capitalize()} · {self.message}"

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


class _StateObserver(TrainingObserver):
    """Copies the trainer's events into the job's locked state."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def on_phase(self, message: str, phase: str | None = None) -> None:
        with self.job._lock:
            state = self.job._state
            state.activity = message
            if phase is not None:
                state.phase = phase
            if state.status not in ("pausing", "stopping"):  # those keep their own words
                state.message = message

    def on_plan(self, plan) -> None:
        with self.job._lock:
            state = self.job._state
            if state.status == "starting":
                state.status = "running"
            state.device = describe_device(plan.device)
            state.plan = plan.describe()
            state.warnings = tuple(issue.message for issue in plan.warnings)
            state.num_val_images = plan.num_val_images
            state.caches_features = plan.caches_features

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
    """One training run in a background thread.

    ``pause`` and ``stop`` take effect between batches; the status says so at once
    ("pausing", "stopping") and changes again when the loop has really paused or ended.

    Args:
        config: The run's settings.
        run_dir: The (new or empty) run folder to write, or a writer that already claimed it.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path | RunWriter):
        self.job_id = uuid.uuid4().hex[:12]
        self.config = config
        self._target = run_dir
        self.run_dir = run_dir.path if isinstance(run_dir, RunWriter) else Path(run_dir)
        self._control = JobControl()
        self._lock = threading.Lock()
        self._state = _JobState()
        self._thread = threading.Thread(
            target=self._run, name=f"tl-studio-job-{self.job_id}", daemon=True
        )

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _run(self) -> None:
        try:
            status = train(self.config, self._target, _StateObserver(self), self._control)
            message = "Finished" if status == "completed" else "Stopped by the user"
            self._update(status=status, message=message)
        except BaseException as exc:  # the thread must always end in a readable state
            error, hint = explain_failure(exc)
            self._update(status="failed", message="Failed", error=error, error_hint=hint)
        finally:
            self._update(finished_at=time.time())

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
        with self._lock:
            state = self._state
            return JobSnapshot(
                job_id=self.job_id,
                run_dir=str(self.run_dir),
                backbone=self.config.backbone,
                total_epochs=self.config.epochs,
                batch_losses=tuple(state.batch_losses),
                history=tuple(dict(row) for row in state.history),
                **{
                    f.name: getattr(state, f.name)
                    for f in dataclasses.fields(state)
                    if f.name not in ("batch_losses", "history")
                },
            )


class JobRegistry:
    """Every job this process started; at most one trains at a time.

    Args:
        runs_root: Where new run folders are created.
    """

    def __init__(self, runs_root: str | Path):
        self.runs_root = Path(runs_root)
        self._jobs: dict[str, TrainingJob] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()

    def start(self, config: TrainConfig) -> TrainingJob:
        """Starts a job in a new run folder, or raises JobBusyError if one is active."""
        with self._lock:
            active = self._active_locked()
            if active is not None:
                snapshot = active.snapshot()
                raise JobBusyError(
                    f"A training job is already {snapshot.status} ({snapshot.backbone}, "
                    f"epochs done {snapshot.epochs_done}).",
                    "Wait for it to finish, or stop it first: one job trains at a time.",
                )
            job = TrainingJob(config, RunWriter.create_new(self.runs_root, config.backbone))
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
