"""The search's clock: time used of the budget (pauses left out), and each step's stop at it.

A step's training checks its control before every batch (``tl_core.common.JobControl``). A
``StepControl`` answers for the user (Stop, Pause, Resume on the whole search) and for the
budget: after an epoch it stops a run whose next epoch would end past the step's limit, and
before any batch it stops once a hard limit has passed. That is what keeps the whole search
within its budget plus at most one epoch, whatever the computer's speed turns out to be.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tl_core.common import JobControl, TeeObserver, TrainingObserver, TrainingStopped, UsageError

# "1h30m", "10m", "90s", "600": hours, minutes, then seconds (the unit optional).
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s?)?")


class Budget:
    """Seconds used and left of a budget, on a monotonic clock with pauses taken out.

    Args:
        seconds: The budget.
        clock: Seconds from a monotonic clock (replaceable in tests).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._started = clock()
        self._paused = 0.0
        self._paused_at: float | None = None

    def used(self) -> float:
        now = self._clock()
        pause = now - self._paused_at if self._paused_at is not None else 0.0
        return max(0.0, now - self._started - self._paused - pause)

    def left(self) -> float:
        return self.seconds - self.used()

    def pause(self, paused: bool) -> None:
        """A pause began (True) or ended (False): its time is not the search's."""
        if paused and self._paused_at is None:
            self._paused_at = self._clock()
        elif not paused and self._paused_at is not None:
            self._paused += self._clock() - self._paused_at
            self._paused_at = None


class StepControl(JobControl):
    """The user's control over the whole search, plus a time limit for one step.

    Args:
        outer: The search's control (Stop, Pause and Resume from the user).
        budget: The search's clock.
        limit: Used seconds after which no new epoch starts (the step's share ends).
        hard_limit: Used seconds after which the step stops before its next batch.
        first_epoch_runs: The hard limit waits for the first epoch to end (the final run:
            a search always hands over a model).
    """

    def __init__(
        self,
        outer: JobControl,
        budget: Budget,
        limit: float,
        hard_limit: float,
        first_epoch_runs: bool = False,
    ):
        super().__init__()
        self.outer = outer
        self.budget = budget
        self.limit = limit
        self.hard_limit = hard_limit
        self.out_of_time = False
        self.epochs_done = 0
        self.first_epoch_runs = first_epoch_runs

    def _past_hard_limit(self) -> bool:
        if self.first_epoch_runs and not self.epochs_done:
            return False
        if self.budget.used() > self.hard_limit:
            self.out_of_time = True
        return self.out_of_time

    @property
    def stop_requested(self) -> bool:
        return super().stop_requested or self.outer.stop_requested or self._past_hard_limit()

    def is_set(self) -> bool:
        return self.stop_requested

    @property
    def paused(self) -> bool:
        return self.outer.paused

    def wait_for_resume(self, timeout: float) -> bool:
        return self.outer.wait_for_resume(timeout)

    def checkpoint(self, on_pause=None) -> float:
        paused = self.outer.checkpoint(on_pause)  # raises on the user's stop
        if self.stop_requested:
            raise TrainingStopped
        return paused

    def after_epoch(self, epoch_seconds: float) -> None:
        """Stops the run when one more epoch of ``epoch_seconds`` would pass the limit."""
        self.epochs_done += 1
        if self.budget.used() + epoch_seconds > self.limit:
            self.out_of_time = True
            self.stop()


class DeadlineObserver(TeeObserver):
    """Passes a run's events on, and applies the step's time limit after every epoch and the
    budget's clock to every pause."""

    def __init__(self, outer: TrainingObserver, control: StepControl):
        super().__init__(outer)
        self.control = control

    def on_epoch(self, row: dict, improved: bool) -> None:
        super().on_epoch(row, improved)
        self.control.after_epoch(float(row.get("seconds") or 0.0))

    def on_pause(self, paused: bool) -> None:
        self.control.budget.pause(paused)
        super().on_pause(paused)


def parse_budget(text: str) -> float:
    """``"10m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or plain seconds (``"600"``) -> seconds.

    Raises:
        UsageError: The text is not a duration, or it is not positive.
    """
    cleaned = text.strip().lower().replace(" ", "")
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.fullmatch(
        r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", cleaned
    )
    seconds = 0.0
    if cleaned and parts is not None:
        for value, unit in zip(parts.groups(), units.values(), strict=True):
            seconds += float(value) * unit if value else 0.0
    if seconds <= 0:
        raise UsageError(
            f"The time budget {text!r} is not a duration.",
            'Give it as minutes or seconds, such as "10m", "90s" or "1h30m".',
        )
    return seconds
