"""Suspected label errors: images whose given label the data itself argues against.

Every image gets an out-of-sample prediction: the frozen backbone's features (cached, see
``tl_core.features.image_pass``) feed the advisor's linear probe, trained by k-fold
cross-validation so that no image is judged by a probe that saw it. Copies of an image share a
fold (a copy in the training folds would vouch for its twin's label). Confident learning
(Northcutt et al., 2021; ``cleanlab.filter.find_label_issues``) then flags the images whose
given label is less likely than the per-class thresholds it estimates from the data, ranked by
the probability the probe gives their label, lowest first. cleanlab is used as the issue
suggests: it is the reference implementation, and the ranking options it offers were measured
in ``bench/label_issues.py``. A multi-label dataset's tags are checked with a probe per tag and
cleanlab's multi-label search (``tl_core.analysis.multilabel_probe``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tl_core.analysis.multilabel_probe import out_of_sample_tag_probabilities, rank_tag_issues
from tl_core.common import TLStudioError, release_memory, resolve_device
from tl_core.config import DEFAULT_BACKBONE
from tl_core.data import DatasetReport, item_targets, join_tags
from tl_core.features import (
    FeatureStore,
    Progress,
    Tracker,
    backbone_features,
    default_cache_dir,
    file_digest,
)
from tl_core.models import Preprocessing

DEFAULT_FOLDS = 5

ModelFactory = Callable[[str, int], tuple[torch.nn.Module, str]]


class LabelCheckStopped(TLStudioError):
    """The search for label errors was stopped before it finished."""

    def __init__(self):
        super().__init__(
            "The search for label errors was stopped before it finished.",
            "Start it again; the features already computed are kept.",
        )


@dataclass(frozen=True)
class LabelIssue:
    """An image whose label looks wrong.

    Attributes:
        path: The image file.
        given: The label it carries (its class folder).
        suggested: The class the probe believes it shows.
        confidence: The probe's probability for ``suggested`` (out of sample).
        given_probability: The probe's probability for ``given``: the lower, the more
            suspicious.
    """

    path: Path
    given: str
    suggested: str
    confidence: float
    given_probability: float

    def to_dict(self, report: DatasetReport | None = None) -> dict[str, Any]:
        """``{"image", "given", "suggested", "confidence", "given_probability"}``; the image
        relative to the dataset root when ``report`` is given."""
        return {
            "image": report.relative(self.path) if report else str(self.path),
            "given": self.given,
            "suggested": self.suggested,
            "confidence": round(self.confidence, 4),
            "given_probability": round(self.given_probability, 4),
        }


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    groups: np.ndarray | None = None,
    stop: Callable[[], None] | None = None,
) -> np.ndarray:
    """Class probabilities of every row from a linear probe that never trained on it.

    Args:
        features: One row per image.
        labels: Class index per row.
        num_classes: Columns of the result.
        folds: Folds of the stratified cross-validation (fewer when a class is smaller).
        seed: Seeds the folds.
        groups: Rows with the same value always share a fold (copies of an image).
        stop: Called before each fold; raises to stop.

    Returns:
        ``(rows, num_classes)`` probabilities.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedGroupKFold

    from tl_core.analysis.probe import linear_probe

    groups = np.arange(len(labels)) if groups is None else groups
    folds = max(2, min(folds, len(np.unique(groups))))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities = np.zeros((len(labels), num_classes))
    with warnings.catch_warnings():
        # Separable features keep the loss falling; the predictions have long settled by then.
        # A class smaller than the folds leaves some folds without it: sklearn says so.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for train, test in splitter.split(features, labels, groups):
            if stop is not None:
                stop()
            present = np.unique(labels[train])
            if len(present) == 1:  # a class that is one group of copies left only the other
                probabilities[test, present[0]] = 1.0
                continue
            probe = linear_probe().fit(features[train], labels[train])
            # A class missing from these training folds gets probability 0 in this fold.
            probabilities[np.ix_(test, probe.classes_)] = probe.predict_proba(features[test])
    return probabilities


def rank_label_issues(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of suspected label errors, most suspicious first (confident learning)."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    return cleanlab_find(
        labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )


