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

The subsample and the probe are in ``tl_core.analysis.probe``, the ranking and the advice in
words in ``tl_core.analysis.ranking``; this module runs the comparison.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tl_core.analysis.logme import logme_score
from tl_core.analysis.multilabel_support import ADVISOR, require_single_label
from tl_core.analysis.probe import AdvisorStopped, probe_fold_accuracies, stratified_subsample
from tl_core.analysis.ranking import (
    AdvisorResult,
    CandidateScore,
    SkippedCandidate,
    chance_warnings,
    rank_candidates,
    recommend,
)
from tl_core.common import (
    DatasetError,
    TLStudioError,
    WeightsError,
    plural,
    release_memory,
    resolve_device,
)
from tl_core.config import ADVISOR_FOLDS, ADVISOR_MAX_IMAGES
from tl_core.data import DatasetReport, ImageItem, SkippedFile, scanned_dataset
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

ModelFactory = Callable[[str, int], tuple[torch.nn.Module, str]]
"""Builds a backbone for ``(name, num_classes)``; returns the model and its weights source."""


def pretrained_factory(name: str, num_classes: int) -> tuple[torch.nn.Module, str]:
    """The default model factory: pretrained weights from the first source that has them."""
    return create_model(name, num_classes, pretrained=True)


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
        require_single_label(ADVISOR, data)
        data.require_trainable()
        # Named relative to the dataset: a .zip's folder is gone once the block ends.
        skipped_files = tuple(
            SkippedFile(Path(data.relative(s.path)), s.reason) for s in data.skipped
        )
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
        skipped_files=skipped_files,
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
