"""What the search runs on (its settings), what it tells (its observer), and the recipe it
builds up step by step."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tl_core.auto.budget import Budget
from tl_core.auto.decisions import Decision
from tl_core.auto.plan import SearchPlan
from tl_core.auto.result import AutoResult
from tl_core.common import TrainingObserver
from tl_core.config import TrainConfig

FINAL_RUN, SCRATCH_RUN = "final", "final-scratch"


class SearchObserver(TrainingObserver):
    """Receives the search's events, besides every run's training events. All optional."""

    def on_search_plan(self, plan: SearchPlan, budget: Budget) -> None:
        """The plan is made; ``budget`` tells the time used from now on."""

    def on_step(self, index: int, total: int, step: str) -> None:
        """Step ``index`` (from 1) of ``total`` starts."""

    def on_run(self, label: str, run_dir: Path) -> None:
        """A training run of the step starts in ``run_dir``."""

    def on_run_done(self, label: str, run_dir: Path, status: str) -> None:
        """That run ended."""

    def on_analysis(self, done: int, total: int, message: str = "") -> None:
        """The advisor or lr-find made progress."""

    def on_decision(self, decision: Decision, result: AutoResult) -> None:
        """A step decided; ``result`` is auto.json as it stands now."""


@dataclass(frozen=True)
class SearchSettings:
    """What the search runs on.

    Attributes:
        data: The labelled folder or .zip.
        budget_seconds: The whole search's budget, measuring included.
        base: The recipe's fixed settings (device, batch size, image size, seed, workers);
            the search sets backbone, freeze, lr, augment and epochs. None: the defaults.
        backbones: Candidates; None: every catalog backbone with weights on this computer,
            the base's first.
        feature_cache: Where head-only runs and the advisor keep backbone features.
        model_factory: Builds the advisor's backbones (tests use tiny untrained models).
        clock: Seconds from a monotonic clock.
    """

    data: str
    budget_seconds: float
    base: TrainConfig | None = None
    backbones: tuple[str, ...] | None = None
    feature_cache: str | Path | None = None
    model_factory: Callable | None = None
    clock: Callable[[], float] = time.monotonic


def augment_of(depth: str) -> str:
    """What "auto" augmentation trains with at a depth: none head-only (features are cached)."""
    return "none" if depth == "all" else "light"


@dataclass
class Recipe:
    """The recipe as the search has found it so far; ``epoch_seconds`` is the measured length
    of one of its epochs (for the final run's length)."""

    backbone: str
    freeze: str
    lr: float
    augment: str
    epoch_seconds: float = 0.0  # measured, for the final run's length