def find_label_issues(
    report: DatasetReport,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    *,
    backbone: str = DEFAULT_BACKBONE,
    folds: int = DEFAULT_FOLDS,
    device: str = "auto",
    seed: int = 0,
    use_cache: bool = True,
    image_size: int | None = None,
    model_factory: ModelFactory | None = None,
) -> list[LabelIssue]:
    """Images whose label the other images argue against, most suspicious first.

    Args:
        report: The scanned dataset (see ``tl_core.data.scanning.scan_dataset``).
        cache_dir: Where features are kept (default: ``default_cache_dir()``); the advisor's
            features of the same backbone are reused.
        progress: Called as ``progress(done, total, message)`` after every feature batch.
        stop: Checked before every batch and fold; once set, :class:`LabelCheckStopped`.
        backbone: The frozen backbone whose features the probe reads.
        folds: Folds of the cross-validation.
        device: "auto", "cpu" or "cuda".
        seed: Seeds the folds.
        use_cache: False neither reads nor writes cached features.
        image_size: Input side for backbones that accept any size; None uses the backbone's.
        model_factory: Builds the backbone; None loads its pretrained weights.

    Raises:
        DatasetError: The dataset cannot be trained on (fewer than 2 classes, ...).
        WeightsError: The backbone's weights are not available.
        LabelCheckStopped: ``stop`` was set.
    """
    from tl_core.analysis.advisor import pretrained_factory

    report.require_trainable()
    items = list(report.items)
    class_names = list(report.class_names)
    tracker = Tracker(len(items), progress, stop, LabelCheckStopped)
    torch_device = resolve_device(device)
    tracker.report(f"{backbone}: loading the backbone")
    model, weights_source = (model_factory or pretrained_factory)(backbone, len(class_names))
    fixed = model.pretrained_cfg.get("fixed_input_size")
    preprocessing = Preprocessing.for_model(model, None if fixed else image_size)
    digests = [item.digest or file_digest(item.path) for item in items]
    try:
        computed = backbone_features(
            backbone,
            model,
            weights_source,
            preprocessing,
            items,
            digests,
            torch_device,
            FeatureStore(cache_dir or default_cache_dir()) if use_cache else None,
            tracker,
        )
    finally:
        del model
        release_memory(torch_device)
    features = computed.matrix(digests).double().numpy()
    group_of = {p: n for n, g in enumerate(report.near_duplicates) for p in g.paths}
    groups = np.array([group_of.get(item.path, -1 - i) for i, item in enumerate(items)])
    tracker.report("checking the labels")
    if report.multi_label:
        return _tag_issues(report, features, folds, seed, groups, tracker.check_stop)
    labels = np.array([class_names.index(item.label) for item in items])
    probabilities = out_of_sample_probabilities(
        features, labels, len(class_names), folds, seed, groups, tracker.check_stop
    )
    issues = []
    for index in rank_label_issues(labels, probabilities):
        suggested = int(np.argmax(probabilities[index]))
        issues.append(
            LabelIssue(
                path=items[index].path,
                given=items[index].label,
                suggested=class_names[suggested],
                confidence=float(probabilities[index, suggested]),
                given_probability=float(probabilities[index, labels[index]]),
            )
        )
    return issues


def _tag_issues(
    report: DatasetReport,
    features: np.ndarray,
    folds: int,
    seed: int,
    groups: np.ndarray,
    stop: Callable[[], None],
) -> list[LabelIssue]:
    """A multi-label dataset's suspected tag errors (see ``tl_core.analysis.multilabel_probe``):
    ``given`` and ``suggested`` are sets of tags joined by ";" (the suggestion: the tags the
    probes give at least even odds), ``confidence`` the probes' mean certainty about the
    suggestion, ``given_probability`` the probability of the given set (each tag present or
    absent as given)."""
    tags = list(report.class_names)
    targets = item_targets(report.items, tags).numpy().astype(bool)
    probabilities = out_of_sample_tag_probabilities(
        features, targets, groups=groups, folds=folds, seed=seed, stop=stop
    )
    issues = []
    for index in rank_tag_issues(targets, probabilities):
        row, given = probabilities[index], targets[index]
        suggested = row >= 0.5
        issues.append(
            LabelIssue(
                path=report.items[index].path,
                given=report.items[index].label,
                suggested=join_tags([t for t, on in zip(tags, suggested, strict=True) if on]),
                confidence=float(np.where(suggested, row, 1 - row).mean()),
                given_probability=float(np.prod(np.where(given, row, 1 - row))),
            )
        )
    return issues
