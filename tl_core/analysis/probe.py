"""The advisor's measure of a backbone's features: a stratified subsample of the images, and a
logistic-regression probe cross-validated over stratified folds. The probe checks the stop
signal between folds, so :class:`AdvisorStopped` (the comparison's "stopped") lives here.
"""

from __future__ import annotations

import math
import random
import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tl_core.common import TLStudioError
from tl_core.data import ImageItem

PROBE_MAX_ITERATIONS = 1000


class AdvisorStopped(TLStudioError):
    """The comparison was stopped before it finished."""

    def __init__(self):
        super().__init__(
            "The comparison of backbones was stopped before it finished.",
            "Start it again to rank the backbones; the features of those already measured "
            "are kept.",
        )


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
