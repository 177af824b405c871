"""Scores of a model with one sigmoid output per tag (multi-label): per-tag counts, precision,
recall and F1 at per-tag thresholds, average precision, and the thresholds that maximise F1.

Everything here works on probabilities (``sigmoid(logits)``) and multi-hot targets, both of
shape ``(images, tags)``, as NumPy arrays or CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5
METRIC_NAME = "macro F1"
"""What the "accuracy" of a multi-label run is: the mean over tags of each tag's F1, at 0.5
while training (its thresholds are chosen after), at the chosen thresholds in evaluation."""


def _arrays(probabilities, targets) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(probabilities, dtype=np.float64), np.asarray(targets, dtype=bool)


def tag_counts(probabilities, targets, thresholds: Sequence[float] | float = DEFAULT_THRESHOLD):
    """True positives, false positives and false negatives per tag (three int arrays)."""
    scores, truth = _arrays(probabilities, targets)
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    return (
        (predicted & truth).sum(axis=0),
        (predicted & ~truth).sum(axis=0),
        (~predicted & truth).sum(axis=0),
    )


def f1_from_counts(tp, fp, fn) -> np.ndarray:
    """Each tag's F1 from its counts; 0 where the tag was neither present nor predicted."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def macro_f1(probabilities, targets, thresholds=DEFAULT_THRESHOLD) -> float:
    """The mean of the tags' F1 at ``thresholds`` (one per tag, or one for all)."""
    f1 = f1_from_counts(*tag_counts(probabilities, targets, thresholds))
    return float(f1.mean()) if f1.size else 0.0


def average_precision(scores, truth) -> float:
    """Average precision of one tag: the mean, over its positive images, of the precision among
    the images ranked at or above each (ties ranked together); NaN without a positive."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    if not positives:
        return float("nan")
    ascending, positive_scores = np.sort(scores), np.sort(scores[truth])
    at_or_above = len(scores) - np.searchsorted(ascending, scores[truth], side="left")
    positives_above = positives - np.searchsorted(positive_scores, scores[truth], side="left")
    return float(np.mean(positives_above / at_or_above))


def average_precisions(probabilities, targets) -> np.ndarray:
    """Each tag's average precision (NaN for a tag with no positive image)."""
    scores, truth = _arrays(probabilities, targets)
    return np.array([average_precision(scores[:, t], truth[:, t]) for t in range(truth.shape[1])])


def mean_average_precision(probabilities, targets) -> float:
    """The mean of the tags' average precision, over tags with a positive image (NaN: none)."""
    values = average_precisions(probabilities, targets)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def best_thresholds(probabilities, targets) -> list[float]:
    """Per tag, the threshold that maximises its F1 on these images.

    Candidates are the midpoints between consecutive distinct probabilities (so the threshold
    does not sit on one image's score); among equal F1s the one closest to 0.5 wins, which keeps
    a tag with few images near the neutral default. A tag without a positive image keeps 0.5.
    """
    scores, truth = _arrays(probabilities, targets)
    chosen = []
    for tag in range(truth.shape[1]):
        column, positive = scores[:, tag], truth[:, tag]
        if not positive.any():
            chosen.append(DEFAULT_THRESHOLD)
            continue
        distinct = np.unique(column)
        candidates = np.r_[(distinct[:-1] + distinct[1:]) / 2, DEFAULT_THRESHOLD]
        predicted = column[:, None] >= candidates[None, :]
        tp = (predicted & positive[:, None]).sum(axis=0)
        fp = (predicted & ~positive[:, None]).sum(axis=0)
        fn = (~predicted & positive[:, None]).sum(axis=0)
        f1 = f1_from_counts(tp, fp, fn)
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        pick = best[np.argmin(np.abs(candidates[best] - DEFAULT_THRESHOLD))]
        chosen.append(round(float(candidates[pick]), 6))
    return chosen
