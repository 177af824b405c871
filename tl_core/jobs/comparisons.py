"""Backbone comparisons in the background: a thread per comparison, a locked state, a registry.

The app asks "which backbone?" without freezing the page: ``advise`` runs in a thread that
never touches the user interface. It updates a ``_State`` under a lock; pages read immutable
``ComparisonSnapshot`` copies whenever they redraw. The registry lets one comparison run at a
time in the process (two would fight for the same processor) and keeps the newest comparison
of each dataset, so a reloaded page finds it again.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tl_core.analysis import AdvisorResult, AdvisorStopped, advise
from tl_core.common import TLStudioError, explain_failure
from tl_core.data import DatasetReport

ACTIVE_STATUSES = ("running", "stopping")
STOPPING_MESSAGE = "Stopping after this batch"

Advise = Callable[..., AdvisorResult]


class ComparisonBusyError(TLStudioError):
    """A comparison of backbones is already running; only one runs at a time."""


@dataclass(frozen=True)
class ComparisonSnapshot:
    """An immutable copy of a comparison's state at one moment.

    Attributes:
        status: "running", "stopping", "completed", "stopped" or "failed".
        done: Images through a backbone so far, over all candidates.
        total: Images to go through them in all.
        message: What it is doing, in words.
        result: The ranking, once completed.
        error: What went wrong, once failed.
    """

    comparison_id: str
    dataset: str
    status: str
    done: int
    total: int
    message: str
    result: AdvisorResult | None
    error: TLStudioError | None
    started_at: float
    finished_at: float | None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress(self) -> float:
        if self.status == "completed":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class _State:
    status: str = "running"
    done: int = 0
    total: int = 0
    message: str = "Starting"
    result: AdvisorResult | None = None
    error: TLStudioError | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


def _user_error(exc: BaseException) -> TLStudioError:
    """The failure in the words ``explain_failure`` finds for it, said of a comparison."""
    if isinstance(exc, TLStudioError):
        return exc
    message, hint = explain_failure(exc)
    # explain_failure speaks of training; nothing trains here.
    return TLStudioError(message.replace("Training failed", "The comparison failed", 1), hint)


class Comparison:
    """One run of the backbone advisor in a background thread.

    Args:
        data: The dataset's scan (or its folder).
        dataset: The name the registry files it under (the dataset's path).
        cache_dir: Where the advisor keeps the features it computes.
        advise_function: Runs the comparison; tests may pass a stand-in. Any function of
            the data that takes ``progress`` and ``stop`` like ``advise`` runs here as well
            (the search for label errors does).
        stopped_error: What ``advise_function`` raises when ``stop`` ends it.
        **options: More arguments for ``advise`` (backbones, max_images, ...).
    """

    def __init__(
        self,
        data: DatasetReport | str | Path,
        dataset: str,
        cache_dir: str | Path | None = None,
        advise_function: Advise = advise,
        stopped_error: type[Exception] = AdvisorStopped,
        **options,
    ):
        self.comparison_id = uuid.uuid4().hex[:12]
        self.dataset = dataset
        self._data = data
        self._options = dict(options, cache_dir=cache_dir)
        self._advise = advise_function
        self._stopped_error = stopped_error
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = _State()
        self._thread = threading.Thread(
            target=self._run, name=f"tl-studio-advisor-{self.comparison_id}", daemon=True
        )

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _progress(self, done: int, total: int, message: str) -> None:
        with self._lock:
            state = self._state
            state.done, state.total = done, total
            if state.status != "stopping":  # keeps saying it stops until it has
                state.message = message

    def _run(self) -> None:
        try:
            result = self._advise(
                self._data, progress=self._progress, stop=self._stop, **self._options
            )
            self._update(status="completed", message="Finished", result=result)
        except self._stopped_error:
            self._update(status="stopped", message="Stopped by the user")
        except BaseException as exc:  # the thread must always end in a readable state
            self._update(status="failed", message="Failed", error=_user_error(exc))
        finally:
            self._update(finished_at=time.time())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops before the next batch; the status is "stopping" until the thread has."""
        with self._lock:
            if self._state.status in ACTIVE_STATUSES:
                self._state.status, self._state.message = "stopping", STOPPING_MESSAGE
        self._stop.set()

    @property
    def is_active(self) -> bool:
        with self._lock:
            return self._state.status in ACTIVE_STATUSES

    def wait(self, timeout: float | None = None) -> ComparisonSnapshot:
        self._thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> ComparisonSnapshot:
        with self._lock:
            return ComparisonSnapshot(
                comparison_id=self.comparison_id,
                dataset=self.dataset,
                **{f.name: getattr(self._state, f.name) for f in dataclasses.fields(_State)},
            )


class ComparisonRegistry:
    """The comparisons of this process: at most one runs, the newest of each dataset is kept."""

    def __init__(self):
        self._comparisons: dict[str, Comparison] = {}
        self._lock = threading.Lock()

    def start(
        self,
        data: DatasetReport | str | Path,
        dataset: str,
        cache_dir: str | Path | None,
        **options,
    ) -> Comparison:
        """Starts comparing backbones on ``data``.

        Raises:
            ComparisonBusyError: A comparison is already running.
        """
        with self._lock:
            if self._active_locked() is not None:
                raise ComparisonBusyError(
                    "A comparison of backbones is already running.",
                    "Wait for it to finish, or stop it first: one comparison runs at a time.",
                )
            comparison = Comparison(data, dataset, cache_dir, **options)
            # An older result for the same images is replaced by the new one.
            self._comparisons = {
                key: c for key, c in self._comparisons.items() if c.dataset != dataset
            }
            self._comparisons[comparison.comparison_id] = comparison
            comparison.start()
            return comparison

    def get(self, comparison_id: str | None) -> Comparison | None:
        with self._lock:
            return self._comparisons.get(comparison_id) if comparison_id else None

    def _active_locked(self) -> Comparison | None:
        return next((c for c in self._comparisons.values() if c.is_active), None)

    def active(self) -> Comparison | None:
        with self._lock:
            return self._active_locked()

    def latest(self, dataset: str) -> Comparison | None:
        """The comparison kept for ``dataset``, running or finished."""
        with self._lock:
            return next((c for c in self._comparisons.values() if c.dataset == dataset), None)
