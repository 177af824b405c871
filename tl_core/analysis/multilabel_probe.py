"""Suspected tag errors in a multi-label dataset: each tag's out-of-sample probability from a
linear probe per tag, and cleanlab's multi-label confident learning
(``cleanlab.multilabel_classification.filter.find_label_issues``) over them.

As for one class per image (``tl_core.analysis.label_issues``), the probes read the frozen
backbone's features, are trained by k-fold cross-validation so no image is judged by a probe
that saw it, and copies of an image share a fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np


def out_of_sample_tag_probabilities(
    features: np.ndarray, targets: np.ndarray, *, groups: np.ndarray | None = None, **folding
) -> np.ndarray:
    """Each tag's probability for every row, from a probe per tag that never trained on it.

    Args:
        features: One row per image.
        targets: Multi-hot tags, ``(rows, tags)``.
        groups: Rows with the same value always share a fold (copies of an image).
        **folding: ``folds`` (of the cross-validation, fewer when there are fewer groups;
            default 5), ``seed`` (of the folds; default 0) and ``stop`` (called before each
            fold, raises to stop).

    Returns:
        ``(rows, tags)`` probabilities.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GroupKFold

    from tl_core.analysis.probe import linear_probe

    targets = np.asarray(targets, dtype=int)
    groups = np.arange(len(targets)) if groups is None else groups
    folds = max(2, min(folding.get("folds", 5), len(np.unique(groups))))
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=folding.get("seed", 0))
    stop: Callable[[], None] | None = folding.get("stop")
    probabilities = np.zeros(targets.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splitter.split(features, targets, groups):
            if stop is not None:
                stop()
            for tag in range(targets.shape[1]):
                seen = targets[train, tag]
                if seen.min() == seen.max():  # every training row has (or lacks) the tag
                    probabilities[test, tag] = float(seen[0])
                    continue
                probe = linear_probe().fit(features[train], seen)
                probabilities[test, tag] = probe.predict_proba(features[test])[:, 1]
    return probabilities


def rank_tag_issues(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of images whose tags look wrong, most suspicious first (cleanlab's multi-label
    confident learning, ranked by self-confidence)."""
    from cleanlab.multilabel_classification.filter import find_label_issues

    labels = [list(np.flatnonzero(row)) for row in np.asarray(targets, dtype=bool)]
    return find_label_issues(
        labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
