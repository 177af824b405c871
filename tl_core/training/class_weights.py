"""Class imbalance: when to weight the loss by class, and with what weights.

A weighted loss rather than a balanced sampler: it leaves every loader as it is (images, cached
features, a frozen prefix's outputs, a distributed sampler) and sees every image once per epoch,
where oversampling repeats the few images of a small class until the model memorises them.

The weights are scikit-learn's "balanced" ones, ``n / (k * n_c)`` for ``n`` training images in
``k`` classes and ``n_c`` in class ``c``: each class then carries the same share of the loss, and
a balanced dataset gets weight 1 everywhere (the plain loss). "auto" weights from
``AUTO_CLASS_WEIGHTING_RATIO`` (2x), where ``bench/imbalance.py`` measured a clear gain on real
images; below it the weights stay close to 1 and so does the loss. Weighting trades a little
recall of the big classes for more of the small ones: balanced accuracy rises, and plain
accuracy on data as imbalanced as the training set may fall a little.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from tl_core.config import AUTO_CLASS_WEIGHTING_RATIO


@dataclass(frozen=True)
class ClassWeighting:
    """What a run does about imbalance.

    Attributes:
        setting: The config's ``class_weighting`` ("auto", "on" or "off").
        ratio: Training images in the largest class over those in the smallest.
        weights: One loss weight per class (in class order), or None for the plain loss. For
            a multi-label run, the positive weight of each tag (``BCEWithLogitsLoss``'s
            ``pos_weight``).
        unit: What is weighted: "class", or "tag" for a multi-label run.
    """

    setting: str
    ratio: float
    weights: tuple[float, ...] | None
    unit: str = "class"

    @property
    def applied(self) -> bool:
        return self.weights is not None

    def tensor(self, device: torch.device) -> torch.Tensor | None:
        """The weights for ``CrossEntropyLoss(weight=...)``, or None for the plain loss."""
        if self.weights is None:
            return None
        return torch.tensor(self.weights, dtype=torch.float32, device=device)

    def describe(self) -> str:
        """Half a sentence for the run's description."""
        unit, units = self.unit, "classes" if self.unit == "class" else "tags"
        if self.applied:
            why = "" if self.setting == "on" else f", since {units} are {self.ratio:.1f}x apart"
            what = "by class" if unit == "class" else "for rare tags (positive weights)"
            return f"loss weighted {what}{why}"
        if self.setting == "auto" and self.ratio > 1:
            return (
                f"{units} {self.ratio:.1f}x apart, below the {AUTO_CLASS_WEIGHTING_RATIO:g}x "
                f"that turns on weighting by {unit}"
            )
        return f"loss not weighted by {unit}"


def balanced_weights(counts: Sequence[int]) -> tuple[float, ...]:
    """``n / (k * n_c)`` per class; a class with no training image gets weight 0 (it never
    appears in a batch, so its weight never counts)."""
    total, classes = sum(counts), len(counts)
    return tuple(total / (classes * n) if n else 0.0 for n in counts)


def class_weighting(
    setting: str, labels: Iterable[str], class_names: Sequence[str]
) -> ClassWeighting:
    """Decides the weighting for training images with ``labels``.

    Args:
        setting: "auto" (weight from ``AUTO_CLASS_WEIGHTING_RATIO``), "on" or "off".
        labels: The class of each training image.
        class_names: Every class, in the model's output order.
    """
    per_class = Counter(labels)
    counts = [per_class.get(name, 0) for name in class_names]
    present = [n for n in counts if n]
    ratio = max(present) / min(present) if present else 1.0
    weighted = setting == "on" or (setting == "auto" and ratio >= AUTO_CLASS_WEIGHTING_RATIO)
    return ClassWeighting(setting, ratio, balanced_weights(counts) if weighted else None)


def tag_weighting(
    setting: str, tag_sets: Iterable[Sequence[str]], tag_names: Sequence[str]
) -> ClassWeighting:
    """Decides the weighting of a multi-label run's loss, as :func:`class_weighting` does for
    classes: each tag's positive weight is ``negatives / positives`` among the training images
    (``BCEWithLogitsLoss``'s ``pos_weight``), so a rare tag's few positives weigh as much as
    its many negatives; "auto" turns it on when the most frequent tag is on
    ``AUTO_CLASS_WEIGHTING_RATIO`` times as many images as the rarest.

    Args:
        setting: "auto", "on" or "off".
        tag_sets: The tags of each training image.
        tag_names: Every tag, in the model's output order.
    """
    tag_sets = [set(tags) for tags in tag_sets]
    counts = [sum(name in tags for tags in tag_sets) for name in tag_names]
    present = [n for n in counts if n]
    ratio = max(present) / min(present) if present else 1.0
    weighted = setting == "on" or (setting == "auto" and ratio >= AUTO_CLASS_WEIGHTING_RATIO)
    weights = tuple((len(tag_sets) - n) / n if n else 0.0 for n in counts)
    return ClassWeighting(setting, ratio, weights if weighted else None, unit="tag")
