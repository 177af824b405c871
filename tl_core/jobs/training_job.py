"""Training jobs: one run, or a group of runs that answer one question together, in a thread.

A group is a freeze-depth sweep (one run per depth) or a transfer check (pretrained, then from
scratch). The thread never touches the user interface: the trainer's events land in the job's
locked state (``tl_core.jobs.job``), which pages and the command line read as snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    BatchStats,
    Progress,
    TeeObserver,
    TrainingObserver,
)
from tl_core.config import TrainConfig
from tl_core.jobs.events import summary_of
from tl_core.jobs.job import Job
from tl_core.jobs.snapshot import (
    KIND_NAMES,
    MAX_BATCH_POINTS,
    PER_RUN_FIELDS,
    SWEEP,
    TRAIN,
    TRAINING_KINDS,
    TRANSFER_CHECK,
    FinishedRun,
    JobState,
)
from tl_core.runs import RunWriter
from tl_core.training import train

# The runs of a transfer check, in the order they train, with what each one is.
TRANSFER_RUNS = {PRETRAINED_RUN: "with pretrained weights", SCRATCH_RUN: "from random weights"}

# Where a job trains: a folder (or a writer that already claimed it), or a function that
# claims one when the job starts, so a job waiting in the queue leaves no folder behind.
Target = str | Path | RunWriter | Callable[[], Path | RunWriter]


def training_title(config: TrainConfig, kind: str) -> str:
    """What a training job is, in a few words: "Training resnet18 on flowers"."""
    return f"{KIND_NAMES[kind]} {config.backbone} on {Path(config.data).name}"


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
            state.accuracy_metric = summary.accuracy_metric

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


class TrainingJob(Job):
    """One training run, or a group of runs, in a background thread.

    In a group, a stop ends the run under way and cancels the runs still waiting.

    Args:
        config: The run's settings (a group's recipe: each run changes what it compares).
        run_dir: For one run, the (new or empty) run folder, or a writer that already claimed
            it; for a group, its new or empty folder. Or a function that claims either when
            the job starts.
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
        run_dir: Target,
        kind: str = TRAIN,
        depths: Sequence[str] | None = None,
        feature_cache: str | Path | None = None,
        listener: TrainingObserver | None = None,
    ):
        if kind not in TRAINING_KINDS:
            raise ValueError(f"Unknown job kind {kind!r}")
        super().__init__(
            kind, training_title(config, kind), str(config.data), config.backbone, config.epochs
        )
        self.config = config
        self.depths = list(depths) if depths is not None else None
        self.feature_cache = Path(feature_cache) if feature_cache is not None else None
        self._claim = run_dir if callable(run_dir) else None
        self.run_dir: Path | None = None  # for a group: the group folder until its first run
        if self._claim is None:
            self._take_folder(run_dir)
        self._observer = _StateObserver(self)
        self._listener = listener

    def _take_folder(self, target: str | Path | RunWriter) -> None:
        self._target = target
        folder = target.path if isinstance(target, RunWriter) else Path(target)
        self.group_dir = None if self.kind == TRAIN else folder
        self.run_dir = folder
        self._update(run_dir=str(folder))

    def _begin_run(self, index: int, total: int, label: str, run_dir: Path) -> None:
        """The next run of a group starts: the live view now follows it from scratch."""
        fresh = JobState()
        with self._lock:
            state = self._state
            for name in PER_RUN_FIELDS:
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

    def _work(self) -> str:
        try:
            if self._claim is not None:
                self._take_folder(self._claim())
            if self.kind == SWEEP:
                return self._run_sweep()
            if self.kind == TRANSFER_CHECK:
                return self._run_transfer_check()
            status = self._train(self.config, self._target)
            self._update(result_run=str(self.run_dir))
            return status
        finally:
            self._discard_empty_group()

    def _discard_empty_group(self) -> None:
        """A group that failed before its first run leaves no empty folder behind."""
        if self.group_dir is None:
            return
        try:
            if self.group_dir.is_dir() and not any(self.group_dir.iterdir()):
                self.group_dir.rmdir()
        except OSError:
            pass  # an empty folder left behind harms nothing
