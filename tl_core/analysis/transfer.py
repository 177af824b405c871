"""Did transfer help? The same recipe trained from pretrained and from random weights.

A transfer check is a group folder (``tl_core.runs.groups``) of two ordinary run folders:

    DIR/pretrained/     the user's recipe, with the backbone's pretrained weights
    DIR/scratch/        the same data, split, epochs and learning rate, from random weights
    DIR/transfer.json   both best validation accuracies, the gain in points, a verdict in
                        words and the domain-distance signals that explain it
                        (``tl_core.analysis.signals``)

Both runs hold out the same validation images: the split depends only on the data, the seed
and the validation settings, which the two runs share. The from-scratch run trains every
layer at the full learning rate. Freezing random layers would measure nothing (Yosinski et
al. 2014: three or more frozen random layers score near chance), and the smaller learning
rate of pretrained layers exists only to keep pretrained features, which random layers lack.

The verdict calls a difference real only when the 95 % Wilson intervals of the two accuracies
do not overlap, so a handful of validation images never produces a confident claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.analysis.multilabel_support import TRANSFER_CHECK, require_single_label
from tl_core.analysis.signals import domain_signals
from tl_core.common import (
    PHASE_FEATURES,
    PHASE_PREPARING,
    JobControl,
    TLStudioError,
    TrainingObserver,
    UsageError,
    plural,
    wilson_interval,
)
from tl_core.config import TrainConfig
from tl_core.runs import (
    CONFIG_FILE,
    TRANSFER_KIND,
    RunWriter,
    describe_freeze,
    read_group_file,
    read_json,
    require_new_run_dir,
    summarize_run,
    write_group_file,
)

PRETRAINED_RUN = "pretrained"
SCRATCH_RUN = "scratch"

RunTraining = Callable[[TrainConfig, RunWriter], str]
"""Trains one run into a claimed folder and returns its status ("completed" or "stopped")."""


# ---- the verdict ---------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{round(100 * value)} %"


@dataclass(frozen=True)
class Verdict:
    """What the two accuracies say, in words.

    Attributes:
        outcome: "gain" (pretraining helped beyond chance), "negative" (from scratch did
            better beyond chance) or "same" (the difference is within chance).
        sentence: The verdict in one or two plain sentences.
    """

    outcome: str
    sentence: str


def _points(pretrained: float, scratch: float) -> str:
    """The gap as the two rounded percentages show it ("12 points")."""
    points = abs(round(100 * pretrained) - round(100 * scratch))
    return plural(points, "point") if points else "less than 1 point"


def transfer_verdict(pretrained: float, scratch: float, num_val_images: int) -> Verdict:
    """The verdict on two best validation accuracies measured on the same images.

    A difference counts only when the 95 % Wilson intervals of the two accuracies do not
    overlap: with 20 validation images, 90 % against 80 % is within chance.

    Args:
        pretrained: Best validation accuracy with pretrained weights, 0 to 1.
        scratch: Best validation accuracy from random weights, 0 to 1.
        num_val_images: The validation images both were measured on.
    """
    with_weights, without = _percent(pretrained), _percent(scratch)
    p_low, p_high = wilson_interval(round(pretrained * num_val_images), num_val_images)
    s_low, s_high = wilson_interval(round(scratch * num_val_images), num_val_images)
    if p_low > s_high:
        return Verdict(
            "gain",
            f"Pretrained weights bought {_points(pretrained, scratch)}: {with_weights} "
            f"against {without} from scratch.",
        )
    if s_low > p_high:
        return Verdict(
            "negative",
            f"Trained from scratch: {without}. With pretraining: {with_weights}. For this "
            "data, pretraining did not help (negative transfer): try a different backbone, "
            "fine-tune more layers, or add images.",
        )
    images = plural(num_val_images, "validation image")
    if pretrained > scratch:
        after = "more validation images would tell whether pretraining helps."
    else:
        after = (
            "pretraining bought nothing measurable. Try a different backbone, fine-tune more "
            "layers, or add images."
        )
    return Verdict(
        "same",
        f"About the same ({with_weights} with pretraining, {without} from scratch): with "
        f"{images} the difference is within chance; {after}",
    )


def scratch_config(config: TrainConfig) -> TrainConfig:
    """The fair from-scratch version of a recipe: random weights, every layer trained.

    Data, split, epochs, batch size, learning rate, augmentation setting and seed stay the
    same. Every layer trains (freezing random layers measures nothing) at the head's learning
    rate (the smaller rate of backbone layers protects pretrained features, which random
    layers do not have).
    """
    return config.replace(
        pretrained=False,
        weights=None,
        mode="full-fine-tune",
        freeze="none",
        backbone_lr_scale=1.0,
    )


def recipe_notes(group: str | Path) -> list[str]:
    """Sentences on how the from-scratch run's recipe differs from the pretrained one, read
    from their config.json files (empty when they cannot be read)."""
    group = Path(group)
    try:
        runs = [read_json(group / name / CONFIG_FILE) for name in (PRETRAINED_RUN, SCRATCH_RUN)]
        augments = [run["model"]["augment"] for run in runs]
        kept = describe_freeze(runs[0])
    except (TLStudioError, KeyError, TypeError):
        return []
    notes = [
        "The from-scratch run trained every layer at the full learning rate on the same "
        "images, split and epochs (frozen random layers would score near chance); the "
        f"pretrained run kept your freeze setting ({kept})."
    ]
    if augments[0] != augments[1]:
        notes.append(
            f"Augmentation was {augments[0]} with pretraining and {augments[1]} from scratch: "
            "the automatic choice depends on whether the backbone trains."
        )
    return notes


# ---- the check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferResult:
    """The outcome of a transfer check.

    Attributes:
        status: "completed" (both runs trained; transfer.json written) or "stopped" (no
            transfer.json: nothing was compared).
        path: The group folder.
        pretrained: Best validation accuracy with pretrained weights (None if not measured).
        scratch: Best validation accuracy from random weights (None if not measured).
        num_val_images: The validation images both were measured on.
        verdict: The verdict (None when stopped).
        notes: How the from-scratch recipe differs, in sentences.
        signals: Domain-distance signals (see :func:`domain_signals`).
    """

    status: str
    path: Path
    pretrained: float | None = None
    scratch: float | None = None
    num_val_images: int = 0
    verdict: Verdict | None = None
    notes: tuple[str, ...] = ()
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def gain(self) -> float | None:
        """Points the pretrained weights bought (negative: they cost)."""
        if self.pretrained is None or self.scratch is None:
            return None
        return round(100 * (self.pretrained - self.scratch), 2)

    def to_dict(self) -> dict[str, Any]:
        """The contents of transfer.json."""
        return {
            "kind": TRANSFER_KIND,
            "pretrained": self.pretrained,
            "scratch": self.scratch,
            "gain": self.gain,
            "verdict": self.verdict.sentence if self.verdict else None,
            "outcome": self.verdict.outcome if self.verdict else None,
            "num_val_images": self.num_val_images,
            "signals": self.signals,
            "runs": {"pretrained": PRETRAINED_RUN, "scratch": SCRATCH_RUN},
        }


def read_transfer(group: str | Path) -> dict[str, Any]:
    """The transfer.json of a group folder.

    Raises:
        RunError: It is missing, not valid JSON, or not a JSON object.
    """
    return read_group_file(group, TRANSFER_KIND)


def _default_training(observer: TrainingObserver, control: JobControl) -> RunTraining:
    from tl_core.training import train

    return lambda config, writer: train(config, writer, observer, control)


def _measured(run: Path) -> tuple[float, int]:
    summary = summarize_run(run)
    if summary.best_val_accuracy is None or not summary.num_val_images:
        raise TLStudioError(
            f"The run {run.name} finished without a validation accuracy.",
            "Check its metrics.json, then start the transfer check again in a new folder.",
        )
    return summary.best_val_accuracy, summary.num_val_images


def _split_of(run: Path) -> dict[str, list]:
    """A run's split, with paths inside the run folder (an unpacked .zip) made relative."""
    split = read_json(run / "split.json")

    def key(path: str) -> str:
        return Path(path).relative_to(run).as_posix() if Path(path).is_relative_to(run) else path

    return {part: [[key(p), label] for p, label in split[part]] for part in ("train", "val")}


