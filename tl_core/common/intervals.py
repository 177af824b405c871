"""How sure an accuracy is: the Wilson score interval, and the words that go beside a rate.

Accuracy measured on a handful of validation images is a rough estimate: 9 of 9 correct is
consistent with a true accuracy of 70 %. Every accuracy the app and the CLI print carries the
number of images it was measured on and this interval.
"""

from __future__ import annotations

import math

# z for a two-sided 95 % interval.
Z_95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927).

    Unlike the normal approximation it stays inside [0, 1] and does not collapse to a point
    at 0 % or 100 %, which is exactly where small validation sets land.

    Args:
        correct: Successes, between 0 and ``total``.
        total: Trials; 0 gives the uninformative (0, 1).
        z: The normal quantile of the confidence level (1.96 for 95 %).

    Returns:
        (low, high), both in [0, 1].
    """
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be between 0 and {total}, got {correct}")
    p = correct / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    # Clamp rounding noise; the exact ends are 0 and 1 when p is 0 or 1.
    return max(0.0, centre - half), min(1.0, centre + half)


def format_score(value: float, total: int, metric: str = "accuracy") -> str:
    """A run's validation score in words: its accuracy with its interval
    (:func:`format_accuracy`); any other metric (a multi-label run's macro F1) by name with its
    image count, since a share of images correct is what the Wilson interval is for:
    ``"83.3 % macro F1 at threshold 0.5 (18 images)"``."""
    if metric == "accuracy":
        return format_accuracy(value, total)
    images = "image" if total == 1 else "images"
    return f"{value:.1%} {metric} ({total} {images})"


def format_accuracy(accuracy: float, total: int) -> str:
    """``"94.4 % (95 % CI 74–99 %, 18 images)"``: the rate, its interval and its sample size.

    Args:
        accuracy: A fraction of ``total`` (correct / total).
        total: How many images it was measured on.
    """
    correct = round(accuracy * total)
    low, high = wilson_interval(correct, total)
    images = "image" if total == 1 else "images"
    return f"{accuracy:.1%} (95 % CI {low:.0%}–{high:.0%}, {total} {images})"
