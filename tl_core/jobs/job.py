"""A job: one piece of heavy work in a background thread, with one state, snapshot and stop signal.

Every kind of heavy work (training and its groups of runs, backbone comparisons, label-error
searches, the learning-rate finder) is a ``Job``: its thread never touches the user interface,
it updates a ``JobState`` under a lock, and the app and the command line read immutable
``JobSnapshot`` copies whenever they redraw. Pause, resume and stop all go through one
``JobControl``, which the work checks between batches. What a kind of job does is its
``_work`` method; ``tl_core.jobs.scheduler`` decides when it starts.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable

from tl_core.common import JobControl, explain_failure
from tl_core.jobs.snapshot import (
    ACTIVE_STATUSES,
    ENDED_STATUSES,
    PAUSING_MESSAGE,
    QUEUED,
    STOPPING_MESSAGE,
    JobSnapshot,
    JobState,
)

# Lists copied into every snapshot, so a snapshot never changes under its reader.
_COPIED = ("batch_losses", "history", "finished_runs")


class Job:
    """One piece of heavy work in a background thread; subclasses say what in ``_work``.

    ``pause`` and ``stop`` take effect between batches; the status says so at once
    ("pausing", "stopping") and changes again when the work has really paused or ended.

    Args:
        kind: What the job does (one of ``tl_core.jobs.snapshot.KIND_NAMES``).
        title: What it is, in a few words, for the queue and the sidebar.
        dataset: The dataset folder it reads (kept from deletion while it waits or runs).
        backbone: The backbone it trains or measures ("" when several).
        total_epochs: Epochs each run trains (0 for an analysis).
    """

    def __init__(
        self, kind: str, title: str, dataset: str, backbone: str = "", total_epochs: int = 0
    ):
        self.job_id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.title = title
        self.dataset = dataset
        self.backbone = backbone
        self.total_epochs = total_epochs
        self.group_dir = None  # a group job's folder, once it has one
        self._control = JobControl()
        self._lock = threading.Lock()
        self._state = JobState()
        self._ended = threading.Event()
        # Told when the job has ended, before ``wait`` returns (the scheduler starts the next).
        self.when_ended: Callable[[Job], None] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"tl-studio-job-{self.job_id}", daemon=True
        )

    def _work(self) -> str:
        """Does the job; returns "completed" or "stopped" (raising means it failed)."""
        raise NotImplementedError

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        """(what went wrong, what to try) for a failure of this kind of job."""
        return explain_failure(exc)

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _run(self) -> None:
        try:
            status = self._work()
            message = "Finished" if status == "completed" else "Stopped by the user"
            self._update(status=status, message=message)
        except BaseException as exc:  # the thread must always end in a readable state
            error, hint = self._explain(exc)
            self._update(status="failed", message="Failed", error=error, error_hint=hint)
        finally:
            self._update(finished_at=time.time())
            self._end()

    def _end(self) -> None:
        try:
            if self.when_ended is not None:
                self.when_ended(self)
        finally:
            self._ended.set()

    @property
    def is_active(self) -> bool:
        """Cheaper than ``snapshot().is_active``: no copy of the loss history."""
        with self._lock:
            return self._state.status in ACTIVE_STATUSES

    @property
    def is_queued(self) -> bool:
        with self._lock:
            return self._state.status == QUEUED

    @property
    def has_ended(self) -> bool:
        with self._lock:
            return self._state.status in ENDED_STATUSES

    def queue(self, place: int, message: str) -> None:
        """Marks the job as waiting, ``place`` in line (the running job is first)."""
        with self._lock:
            state = self._state
            if state.status in ("starting", QUEUED):
                state.status, state.place_in_line = QUEUED, place
                state.message = state.activity = message

    def start(self) -> None:
        with self._lock:
            state = self._state
            if state.status == QUEUED:
                state.status, state.place_in_line = "starting", 0
                state.message = state.activity = "Starting"
                state.started_at = time.time()
        self._thread.start()

    def cancel(self, message: str = "Cancelled before it started") -> bool:
        """Ends a queued job without running it; False when it is not queued."""
        with self._lock:
            state = self._state
            if state.status != QUEUED:
                return False
            state.status, state.message, state.place_in_line = "cancelled", message, 0
            state.finished_at = time.time()
        self._control.stop()
        self._ended.set()
        return True

    def pause(self) -> None:
        """Pauses before the next batch; the status is "pausing" until the work holds."""
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
        """Stops after the current batch. A queued job leaves its queue through the
        scheduler's ``cancel``; stopped here, it would stop at its first batch."""
        with self._lock:
            if self._state.status in ACTIVE_STATUSES:
                self._state.status = "stopping"
                self._state.message = STOPPING_MESSAGE
        self._control.stop()

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        """Waits until the job has ended (or ``timeout`` seconds), then returns its state."""
        self._ended.wait(timeout)
        return self.snapshot()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            state = self._state
            return JobSnapshot(
                job_id=self.job_id,
                kind=self.kind,
                title=self.title,
                dataset=self.dataset,
                group_dir=str(self.group_dir) if self.group_dir is not None else None,
                backbone=self.backbone,
                total_epochs=self.total_epochs,
                batch_losses=tuple(state.batch_losses),
                history=tuple(dict(row) for row in state.history),
                finished_runs=tuple(state.finished_runs),
                **{
                    f.name: getattr(state, f.name)
                    for f in dataclasses.fields(state)
                    if f.name not in _COPIED
                },
            )
