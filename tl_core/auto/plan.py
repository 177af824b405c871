"""The search's plan: which steps fit a time budget on this computer, and how long each takes.

Every estimate comes from images per second measured on this machine
(``tl_core.auto.measure``), never from a table of guesses: the backbone pass of the advisor,
an epoch at each freeze depth, lr-find's batches and the final run are all images divided by
a measured rate. The final run is given a share of the budget first; the searching steps are
then taken in the order of what they are worth (backbone, freeze depth, learning rate,
augmentation), each one kept only when it fits in what is left, and the transfer check only
when time is left over at the end. What does not fit is listed as skipped, with the time it
would have needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

# The searching steps, in the order they run (and in the order of what they are worth).
BACKBONES, FREEZE, LR, AUGMENT, FINAL, TRANSFER = (
    "backbones",
    "freeze",
    "lr",
    "augment",
    "final",
    "transfer",
)
STEP_TITLES = {
    BACKBONES: "Rank the backbones on your images",
    FREEZE: "Try freeze depths",
    LR: "Find the learning rate",
    AUGMENT: "Try augmentation on and off",
    FINAL: "Train the winning recipe",
    TRANSFER: "Check that pretraining helped",
}
# The final run's share of the budget, kept before any searching step is planned: a good
# recipe trained too briefly loses what the search found.
FINAL_SHARE = 0.4
# Epochs of each short run of the search (the freeze sweep, augmentation on/off).
PROBE_EPOCHS = 2
# The final run trains at most this long; early stopping usually ends it sooner.
MAX_FINAL_EPOCHS = 30
# Below this many training images augmentation is worth trying (bigger sets rarely need it).
SMALL_DATA_IMAGES = 1000
# Batches of lr-find (fewer than its usual 100: a budgeted search cannot afford more).
LR_FIND_BATCHES = 60
# The most freeze depths a sweep tries, fewer when the budget is small.
MAX_DEPTHS = 4
# The advisor scores at most this many images per backbone.
ADVISOR_IMAGES = 500


@dataclass(frozen=True)
class Throughput:
    """How fast one backbone runs on this computer, measured.

    Attributes:
        backbone: timm model name.
        infer_images_per_second: Images per second through the frozen backbone (no gradients):
            computing features, validating.
        train_images_per_second: Images per second of a training step with every layer
            training (forward and backward).
        groups: Layer groups before the head (what freeze depths count).
    """

    backbone: str
    infer_images_per_second: float
    train_images_per_second: float
    groups: int

    def epoch_seconds(self, trained_share: float, train_images: int, val_images: int) -> float:
        """One epoch with ``trained_share`` (0..1) of the layer groups training.

        A frozen layer costs its forward pass only; a trained one forward and backward. Head
        only (share 0) trains on features computed once: its epochs are nearly free, and the
        features are counted by :meth:`feature_seconds`.
        """
        if trained_share <= 0:
            return 0.0
        per_image = 1 / self.infer_images_per_second + trained_share * (
            1 / self.train_images_per_second - 1 / self.infer_images_per_second
        )
        return train_images * max(per_image, 0.0) + val_images / self.infer_images_per_second

    def feature_seconds(self, images: int) -> float:
        """Passing ``images`` once through the frozen backbone."""
        return images / self.infer_images_per_second


@dataclass(frozen=True)
class DataShape:
    """What the plan needs to know of the dataset.

    Attributes:
        images: Usable images.
        classes: Classes.
        val_fraction: The share held out for validation.
        batch_size: Images per training step.
    """

    images: int
    classes: int
    val_fraction: float = 0.2
    batch_size: int = 32

    @property
    def val_images(self) -> int:
        return max(self.classes, round(self.images * self.val_fraction))

    @property
    def train_images(self) -> int:
        return max(1, self.images - self.val_images)

    @property
    def small(self) -> bool:
        return self.train_images < SMALL_DATA_IMAGES


@dataclass(frozen=True)
class PlannedStep:
    """One step of the plan and its estimate.

    Attributes:
        step: BACKBONES, FREEZE, LR, AUGMENT, FINAL or TRANSFER.
        seconds: The estimate, from measured speeds (0 for a skipped step).
        detail: What it will do, in words ("4 depths: 0, 2, 4, all; 2 epochs each").
        skipped: Why it will not run ("" when it runs).
    """

    step: str
    seconds: float
    detail: str
    skipped: str = ""

    @property
    def title(self) -> str:
        return STEP_TITLES[self.step]

    @property
    def runs(self) -> bool:
        return not self.skipped

    def sentence(self) -> str:
        """``"Try freeze depths: 0, 2, 4, all, 2 epochs each (about 1 min 20 s)"``."""
        if self.skipped:
            return f"{self.title}: skipped, {self.skipped}"
        return f"{self.title}: {self.detail} (about {duration(self.seconds)})"

    def to_dict(self) -> dict:
        return {**asdict(self), "title": self.title}


@dataclass(frozen=True)
class SearchPlan:
    """The steps fitted to a budget.

    Attributes:
        budget_seconds: The whole search's budget, measuring included.
        measured_seconds: Spent measuring before the plan was made.
        steps: Every step, in order, skipped ones included.
        depths: The freeze depths the sweep tries.
        final_epochs: Epochs the final run is planned for (the runner recomputes them from
            the epochs it has measured by then).
        speeds: The measured speeds the estimates come from.
    """

    budget_seconds: float
    measured_seconds: float
    steps: tuple[PlannedStep, ...]
    depths: tuple[str, ...] = ()
    final_epochs: int = 1
    speeds: tuple[Throughput, ...] = field(default_factory=tuple)

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.step == name)

    def runs(self, name: str) -> bool:
        return self.step(name).runs

    @property
    def seconds(self) -> float:
        """The estimate of the whole search, measuring included."""
        return self.measured_seconds + sum(s.seconds for s in self.steps if s.runs)

    @property
    def skipped(self) -> list[PlannedStep]:
        return [s for s in self.steps if s.skipped]

    def lines(self) -> list[str]:
        """The plan in words, one line per step, then the total against the budget."""
        lines = [f"{i}. {s.sentence()}" for i, s in enumerate(self.steps, start=1)]
        lines.append(
            f"In all about {duration(self.seconds)} of the {duration(self.budget_seconds)} "
            f"budget (measuring this computer took {duration(self.measured_seconds)})."
        )
        return lines

    def to_dict(self) -> dict:
        return {
            "budget_seconds": self.budget_seconds,
            "measured_seconds": round(self.measured_seconds, 2),
            "seconds": round(self.seconds, 2),
            "depths": list(self.depths),
            "final_epochs": self.final_epochs,
            "steps": [s.to_dict() for s in self.steps],
            "speeds": [asdict(s) for s in self.speeds],
        }


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"1 h 5 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def spread_depths(groups: int, count: int) -> list[str]:
    """``count`` freeze depths from full fine-tuning to head only, head only always first
    kept (the app's default, and the cheapest): 1 -> all; 2 -> half, all; 4 -> 0, ..., all."""
    if count <= 1 or groups <= 0:
        return ["all"]
    counts = sorted({round(i * groups / (count - 1)) for i in range(count)} - {groups})
    if count == 2:
        counts = [max(1, groups // 2)] if groups > 1 else [0]
    return [str(c) for c in counts] + ["all"]


def trained_share(depth: str, groups: int) -> float:
    """The share of the layer groups a depth trains (0 for "all")."""
    if depth == "all" or groups <= 0:
        return 0.0
    return max(0.0, (groups - int(depth)) / groups)


def sweep_seconds(speed: Throughput, data: DataShape, depths: Sequence[str]) -> float:
    """A sweep of ``depths`` with PROBE_EPOCHS epochs each."""
    total = 0.0
    for depth in depths:
        share = trained_share(depth, speed.groups)
        if share == 0:
            total += speed.feature_seconds(data.images)
        else:
            total += PROBE_EPOCHS * speed.epoch_seconds(share, data.train_images, data.val_images)
    return total


def lr_find_seconds(speed: Throughput, data: DataShape, depth: str) -> float:
    """lr-find's batches at ``depth`` (head only: on features computed once)."""
    share = trained_share(depth, speed.groups)
    if share == 0:
        return speed.feature_seconds(data.images)
    images = LR_FIND_BATCHES * data.batch_size
    return images * share / speed.train_images_per_second + images * (1 - share) / (
        speed.infer_images_per_second
    )


def augment_seconds(speed: Throughput, data: DataShape, depth: str) -> float:
    """One short run with the other augmentation setting (augmented head-only runs pass every
    image through the backbone each epoch: no features can be cached)."""
    share = trained_share(depth, speed.groups)
    if share == 0:
        return PROBE_EPOCHS * (
            speed.feature_seconds(data.train_images) + speed.feature_seconds(data.val_images)
        )
    return PROBE_EPOCHS * speed.epoch_seconds(share, data.train_images, data.val_images)


def final_epoch_seconds(speed: Throughput, data: DataShape, depth: str) -> float:
    """One epoch of the final run at ``depth`` (head only: features once, then nearly free)."""
    share = trained_share(depth, speed.groups)
    return speed.epoch_seconds(share, data.train_images, data.val_images)


def plan_search(
    budget_seconds: float,
    measured_seconds: float,
    speeds: Sequence[Throughput],
    data: DataShape,
) -> SearchPlan:
    """Fits the search's steps into what is left of the budget after measuring.

    Args:
        budget_seconds: The whole search's budget.
        measured_seconds: Already spent measuring ``speeds``.
        speeds: Every candidate backbone's measured speed, the default backbone first (it is
            the one searched when the backbones are not compared).
        data: The dataset's size.

    Returns:
        The plan. Estimates assume the first backbone wins the comparison (the fastest of
        those within chance is kept, so others would be quicker still or not much slower).
    """
    left = max(0.0, budget_seconds - measured_seconds)
    main = speeds[0]
    # The final run's share is kept first: at least the features of a head-only run.
    final_reserve = max(FINAL_SHARE * left, speed_features(main, data))
    search_left = max(0.0, left - final_reserve)
    steps: list[PlannedStep] = []

    def fits(step: str, seconds: float, detail: str, why_not: str = "") -> bool:
        nonlocal search_left
        if why_not:
            steps.append(PlannedStep(step, 0.0, detail, why_not))
            return False
        if seconds > search_left:
            steps.append(
                PlannedStep(
                    step,
                    0.0,
                    detail,
                    f"it needs about {duration(seconds)} and {duration(search_left)} of the "
                    "searching time is left.",
                )
            )
            return False
        steps.append(PlannedStep(step, seconds, detail))
        search_left -= seconds
        return True

    advisor_images = min(data.images, ADVISOR_IMAGES)
    advisor = sum(s.feature_seconds(advisor_images) for s in speeds)
    fits(
        BACKBONES,
        advisor,
        f"{len(speeds)} backbones, {advisor_images} images each",
        "" if len(speeds) > 1 else "there is only one backbone to compare.",
    )

    depths: list[str] = []
    for count in range(MAX_DEPTHS, 1, -1):
        candidate = spread_depths(main.groups, count)
        if sweep_seconds(main, data, candidate) <= search_left:
            depths = candidate
            break
    if depths:
        fits(
            FREEZE,
            sweep_seconds(main, data, depths),
            f"{', '.join(depths)}, {PROBE_EPOCHS} epochs each",
        )
    else:
        two = spread_depths(main.groups, 2)
        fits(FREEZE, sweep_seconds(main, data, two), f"{', '.join(two)}")
    # Later steps run at the depth the sweep picks: estimated at the costliest tried.
    costly = depths[0] if depths else "all"
    fits(LR, lr_find_seconds(main, data, costly), f"{LR_FIND_BATCHES} batches")
    fits(
        AUGMENT,
        augment_seconds(main, data, costly),
        f"one more {PROBE_EPOCHS}-epoch run",
        "" if data.small else f"{data.train_images} training images are enough without it.",
    )

    final_left = final_reserve + search_left
    final_epoch = final_epoch_seconds(main, data, costly)
    epochs = epochs_that_fit(final_left, final_epoch, MAX_FINAL_EPOCHS)
    # A head-only run computes its features once; its epochs then cost next to nothing.
    final = final_epoch * epochs + (speed_features(main, data) if costly == "all" else 0.0)
    steps.append(
        PlannedStep(FINAL, min(final, final_left), f"up to {epochs} epochs, early stopping")
    )
    spare = max(0.0, final_left - final)
    scratch = epochs * main.epoch_seconds(1.0, data.train_images, data.val_images)
    if scratch <= spare:
        detail = f"one run from random weights, {epochs} epochs"
        steps.append(PlannedStep(TRANSFER, scratch, detail))
    else:
        steps.append(
            PlannedStep(
                TRANSFER,
                0.0,
                "one run from random weights",
                f"it needs about {duration(scratch)} and {duration(spare)} would be left.",
            )
        )
    return SearchPlan(
        budget_seconds=budget_seconds,
        measured_seconds=measured_seconds,
        steps=tuple(steps),
        depths=tuple(depths or spread_depths(main.groups, 2)),
        final_epochs=epochs,
        speeds=tuple(speeds),
    )


def speed_features(speed: Throughput, data: DataShape) -> float:
    """Features of every image, once (a head-only run's first epoch)."""
    return speed.feature_seconds(data.images)


def epochs_that_fit(seconds_left: float, epoch_seconds: float, most: int) -> int:
    """Whole epochs of ``epoch_seconds`` in ``seconds_left`` (at least 1, at most ``most``)."""
    if epoch_seconds <= 0:
        return most
    return max(1, min(most, math.floor(seconds_left / epoch_seconds)))
