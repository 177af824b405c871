"""How a running training loop is told to pause, resume or stop, and how it reports progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class TrainingStopped(Exception):
    """Raised inside the training loop when the user asks it to stop."""


class JobControl:
    """Thread-safe pause/resume/stop flags that the training loop checks every batch."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can notice the stop

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def is_set(self) -> bool:
        """Whether a stop was asked for: the question the analyses ask of their ``stop``
        (a ``threading.Event`` elsewhere), so one control stops every kind of job."""
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_for_resume(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds while paused; True once running (or stopped)."""
        return self._running.wait(timeout)

    def checkpoint(self, on_pause=None) -> float:
        """Blocks while paused, raises TrainingStopped when stopped.

        Args:
            on_pause: Called with True when a pause begins and False when it ends.

        Returns:
            Seconds spent paused, so throughput and ETA can leave them out.
        """
        if self._stop.is_set():
            raise TrainingStopped
        if self._running.is_set():
            return 0.0
        started = time.monotonic()
        if on_pause:
            on_pause(True)
        self._running.wait()
        if on_pause:
            on_pause(False)
        if self._stop.is_set():
            raise TrainingStopped
        return time.monotonic() - started


# What a job is doing, so numbers can be labelled for it.
PHASE_PREPARING = "preparing"  # checking the images, loading the backbone
PHASE_FEATURES = "features"  # the frozen backbone computes every image's features once
PHASE_TRAINING = "training"  # epochs (on images, or on cached features when only the head trains)
PHASE_SAVING = "saving"  # the best model's validation predictions are written


@dataclass(frozen=True)
class BatchStats:
    """One training step, as the live loss chart sees it."""

    epoch: float  # completed epochs plus the fraction of the current one
    loss: float
    lr: float


@dataclass(frozen=True)
class Progress:
    """How far a run is and how fast it goes, measured for the phase it is in.

    Paused time is left out of every rate and of the ETA.
    """

    step: int
    total_steps: int
    # Images through the model per second: the backbone's while features are computed, the
    # training steps' while images train; None while only the head trains on cached features.
    images_per_second: float | None
    # Head-only epochs on cached features per second (None in every other phase).
    epochs_per_second: float | None
    eta_seconds: float | None


class TrainingObserver:
    """Receives the trainer's events; every method is optional."""

    def on_phase(self, message: str, phase: str | None = None) -> None:
        """What is under way, in words ("Checking the images"), and its phase if it changed."""

    def on_plan(self, plan) -> None:
        """The data, model and schedule are ready (a ``TrainingPlan``)."""

    def on_progress(self, progress: Progress) -> None:
        """A step of work finished: a batch of features or of training, or an epoch."""

    def on_batch(self, stats: BatchStats) -> None:
        """A training batch finished."""

    def on_epoch(self, row: dict, improved: bool) -> None:
        """An epoch finished; ``row`` is its line of ``metrics.json`` history."""

    def on_pause(self, paused: bool) -> None:
        """Training paused (True) or resumed (False)."""


class TeeObserver(TrainingObserver):
    """Passes every event to each of several observers, in the order given."""

    def __init__(self, *observers: TrainingObserver):
        self.observers = observers

    def on_phase(self, message: str, phase: str | None = None) -> None:
        for observer in self.observers:
            observer.on_phase(message, phase)

    def on_plan(self, plan) -> None:
        for observer in self.observers:
            observer.on_plan(plan)

    def on_progress(self, progress: Progress) -> None:
        for observer in self.observers:
            observer.on_progress(progress)

    def on_batch(self, stats: BatchStats) -> None:
        for observer in self.observers:
            observer.on_batch(stats)

    def on_epoch(self, row: dict, improved: bool) -> None:
        for observer in self.observers:
            observer.on_epoch(row, improved)

    def on_pause(self, paused: bool) -> None:
        for observer in self.observers:
            observer.on_pause(paused)


class ProgressMeter:
    """Counts a run's steps and measures its pace per phase, leaving paused time out.

    The ETA adds up what is left of each phase at that phase's own pace: the images still to go
    through the backbone at the measured feature rate, then the epochs left at the measured
    epoch time (during the first epoch, at its pace so far). A single rate over every step
    would mix slow backbone batches with the head's millisecond steps.

    Args:
        epochs: Epochs the run is configured for.
        clock: Seconds from a monotonic clock (replaceable in tests).
    """

    def __init__(self, epochs: int, clock: Callable[[], float] = time.monotonic):
        self.epochs = epochs
        self._clock = clock
        self._paused = 0.0
        self.step = 0
        self.total_steps = 0
        self.cached = False
        self.feature_images = 0
        self.feature_images_done = 0
        self.feature_batches = 0
        self.feature_batches_done = 0
        # Backbone seconds, summed batch by batch: the first epoch of a head-only run computes
        # features between its training steps, so they are not one stretch of time.
        self._feature_seconds = 0.0
        self._after_first_feature_batch: tuple[int, float] | None = None  # (images, seconds)
        self._last_mark = 0.0  # when the last step of any kind ended (active seconds)
        self.steps_per_epoch = 0
        self.epoch_seconds: list[float] = []
        self._epoch_started: float | None = None
        self._epoch_feature_seconds = 0.0  # backbone batches within the epoch under way
        self._epoch_steps = 0
        self._epoch_images = 0
        self._epoch_train_seconds = 0.0
        self._images_per_second: float | None = None

    def now(self) -> float:
        """Active seconds: the clock with every pause taken out."""
        return self._clock() - self._paused

    def exclude(self, seconds: float) -> None:
        """Leaves ``seconds`` spent paused out of every rate and estimate."""
        self._paused += seconds

    def expect_features(
        self, images: int, batches: int, steps_per_epoch: int, head_only: bool = True
    ) -> None:
        """Features of ``images`` will be computed in ``batches`` (before the first epoch, or
        during it), and the head trains on them (``head_only``), or the layers after a frozen
        prefix whose outputs they are."""
        self.cached = head_only
        self.feature_images = images
        self.feature_batches = batches
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = self.step + batches + self.epochs * steps_per_epoch
        self._last_mark = self.now()

    @property
    def features_pending(self) -> bool:
        """Whether some announced features are still to be computed."""
        return self.feature_images_done < self.feature_images

    def _mark(self) -> float:
        """Seconds since the last step of any kind ended (now is that end)."""
        now = self.now()
        seconds, self._last_mark = now - self._last_mark, now
        return seconds

    def feature_batch(self, images: int) -> None:
        """A batch of features is ready; it took the time since the last step ended."""
        seconds = self._mark()
        self.step += 1
        self.feature_batches_done += 1
        self.feature_images_done += images
        self._feature_seconds += seconds
        if self._epoch_started is not None:
            self._epoch_feature_seconds += seconds
        if self._feature_seconds > 0:
            self._images_per_second = self.feature_images_done / self._feature_seconds
        if self._after_first_feature_batch is None:
            self._after_first_feature_batch = (self.feature_images_done, self._feature_seconds)

    def steady_feature_rate(self) -> float | None:
        """The backbone's images per second after its first batch (which pays one-off costs:
        allocations, workers starting), pauses left out; None with a single batch."""
        if self._after_first_feature_batch is None:
            return None
        images, seconds = self._after_first_feature_batch
        seconds = self._feature_seconds - seconds
        if self.feature_images_done <= images or seconds <= 0:
            return None
        return (self.feature_images_done - images) / seconds

    def expect_epochs(self, steps_per_epoch: int) -> None:
        """Fixes the step count from the real training loader (which may drop a last image)."""
        self.steps_per_epoch = steps_per_epoch
        batches_left = self.feature_batches - self.feature_batches_done
        self.total_steps = self.step + batches_left + self.epochs * steps_per_epoch

    def start_epoch(self) -> None:
        self._epoch_started = self._last_mark = self.now()
        self._epoch_feature_seconds = 0.0
        self._epoch_steps = self._epoch_images = 0
        self._epoch_train_seconds = 0.0
        if self.cached and not self.features_pending:
            self._images_per_second = None  # the head's steps say nothing about the backbone

    def _epoch_elapsed(self) -> float:
        """Active seconds of the epoch under way, its backbone batches left out."""
        return self.now() - self._epoch_started - self._epoch_feature_seconds

    def train_batch(self, images: int) -> None:
        self._mark()
        self.step += 1
        self._epoch_steps += 1
        self._epoch_images += images
        elapsed = self._epoch_elapsed()
        self._epoch_train_seconds = elapsed
        if not self.cached and elapsed > 0:
            self._images_per_second = self._epoch_images / elapsed

    def epoch_train_rate(self) -> float | None:
        """Images per second of this epoch's training steps (validation left out, pauses too,
        and the backbone's batches where the epoch computed features between its steps)."""
        if not self._epoch_images or self._epoch_train_seconds <= 0:
            return None
        return self._epoch_images / self._epoch_train_seconds

    def end_epoch(self) -> float:
        """Closes the epoch (validation included, backbone batches left out); returns its
        active seconds."""
        seconds = self._epoch_elapsed()
        self.epoch_seconds.append(seconds)
        self._epoch_started = None
        self._last_mark = self.now()
        return seconds

    def _epoch_estimate(self) -> float | None:
        if self.epoch_seconds:
            return sum(self.epoch_seconds) / len(self.epoch_seconds)
        if self._epoch_started is not None and self._epoch_steps:
            return self._epoch_elapsed() / self._epoch_steps * self.steps_per_epoch
        # Before any head-only epoch, the head's cost is negligible next to the backbone's.
        return 0.0 if self.cached else None

    def eta_seconds(self) -> float | None:
        """Seconds left if every remaining epoch runs, or None before any pace is known."""
        features_left = 0.0
        if self.feature_images_done < self.feature_images:
            if not self.feature_images_done or self._feature_seconds <= 0:
                return None
            rate = self.feature_images_done / self._feature_seconds
            features_left = (self.feature_images - self.feature_images_done) / rate
        per_epoch = self._epoch_estimate()
        if per_epoch is None:
            return None
        in_epoch = self._epoch_started is not None
        current_left = max(0.0, per_epoch - self._epoch_elapsed()) if in_epoch else 0
        epochs_left = self.epochs - len(self.epoch_seconds) - (1 if in_epoch else 0)
        return features_left + current_left + max(0, epochs_left) * per_epoch

    def progress(self) -> Progress:
        epochs_per_second = None
        if self.cached and self.epoch_seconds:
            epochs_per_second = len(self.epoch_seconds) / max(sum(self.epoch_seconds), 1e-9)
        return Progress(
            step=self.step,
            total_steps=self.total_steps,
            images_per_second=self._images_per_second,
            epochs_per_second=epochs_per_second,
            eta_seconds=self.eta_seconds(),
        )
