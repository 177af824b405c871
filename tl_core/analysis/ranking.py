"""The advisor's results and the advice drawn from them: each candidate's scores, the ranking
(probe mean first, LogME breaking ties), the recommendation and the warnings, in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from tl_core.data import SkippedFile


def percent(value: float) -> str:
    return f"{round(100 * value)} %"


@dataclass(frozen=True)
class CandidateScore:
    """How one backbone did.

    Attributes:
        backbone: timm model name.
        fold_accuracies: Linear-probe accuracy on each held-out fold.
        logme: LogME of the features (unit-free; higher is better).
        images_per_second: Speed of the feature pass on this computer (when the features came
            from the cache, the speed measured when they were computed).
        params_millions: Parameters in millions (the catalog's figure, with the ImageNet head;
            counted from the model for other backbones).
        input_size: Side of the images the backbone saw, in pixels.
        imagenet_top1: ImageNet-1k top-1 accuracy as a fraction, or None when unknown.
        weights_source: Where the weights came from.
        about_the_same: The fold range overlaps the leader's (True for the leader itself).
        cached_images: How many of the feature vectors came from the cache.
        feature_seconds: Time spent running the backbone (0 when every vector was cached).
        scoring_seconds: Time spent on the probe and LogME.
    """

    backbone: str
    fold_accuracies: tuple[float, ...]
    logme: float
    images_per_second: float | None
    params_millions: float
    input_size: int
    imagenet_top1: float | None
    weights_source: str
    about_the_same: bool = False
    cached_images: int = 0
    feature_seconds: float = 0.0
    scoring_seconds: float = 0.0

    @property
    def probe_accuracy(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def probe_low(self) -> float:
        return min(self.fold_accuracies)

    @property
    def probe_high(self) -> float:
        return max(self.fold_accuracies)

    @property
    def band_text(self) -> str:
        """``"91 % (86–95 %)"``: the mean and the range over folds (rounded to whole points)."""
        low, high = round(100 * self.probe_low), round(100 * self.probe_high)
        if low == high:
            return f"{percent(self.probe_accuracy)} (in every fold)"
        return f"{percent(self.probe_accuracy)} ({low}–{high} %)"

    def overlaps(self, low: float, high: float) -> bool:
        return self.probe_high >= low and self.probe_low <= high

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "probe_accuracy": round(self.probe_accuracy, 4),
            "probe_low": round(self.probe_low, 4),
            "probe_high": round(self.probe_high, 4),
            "logme": round(self.logme, 4),
            "images_per_second": _rounded(self.images_per_second, 1),
            "params_millions": round(self.params_millions, 2),
            "input_size": self.input_size,
            "imagenet_top1": _rounded(self.imagenet_top1, 4),
            "about_the_same": self.about_the_same,
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class SkippedCandidate:
    """A candidate that could not be scored, and why (in words)."""

    backbone: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"backbone": self.backbone, "reason": self.reason}


@dataclass(frozen=True)
class AdvisorResult:
    """The ranked candidates and the advice drawn from them.

    Attributes:
        candidates: Scored candidates, best first (probe mean, then LogME).
        skipped: Candidates without usable weights.
        skipped_files: Files of the dataset that cannot be used, each with the reason (its
            path relative to the dataset's root, as ``tl-studio check`` names it).
        recommended: Name of the recommended backbone.
        reason: Why, in one sentence.
        num_images: Images in the subsample the scores come from.
        num_classes: Classes in the data.
        majority_rate: Share of the largest class in the subsample: what always guessing it
            scores.
        folds: Folds of the cross-validation.
        warnings: Plain sentences about what may make the estimate misleading.
        seconds: Wall time of the whole comparison.
    """

    candidates: tuple[CandidateScore, ...]
    skipped: tuple[SkippedCandidate, ...]
    recommended: str
    reason: str
    num_images: int
    num_classes: int
    majority_rate: float
    folds: int
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    skipped_files: tuple[SkippedFile, ...] = ()

    @property
    def caveat(self) -> str:
        return (
            f"An estimate from {self.num_images} of your images, not a guarantee: "
            "fine-tuning can change the order of close candidates."
        )

    def candidate(self, name: str) -> CandidateScore:
        return next(c for c in self.candidates if c.backbone == name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer: recommendation, candidates best first, skipped ones, the files
        that cannot be used (as ``tl-studio check --json`` lists them), caveat."""
        return {
            "recommended": self.recommended,
            "reason": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
            "skipped": [s.to_dict() for s in self.skipped],
            "skipped_files": [
                {"path": s.path.as_posix(), "reason": s.reason} for s in self.skipped_files
            ],
            "caveat": self.caveat,
            "warnings": list(self.warnings),
        }

    def frame(self) -> pd.DataFrame:
        """One row per candidate, best first, for a table on a page."""
        import pandas as pd

        rows = [
            {
                "rank": rank,
                "backbone": c.backbone,
                "expected accuracy, head only": c.band_text,
                "accuracy": c.probe_accuracy,
                "low": c.probe_low,
                "high": c.probe_high,
                "LogME": c.logme,
                "images/s": c.images_per_second,
                "params (M)": c.params_millions,
                "input size": c.input_size,
                "ImageNet top-1": c.imagenet_top1,
                "about the same": c.about_the_same,
                "recommended": c.backbone == self.recommended,
            }
            for rank, c in enumerate(self.candidates, start=1)
        ]
        return pd.DataFrame(rows)


def rank_candidates(candidates: Sequence[CandidateScore]) -> list[CandidateScore]:
    """Best first by probe mean, LogME breaking ties; marks those about the same as the leader.

    A candidate is about the same as the leader when its fold range overlaps the leader's:
    with that many images the data cannot tell them apart.
    """
    ordered = sorted(candidates, key=lambda c: (-c.probe_accuracy, -c.logme, c.backbone))
    if not ordered:
        return []
    leader = ordered[0]
    return [
        replace(c, about_the_same=c.overlaps(leader.probe_low, leader.probe_high)) for c in ordered
    ]


def _speed(candidate: CandidateScore) -> float:
    return candidate.images_per_second or 0.0


def recommend(ranked: Sequence[CandidateScore]) -> tuple[str, str]:
    """The recommended backbone and why: the fastest of those about the same as the leader."""
    leader = ranked[0]
    if len(ranked) == 1:
        return leader.backbone, (
            f"{leader.backbone}: the only candidate that could be measured; expected head-only "
            f"accuracy {leader.band_text}."
        )
    tied = [c for c in ranked if c.about_the_same]
    # max() keeps the first of equals: the better-ranked one when speeds tie.
    pick = max(tied, key=_speed)
    if len(tied) == 1:
        return pick.backbone, (
            f"{pick.backbone}: highest expected head-only accuracy, {leader.band_text}; no "
            "other candidate's range reaches it."
        )
    if pick is leader:
        return pick.backbone, (
            f"{pick.backbone}: highest expected head-only accuracy, {leader.band_text}, and "
            "the fastest of those about the same."
        )
    ratio = _speed(pick) / max(_speed(leader), 1e-9)
    return pick.backbone, (
        f"{pick.backbone}: expected head-only accuracy {pick.band_text}, about the same as the "
        f"highest ({leader.backbone}, {leader.band_text}), and {ratio:.1f} times as fast on "
        "this computer."
    )


def chance_warnings(ranked: Sequence[CandidateScore], majority_rate: float) -> list[str]:
    """Sentences for candidates whose fold range reaches down to always guessing one class."""
    messages = []
    guess = (
        f"always guessing the largest class scores {percent(majority_rate)}. Its features "
        "barely tell your classes apart"
    )
    for index, c in enumerate(ranked):
        if c.probe_low > majority_rate:
            continue
        if index == 0:
            messages.append(
                f"Even the best candidate, {c.backbone}, scores {c.band_text} with a simple "
                f"classifier on its features, while {guess}: fine-tune more layers, check the "
                "labels, or add images."
            )
        else:
            messages.append(
                f"{c.backbone} scores {c.band_text} with a simple classifier on its features, "
                f"while {guess}."
            )
    return messages
