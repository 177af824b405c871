"""Analyses as jobs: the backbone comparison, the label-error search and the learning-rate finder.

Each is one function of the data that reports ``progress(done, total[, message])`` and checks
``stop`` between batches; here it runs in a job's thread like training does, so the scheduler
lets it run only when nothing else heavy does, and the page redraws from its snapshot. Its
answer is the snapshot's ``result``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_core.analysis import AdvisorStopped, LabelCheckStopped, advise, find_label_issues
from tl_core.common import TLStudioError, explain_failure
from tl_core.config import TrainConfig
from tl_core.data import DatasetReport
from tl_core.jobs.job import Job
from tl_core.jobs.snapshot import COMPARISON, KIND_NAMES, LABEL_SEARCH, LR_FIND
from tl_core.training import LRFinderStopped, find_learning_rate

Analysis = Callable[..., Any]
# What a failure says it was, in place of the training that explain_failure speaks of.
_FAILED = {
    COMPARISON: "The comparison failed",
    LABEL_SEARCH: "The label check failed",
    LR_FIND: "The learning-rate finder failed",
}


class AnalysisJob(Job):
    """One analysis of a dataset in a background thread.

    Args:
        kind: COMPARISON, LABEL_SEARCH or LR_FIND.
        data: What the analysis reads first (a dataset's scan or folder, or a config).
        dataset: The dataset folder, by which pages find the newest analysis of it.
        function: The analysis: ``function(data, progress=..., stop=..., **options)``.
        stopped_error: What ``function`` raises when ``stop`` ends it.
        backbone: The backbone it measures ("" when it compares several).
        **options: More arguments for ``function``.
    """

    def __init__(
        self,
        kind: str,
        data: Any,
        dataset: str,
        function: Analysis,
        stopped_error: type[Exception],
        backbone: str = "",
        **options,
    ):
        super().__init__(kind, f"{KIND_NAMES[kind]} on {Path(dataset).name}", dataset, backbone)
        self._data = data
        # The settings a learning-rate finder sweeps: a reloaded page finds its job by them.
        self.config = data if isinstance(data, TrainConfig) else None
        self._function = function
        self._stopped_error = stopped_error
        self._options = options

    def _progress(self, done: int, total: int, message: str | None = None) -> None:
        message = message or f"{done}/{total} steps"
        with self._lock:
            state = self._state
            state.step, state.total_steps, state.activity = done, total, message
            if state.status == "starting":
                state.status = "running"
            if state.status != "stopping":  # keeps saying it stops until it has
                state.message = message

    def pause(self) -> None:
        """Analyses do not pause: they run to their end, or stop."""

    def _work(self) -> str:
        self._update(status="running", message="Starting")
        try:
            # The job's control is the stop signal: the analyses ask it ``is_set()``.
            result = self._function(
                self._data, progress=self._progress, stop=self._control, **self._options
            )
        except self._stopped_error:
            return "stopped"
        self._update(result=result)
        return "completed"

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        if isinstance(exc, TLStudioError):
            return exc.message, exc.hint
        message, hint = explain_failure(exc)
        return message.replace("Training failed", _FAILED[self.kind], 1), hint


def comparison_job(
    data: DatasetReport | str | Path,
    dataset: str,
    cache_dir: str | Path | None,
    function: Analysis = advise,
    **options,
) -> AnalysisJob:
    """Ranks the backbones on ``data`` (``tl_core.analysis.advise``; tests may pass another
    ``function`` that reports and stops like it)."""
    return AnalysisJob(
        COMPARISON, data, dataset, function, AdvisorStopped, cache_dir=cache_dir, **options
    )


def label_search_job(
    data: DatasetReport | str | Path, dataset: str, cache_dir: str | Path | None
) -> AnalysisJob:
    """Looks for images whose label the others argue against (``find_label_issues``)."""
    return AnalysisJob(
        LABEL_SEARCH, data, dataset, find_label_issues, LabelCheckStopped, cache_dir=cache_dir
    )


def lr_find_job(config: TrainConfig) -> AnalysisJob:
    """Sweeps learning rates for ``config``'s recipe (``find_learning_rate``)."""
    return AnalysisJob(
        LR_FIND, config, str(config.data), find_learning_rate, LRFinderStopped, config.backbone
    )
