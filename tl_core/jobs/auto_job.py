"""The automatic recipe search as a job: one thread runs every step, the page follows it.

The search (``tl_core.auto``) runs in the job's thread like training does, so the scheduler
runs it only when nothing else heavy does, and Stop and Pause reach its runs through the job's
control. Its live state is the usual training state of the run under way, plus the search's
own in ``result``: the plan with its estimates, the step under way (step i of n), the time
used of the budget, and each decision with its evidence as it is taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_core.auto import AutoResult, Budget, Decision, SearchObserver, SearchPlan, SearchSettings
from tl_core.auto import run_search as search
from tl_core.jobs.job import Job
from tl_core.jobs.snapshot import AUTO, KIND_NAMES, PER_RUN_FIELDS, FinishedRun, JobState
from tl_core.jobs.training_job import _StateObserver


class _AutoObserver(_StateObserver, SearchObserver):
    """Copies the search's events, and its runs' training events, into the job's state."""

    def __init__(self, job: AutoJob):
        super().__init__(job)
        self.budget: Budget | None = None

    def _live(self, **changes: Any) -> None:
        """Replaces the search's part of the state (never mutated: snapshots share it)."""
        job = self.job
        with job._lock:
            live = dict(job._state.result or {})
            live.update(changes)
            if self.budget is not None:
                live["used_seconds"] = round(self.budget.used(), 1)
            job._state.result = live

    def on_search_plan(self, plan: SearchPlan, budget: Budget) -> None:
        self.budget = budget
        steps = [s.step for s in plan.steps if s.runs]
        self._live(plan=plan.to_dict(), plan_lines=plan.lines(), step_total=len(steps))
        self.job._update(status="running", run_total=len(steps))

    def on_step(self, index: int, total: int, step: str) -> None:
        self._live(step=step, step_index=index, step_total=total)
        fresh = JobState()
        with self.job._lock:
            state = self.job._state
            for name in PER_RUN_FIELDS:
                setattr(state, name, getattr(fresh, name))
            state.run_index, state.run_total = index, total
            state.run_label = step

    def on_run(self, label: str, run_dir: Path) -> None:
        fresh = JobState()
        with self.job._lock:
            state = self.job._state
            for name in PER_RUN_FIELDS:
                setattr(state, name, getattr(fresh, name))
            state.run_dir = str(run_dir)
        self._live(run_label=label)

    def on_run_done(self, label: str, run_dir: Path, status: str) -> None:
        with self.job._lock:
            state = self.job._state
            history = tuple(dict(row) for row in state.history)
            state.finished_runs.append(FinishedRun(label, str(run_dir), status, history))

    def on_progress(self, progress) -> None:
        super().on_progress(progress)
        self._live()

    def on_analysis(self, done: int, total: int, message: str = "") -> None:
        self.job._update(step=done, total_steps=total)
        if message:
            self.on_phase(message)
        self._live()

    def on_decision(self, decision: Decision, result: AutoResult) -> None:
        self.found(result)

    def found(self, result: AutoResult, **changes: Any) -> None:
        """The decisions, the best run and what was not tried, as auto.json has them now."""
        file = result.to_dict()
        self._live(steps=file["steps"], best=file["best"], not_tried=file["not_tried"], **changes)


class AutoJob(Job):
    """The automatic search on one dataset within a budget, in a background thread.

    Args:
        settings: What the search runs on, its budget included.
        out_dir: The search's new folder, or a function that claims one when the job starts
            (a job waiting in the queue leaves no folder).
    """

    def __init__(self, settings: SearchSettings, out_dir: str | Path | Callable[[], Path]):
        name = Path(settings.data).name
        super().__init__(AUTO, f"{KIND_NAMES[AUTO]} on {name}", str(settings.data))
        self.settings = settings
        self._claim = out_dir if callable(out_dir) else (lambda: Path(out_dir))
        self._observer = _AutoObserver(self)
        self._update(result={"budget_seconds": settings.budget_seconds, "used_seconds": 0.0})

    def _work(self) -> str:
        folder = self._claim()
        self.group_dir = folder
        self._update(run_dir=str(folder), message="Measuring this computer's speed")
        started = time.monotonic()
        try:
            result = search(self.settings, folder, self._observer, self._control)
        finally:
            self._observer._live(finished=True, seconds=round(time.monotonic() - started, 1))
        self._observer.found(result, status=result.status)
        if result.best is not None:
            self._update(result_run=str(folder / result.best.run))
        return result.status