def _train_both(
    config: TrainConfig,
    group: Path,
    observer: TrainingObserver,
    control: JobControl,
    train_run: RunTraining,
) -> bool:
    """Trains the pretrained run, then the from-scratch one; False when a stop ended them."""
    runs = (
        (PRETRAINED_RUN, config, "Run 1 of 2: with pretrained weights"),
        (SCRATCH_RUN, scratch_config(config), "Run 2 of 2: from random weights"),
    )
    for name, run_config, message in runs:
        if control.stop_requested:
            return False
        observer.on_phase(message, PHASE_PREPARING)
        if train_run(run_config, RunWriter.create(group / name)) != "completed":
            return False
    return True


def transfer_check(
    config: TrainConfig,
    out_dir: str | Path,
    observer: TrainingObserver | None = None,
    control: JobControl | None = None,
    *,
    train_run: RunTraining | None = None,
    cache_dir: str | Path | None = None,
) -> TransferResult:
    """Trains ``config`` with pretrained weights, then its from-scratch version, and compares.

    Args:
        config: The recipe, with pretrained weights.
        out_dir: A new (missing or empty) group folder.
        observer: Told each step in words ("Run 1 of 2: ..."); the default training also
            reports every run's progress to it.
        control: Pause/resume/stop. A stop ends the check after the run under way; no
            transfer.json is written unless both runs completed.
        train_run: Trains one run into a claimed folder (default: ``tl_core.training.train``
            with ``observer`` and ``control``); the command line follows each run as a job.
        cache_dir: Where the probe signal keeps features (default: the advisor's).

    Returns:
        The result; ``status`` says whether both runs completed.

    Raises:
        UsageError: ``config`` asks for random weights already.
        RunError: ``out_dir`` is taken.
        TLStudioError: A run failed (its folder records why).
    """
    if not config.pretrained:
        raise UsageError(
            "A transfer check compares pretrained weights with random ones, but these settings "
            "already ask for random weights.",
            "Turn pretrained weights on; the check trains the from-scratch version itself.",
        )
    require_single_label(TRANSFER_CHECK, config.data)
    observer = observer or TrainingObserver()
    control = control or JobControl()
    train_run = train_run or _default_training(observer, control)
    group = require_new_run_dir(out_dir)
    created = not group.exists()
    group.mkdir(parents=True, exist_ok=True)
    try:
        if not _train_both(config, group, observer, control, train_run):
            return TransferResult("stopped", group)
    except BaseException:
        # A run that could not even start (no weights, unusable data) leaves nothing behind.
        if created and not any(group.iterdir()):
            group.rmdir()
        raise
    pretrained_run, scratch_run = group / PRETRAINED_RUN, group / SCRATCH_RUN
    if _split_of(pretrained_run) != _split_of(scratch_run):
        raise TLStudioError(
            "The two runs did not hold out the same validation images, so they cannot be compared.",
            "Check that the data did not change while they trained, then try again.",
        )
    pretrained, num_val = _measured(pretrained_run)
    scratch, _ = _measured(scratch_run)
    observer.on_phase("Measuring how familiar your images look to the backbone", PHASE_FEATURES)
    signals = domain_signals(config, control, cache_dir)
    result = TransferResult(
        status="completed",
        path=group,
        pretrained=pretrained,
        scratch=scratch,
        num_val_images=num_val,
        verdict=transfer_verdict(pretrained, scratch, num_val),
        notes=tuple(recipe_notes(group)),
        signals=signals,
    )
    write_group_file(group, TRANSFER_KIND, result.to_dict())
    return result
