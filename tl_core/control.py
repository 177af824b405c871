"""How a running training loop is told to pause, resume or stop, and how it reports progress."""

from __future__ import annotations

import threading
import time
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

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

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


@dataclass(frozen=True)
class BatchStats:
    """One training step, as the live charts and progress bar see it."""

    epoch: float  # completed epochs plus the fraction of the current one
    loss: float
    lr: float
    step: int
    total_steps: int
    images_per_second: float
    eta_seconds: float


class TrainingObserver:
    """Receives the trainer's events; every method is optional."""

    def on_phase(self, message: str) -> None:
        """A new phase began, described in words ("Scanning images", "Epoch 2/10")."""

    def on_plan(self, plan) -> None:
        """The data, model and schedule are ready (a ``TrainingPlan``)."""

    def on_progress(self, step: int, total_steps: int) -> None:
        """A step of work that is not a training batch finished (e.g. computing features)."""

    def on_batch(self, stats: BatchStats) -> None:
        """A training batch finished."""

    def on_epoch(self, row: dict, improved: bool) -> None:
        """An epoch finished; ``row`` is its line of ``metrics.json`` history."""

    def on_pause(self, paused: bool) -> None:
        """Training paused (True) or resumed (False)."""
