"""Cheap signals of how far the user's images are from what a backbone learned, measured beside
a transfer check (``tl_core.analysis.transfer``) to explain its verdict: how sure the
backbone's ImageNet classifier is about the images, and how far a linear probe on its frozen
features is above chance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.common import JobControl, TLStudioError, plural
from tl_core.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from tl_core.data import DatasetReport, ImageItem

# How many training images the ImageNet classifier looks at: enough for a stable mean.
IMAGENET_SIGNAL_IMAGES = 200
IMAGENET_CLASSES = 1000
# Below this top probability the ImageNet classifier counts as unsure about an image.
UNSURE_BELOW = 0.5
STOPPED = "Stopped before it was measured."
IMAGENET_SIGNAL = "imagenet_confidence"
PROBE_SIGNAL = "linear_probe"
# What each signal is, for a signal that could not be measured.
SIGNAL_MEANINGS = {
    IMAGENET_SIGNAL: "How sure the backbone's ImageNet classifier is about your images.",
    PROBE_SIGNAL: "How far a simple classifier on the frozen pretrained features is above chance.",
}


def _percent(value: float) -> str:
    return f"{round(100 * value)} %"


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
