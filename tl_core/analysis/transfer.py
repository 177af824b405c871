"""Did transfer help? The same recipe trained from pretrained and from random weights.

A transfer check is a group folder (see ``tl_core.runs.folders`` for the run folders inside it):

    DIR/pretrained/     the user's recipe, with the backbone's pretrained weights
    DIR/scratch/        the same data, split, epochs and learning rate, from random weights
    DIR/transfer.json   both best validation accuracies, the gain in points, a verdict in
                        words and the domain-distance signals that explain it

Both runs hold out the same validation images: the split depends only on the data, the seed
and the validation settings, which the two runs share. The from-scratch run trains every
layer at the full learning rate. Freezing random layers would measure nothing (Yosinski et
al. 2014: three or more frozen random layers score near chance), and the smaller learning
rate of pretrained layers exists only to keep pretrained features, which random layers lack.

The verdict calls a difference real only when the 95 % Wilson intervals of the two accuracies
do not overlap, so a handful of validation images never produces a confident claim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.common import (
    PHASE_FEATURES,
    PHASE_PREPARING,
    JobControl,
    TLStudioError,
    TrainingObserver,
    UsageError,
    plural,
    wilson_interval,
    write_json,
)
from tl_core.config import TrainConfig
from tl_core.runs import (
    CONFIG_FILE,
    TRANSFER_FILE,
    RunWriter,
    read_json,
    require_new_run_dir,
    summarize_run,
)

if TYPE_CHECKING:
    import torch

    from tl_core.data import DatasetReport, ImageItem

KIND = "transfer-check"
PRETRAINED_RUN = "pretrained"
SCRATCH_RUN = "scratch"
# How many training images the ImageNet classifier looks at: enough for a stable mean.
IMAGENET_SIGNAL_IMAGES = 200
IMAGENET_CLASSES = 1000
# Below this top probability the ImageNet classifier counts as unsure about an image.
UNSURE_BELOW = 0.5
STOPPED = "Stopped before it was measured."

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
        freeze = str(runs[0]["train"]["freeze"])
    except (TLStudioError, KeyError, TypeError):
        return []
    kept = {"all": "only the head trained", "none": "every layer trained"}.get(
        freeze, f"the first {freeze} layer groups frozen"
    )
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


# ---- domain-distance signals ---------------------------------------------------------------


IMAGENET_SIGNAL = "imagenet_confidence"
PROBE_SIGNAL = "linear_probe"
# What each signal is, for a signal that could not be measured.
SIGNAL_MEANINGS = {
    IMAGENET_SIGNAL: "How sure the backbone's ImageNet classifier is about your images.",
    PROBE_SIGNAL: "How far a simple classifier on the frozen pretrained features is above chance.",
}


class SignalSkipped(TLStudioError):
    """A signal cannot be measured; the message says why."""


def imagenet_signal(
    config: TrainConfig,
    items: Sequence[ImageItem],
    class_names: Sequence[str],
    device: torch.device,
    control: JobControl,
) -> dict[str, Any]:
    """How sure the backbone's own ImageNet classifier is about the user's images.

    Photos like ImageNet's get confident answers; medical scans, drawings or spectrograms get
    unsure ones spread over many classes. A rough sign of how far the data is from what the
    backbone learned, not a measurement of transfer.

    Args:
        config: The pretrained recipe (backbone, weights file, image size, device).
        items: The images to classify (a subsample of the training images).
        class_names: The dataset's classes, in label order.
        device: Where the model runs.
        control: Checked between batches; a stop skips the signal.
    """
    import torch
    from torch.utils.data import DataLoader

    from tl_core.common import autocast_for, release_memory
    from tl_core.data import ImageFolderDataset, default_num_workers
    from tl_core.models import Preprocessing, create_model

    model, source = create_model(config.backbone, None, weights_file=config.weights)
    try:
        outputs = getattr(model, "num_classes", None)
        if outputs != IMAGENET_CLASSES or "no matching head" in source:
            raise SignalSkipped("The backbone's weights come without ImageNet's classifier.")
        fixed = model.pretrained_cfg.get("fixed_input_size")
        preprocessing = Preprocessing.for_model(model, None if fixed else config.image_size)
        dataset = ImageFolderDataset(items, class_names, preprocessing.eval_transform())
        loader = DataLoader(dataset, batch_size=32, num_workers=default_num_workers(device))
        model = model.to(device).eval()
        autocast = autocast_for(device)
        top: list[torch.Tensor] = []
        classes: list[torch.Tensor] = []
        with torch.inference_mode():
            for images, _ in loader:
                if control.stop_requested:
                    raise SignalSkipped(STOPPED)
                with autocast():
                    logits = model(images.to(device))
                probabilities = logits.float().softmax(dim=1)
                best, index = probabilities.max(dim=1)
                top.append(best.cpu())
                classes.append(index.cpu())
    finally:
        del model
        release_memory(device)
    confidence = torch.cat(top)
    count = len(confidence)
    unsure = int((confidence < UNSURE_BELOW).sum())
    distinct = len(set(torch.cat(classes).tolist()))
    mean = float(confidence.mean())
    if unsure * 2 > count:
        reading = (
            "your images look unlike the photos it learned from, so pretraining may help less "
            "than usual."
        )
    else:
        reading = "your images resemble the photos it learned from, a good sign for transfer."
    return {
        "images": count,
        "mean_max_softmax": round(mean, 4),
        "unsure_images": unsure,
        "distinct_imagenet_classes": distinct,
        "meaning": (
            f"The backbone's ImageNet classifier is unsure (under {_percent(UNSURE_BELOW)} "
            f"sure) about {unsure} of {count} of your training images and spreads them over "
            f"{plural(distinct, 'ImageNet class')}: {reading} A rough sign, not a measurement."
        ),
    }


class _StopFlag:
    """A ``JobControl`` seen as the stop event the advisor checks."""

    def __init__(self, control: JobControl):
        self.control = control

    def is_set(self) -> bool:
        return self.control.stop_requested


def probe_signal(
    config: TrainConfig, report: DatasetReport, control: JobControl, cache_dir: str | Path | None
) -> dict[str, Any]:
    """How far a simple classifier on the frozen pretrained features is above chance.

    Uses the backbone advisor's cross-validated linear probe; chance is always guessing the
    largest class. Features that barely beat it do not tell the classes apart: fine-tuning
    deeper, or another backbone, has to do the work.
    """
    from tl_core.analysis.advisor import AdvisorStopped, advise
    from tl_core.models import create_model

    def factory(name: str, num_classes: int):
        return create_model(name, num_classes, weights_file=config.weights)

    try:
        result = advise(
            report,
            [config.backbone],
            device=config.device,
            stop=_StopFlag(control),
            cache_dir=cache_dir,
            image_size=config.image_size,
            seed=config.seed,
            model_factory=factory,
        )
    except AdvisorStopped:
        raise SignalSkipped(STOPPED) from None
    candidate = result.candidates[0]
    chance = result.majority_rate
    if candidate.probe_low > chance:
        reading = "its features tell your classes apart, a head start for the pretrained run."
    else:
        reading = (
            "its features barely tell your classes apart: fine-tune more layers, try another "
            "backbone, check the labels, or add images."
        )
    return {
        "images": result.num_images,
        "probe_accuracy": round(candidate.probe_accuracy, 4),
        "probe_low": round(candidate.probe_low, 4),
        "probe_high": round(candidate.probe_high, 4),
        "majority_rate": round(chance, 4),
        "meaning": (
            f"A simple classifier on the frozen pretrained features scores {candidate.band_text} "
            f"over {result.folds} folds, while always guessing the largest class scores "
            f"{_percent(chance)}: {reading}"
        ),
    }


def domain_signals(
    config: TrainConfig,
    control: JobControl | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Cheap signals of how far the user's images are from what the backbone learned.

    Each signal is a dict with its numbers and a ``meaning`` sentence, or with ``skipped``
    (why it could not be measured) and ``meaning``.

    Args:
        config: The pretrained recipe.
        control: A stop skips the signals not yet measured.
        cache_dir: Where the probe keeps features (default: the advisor's).
    """
    from tl_core.analysis.advisor import stratified_subsample
    from tl_core.common import resolve_device
    from tl_core.data import scanned_dataset, stratified_split

    control = control or JobControl()
    device = resolve_device(config.device)
    signals: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        report = stack.enter_context(scanned_dataset(config.data))
        report.require_trainable()
        train_items = list(report.items)
        if not config.val_data:
            train_items, _ = stratified_split(report.items, config.val_fraction, config.seed)
        sample = stratified_subsample(train_items, IMAGENET_SIGNAL_IMAGES, config.seed)
        measures = {
            IMAGENET_SIGNAL: lambda: imagenet_signal(
                config, sample, report.class_names, device, control
            ),
            PROBE_SIGNAL: lambda: probe_signal(config, report, control, cache_dir),
        }
        for name, measure in measures.items():
            try:
                signals[name] = measure()
            except TLStudioError as exc:
                # The comparison stands without it: say why the signal is missing.
                signals[name] = {"skipped": str(exc), "meaning": SIGNAL_MEANINGS[name]}
    return signals


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
            "kind": KIND,
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
        RunError: It is missing or not valid JSON.
    """
    return read_json(Path(group) / TRANSFER_FILE)


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
    write_json(group / TRANSFER_FILE, result.to_dict())
    return result
