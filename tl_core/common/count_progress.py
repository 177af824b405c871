"""Progress of a long count (files scanned, images through a backbone) as one line of text.

``tl-studio check`` prints these lines while it scans, and a page can show the same text
beside its progress bar: "Scanning: 12,000/50,000 files, 40 s left".
"""

from __future__ import annotations

import time
from collections.abc import Callable


def format_seconds(seconds: float) -> str:
    """``"40 s"``, ``"3 min 5 s"`` or ``"1 h 2 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def describe(label: str, done: int, total: int, unit: str, elapsed: float) -> str:
    """One line on a count: how far, and the time left at the pace so far."""
    text = f"{label}: {done:,}/{total:,} {unit}"
    if done >= total:
        return f"{text}, done in {format_seconds(elapsed)}"
    if done and elapsed > 0:
        return f"{text}, {format_seconds(elapsed / done * (total - done))} left"
    return text


class CountProgress:
    """A ``progress(done, total)`` callback that emits a line at most every ``every`` seconds
    (and always the last one), so 100,000 files do not print 100,000 lines.

    Args:
        label: What is counted, e.g. ``"Scanning"``.
        unit: The counted things, e.g. ``"files"``.
        emit: Receives each line, and whether it is the last (the count is complete).
        every: Seconds between lines.
        clock: Seconds from a monotonic clock (replaceable in tests).
    """

    def __init__(
        self,
        label: str,
        unit: str,
        emit: Callable[[str, bool], None],
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.unit, self.emit, self.every, self.clock = label, unit, emit, every, clock
        self._started: float | None = None
        self._last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self._started is None:
            self._started = now
        if done < total and now - self._last < self.every:
            return
        self._last = now
        line = describe(self.label, done, total, self.unit, now - self._started)
        self.emit(line, done >= total)
