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

import torch

from tl_core.config import TrainConfig
from tl_core.control import BatchStats, JobControl, TrainingObserver
from tl_core.devices import describe_device
from tl_core.engine import train
from tl_core.errors import JobBusyError, TLStudioError
from tl_core.runs import new_run_dir

ACTIVE_STATUSES = ("starting", "running", "paused", "stopping")
# Enough points for a smooth live chart; older batches are thinned out, never the epochs.
MAX_BATCH_POINTS = 2000


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job's state at one moment."""

    job_id: str
    status: str
    message: str
    plan: str  # what trains, in one sentence (empty until the data and model are ready)
    run_dir: str
    backbone: str
    device: str
    epoch: int
    total_epochs: int
    step: int
    total_steps: int
    batch_losses: tuple[tuple[float, float], ...]
    history: tuple[dict, ...]
    best_val_accuracy: float | None
    lr: float | None
    images_per_second: float | None
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


@dataclass
class _JobState:
    status: str = "starting"
    message: str = "Waiting to start"
    plan: str = ""
    device: str = ""
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    batch_losses: list[tuple[float, float]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_val_accuracy: float | None = None
    lr: float | None = None
    images_per_second: float | None = None
    eta_seconds: float | None = None
    error: str | None = None
    error_hint: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


def explain_failure(exc: BaseException) -> tuple[str, str]:
    """Turns an exception into (what went wrong, what to try), in plain words."""
    if isinstance(exc, TLStudioError):
        return exc.message, exc.hint
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return (
            "The GPU ran out of memory.",
            "Try a smaller batch size or image size, freeze more layer groups, or a smaller "
            "backbone.",
        )
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory.", "Try a smaller batch size or image size."
    return (
        f"Training failed: {type(exc).__name__}: {exc}",
        "Check the settings and the images; if it happens again, report it with this message.",
    )


class _StateObserver(TrainingObserver):
    """Copies the trainer's events into the job's locked state."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def on_phase(self, message: str) -> None:
        self.job._update(message=message)

    def on_plan(self, plan) -> None:
        self.job._update(
            status="running", device=describe_device(plan.device), plan=plan.describe()
        )

    def on_progress(self, step: int, total_steps: int) -> None:
        self.job._update(step=step, total_steps=total_steps)

    def on_batch(self, stats: BatchStats) -> None:
        with self.job._lock:
            state = self.job._state
            state.step, state.total_steps = stats.step, stats.total_steps
            state.lr = stats.lr
            state.images_per_second = stats.images_per_second
            state.eta_seconds = stats.eta_seconds
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
        self.job._update(status="paused" if paused else "running")


class TrainingJob:
    """One training run in a background thread.

    Args:
        config: The run's settings.
        run_dir: The (new or empty) run folder to write.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path):
        self.job_id = uuid.uuid4().hex[:12]
        self.config = config
        self.run_dir = Path(run_dir)
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
            status = train(self.config, self.run_dir, _StateObserver(self), self._control)
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
        self._control.pause()

    def resume(self) -> None:
        self._control.resume()

    def stop(self) -> None:
        with self._lock:
            if self._state.status in ACTIVE_STATUSES:
                self._state.status = "stopping"
                self._state.message = "Stopping after this batch"
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
                    f"epoch {snapshot.epoch}/{snapshot.total_epochs}).",
                    "Wait for it to finish, or stop it first: one job trains at a time.",
                )
            job = TrainingJob(config, new_run_dir(self.runs_root, config.backbone))
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
