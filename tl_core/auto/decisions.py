"""The search's decisions: each one taken from measured evidence, and written in words beside it.

Pure functions of what the steps measured (the advisor's fold ranges, the sweep's validation
accuracies, lr-find's curve, the augmentation runs): no training here, so each rule is tested
on numbers where the right answer is known. Two accuracies whose 95 % intervals overlap are
said first to be impossible to tell apart (``tl_core.common.intervals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tl_core.analysis import CandidateScore, recommend
from tl_core.common import format_accuracy, wilson_interval

# A learning rate lr-find suggests outside this range is read as a curve without a valley.
SANE_LR = (1e-5, 0.3)


@dataclass(frozen=True)
class Decision:
    """One step's decision, in words, beside its evidence.

    Attributes:
        step: The step that took it (``tl_core.auto.plan``'s names).
        decision: What was decided, in one sentence.
        evidence: The measured numbers it rests on, one line per item.
        runs: The run folders (names inside the search folder) it measured.
    """

    step: str
    decision: str
    evidence: tuple[str, ...] = ()
    runs: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {**asdict(self), "evidence": list(self.evidence), "runs": list(self.runs)}


@dataclass(frozen=True)
class Measured:
    """A short run's outcome: its best validation accuracy and how many images measured it.

    Attributes:
        label: What set the run apart ("freeze 2", "augmentation light").
        value: The setting it tried ("2", "light").
        accuracy: Best validation accuracy, 0..1 (None when it trained no epoch).
        val_images: Validation images.
        run: The run folder's name.
        seconds: Time it took.
    """

    label: str
    value: str
    accuracy: float | None
    val_images: int
    run: str = ""
    seconds: float = 0.0

    @property
    def interval(self) -> tuple[float, float]:
        if self.accuracy is None:
            return 0.0, 0.0
        return wilson_interval(round(self.accuracy * self.val_images), self.val_images)

    @property
    def short(self) -> str:
        """The accuracy with its interval and images, or that no epoch finished."""
        if self.accuracy is None:
            return "no epoch finished"
        return format_accuracy(self.accuracy, self.val_images)

    @property
    def text(self) -> str:
        return f"{self.label}: {self.short}"


def _overlap(a: Measured, b: Measured) -> bool:
    (a_low, a_high), (b_low, b_high) = a.interval, b.interval
    return a_low <= b_high and b_low <= a_high


def percent(value: float) -> str:
    return f"{round(100 * value)} %"


def short_interval(item: Measured) -> str:
    """``"92 % (86–96 %)"``."""
    low, high = item.interval
    return f"{percent(item.accuracy or 0)} ({round(100 * low)}–{round(100 * high)} %)"


# ---- backbones ---------------------------------------------------------------------------------


def choose_backbones(ranked: Sequence[CandidateScore]) -> tuple[list[str], Decision]:
    """The backbones within chance of the best (fold ranges overlapping the leader's),
    fastest first, and the decision in the advisor's words.

    Args:
        ranked: The advisor's candidates, best first, ``about_the_same`` marked.
    """
    kept = sorted(
        (c for c in ranked if c.about_the_same),
        key=lambda c: -(c.images_per_second or 0.0),
    )
    _, reason = recommend(ranked)
    dropped = [c.backbone for c in ranked if not c.about_the_same]
    decision = reason
    if dropped:
        decision += f" Left out (below the best beyond chance): {', '.join(dropped)}."
    evidence = tuple(
        f"{c.backbone}: head-only accuracy {c.band_text} over folds, "
        f"{(c.images_per_second or 0):.0f} images/s"
        for c in ranked
    )
    return [c.backbone for c in kept], Decision("backbones", decision, evidence)


# ---- freeze depth ------------------------------------------------------------------------------


def best_of(results: Sequence[Measured]) -> Measured | None:
    """The highest accuracy; among equals, the one listed last (the sweep lists more frozen
    depths later: cheaper to train, and less to overfit)."""
    scored = [r for r in results if r.accuracy is not None]
    if not scored:
        return None
    return max(reversed(scored), key=lambda r: r.accuracy)


def _ties(best: Measured, results: Sequence[Measured]) -> list[Measured]:
    return [r for r in results if r is not best and r.accuracy is not None and _overlap(r, best)]


def choose_freeze(
    results: Sequence[Measured], backbone: str, best: Measured | None = None
) -> tuple[Measured | None, Decision]:
    """The freeze depth whose short run scored best, and the decision.

    Args:
        results: One per depth tried, fewest frozen groups first (backbone by backbone).
        backbone: The backbone of the best run.
        best: The best run when the caller chose it among several backbones' (None:
            :func:`best_of` ``results``).
    """
    runs = tuple(r.run for r in results if r.run)
    evidence = tuple(r.text for r in results)
    best = best or best_of(results)
    if best is None:
        return None, Decision(
            "freeze", "No depth finished an epoch: kept head only.", evidence, runs
        )
    values = [r.value for r in results]
    # One backbone: "0/2/4/all"; several: each depth named with its backbone.
    tried = (
        "/".join(values) if len(set(values)) == len(values) else ", ".join(r.label for r in results)
    )
    best_words = f"best of {tried}, {short_interval(best)}"
    tied = _ties(best, results)
    if tied:
        # Overlapping intervals are said first: the kept depth is a choice among equals.
        decision = (
            f"{backbone}: freeze {best.value} cannot be told apart from "
            f"{', '.join(r.label for r in tied)} on {best.val_images} validation images; "
            f"freeze {best.value} is kept, the {best_words}"
        )
    else:
        decision = f"{backbone}, freeze {best.value}: {best_words}"
    return best, Decision("freeze", decision + ".", evidence, runs)


# ---- learning rate -----------------------------------------------------------------------------


def choose_lr(
    suggestion: float | None, default: float, diverged: bool = False, points: int = 0
) -> tuple[float, Decision]:
    """lr-find's valley when it found one in a sensible range, else the default.

    Args:
        suggestion: lr-find's suggested rate for the head (None: no valley).
        default: The rate to keep otherwise.
        diverged: Whether the sweep ended because the loss blew up.
        points: How many rates the sweep measured.
    """
    evidence = [f"lr-find measured the loss at {points} rates"]
    if diverged:
        evidence.append("the loss blew up at the highest rates (expected: the sweep goes past)")
    if suggestion is None:
        return default, Decision(
            "lr",
            f"Learning rate {default:.0e} kept (the default): lr-find's curve was too short "
            "to show a valley.",
            tuple(evidence),
        )
    evidence.append(f"valley at {suggestion:.1e}")
    low, high = SANE_LR
    if not low <= suggestion <= high:
        return default, Decision(
            "lr",
            f"Learning rate {default:.0e} kept (the default): lr-find's valley at "
            f"{suggestion:.0e} is outside {low:.0e}–{high:.0e}, where its curve is not "
            "trustworthy.",
            tuple(evidence),
        )
    return suggestion, Decision(
        "lr", f"Learning rate {suggestion:.0e} from lr-find's valley.", tuple(evidence)
    )


# ---- augmentation ------------------------------------------------------------------------------


def choose_augment(without: Measured, with_augment: Measured) -> tuple[str, Decision]:
    """Augmentation on or off: the setting whose short run scored higher (without on a tie:
    it trains faster, and head-only runs can then reuse cached features).

    Args:
        without: The short run with augmentation "none".
        with_augment: The same run with augmentation on ("light").
    """
    evidence = (without.text, with_augment.text)
    runs = tuple(r.run for r in (without, with_augment) if r.run)
    if with_augment.accuracy is None and without.accuracy is None:
        return "none", Decision("augment", "Augmentation off: neither run finished.", evidence)
    on = (with_augment.accuracy or 0.0) > (without.accuracy or 0.0)
    chosen, other = (with_augment, without) if on else (without, with_augment)
    words = "on" if on else "off"
    if _overlap(chosen, other):
        decision = (
            f"Augmentation on and off cannot be told apart on {chosen.val_images} validation "
            f"images ({words} {short_interval(chosen)}, the other {short_interval(other)}); "
        )
        decision += (
            "on is kept, its score being higher." if on else "off is kept: it trains faster."
        )
    else:
        decision = (
            f"Augmentation {words}: {short_interval(chosen)} against {short_interval(other)}."
        )
    return chosen.value, Decision("augment", decision, evidence, runs)
