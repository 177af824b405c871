"""Measures how fast each backbone runs on this computer, so the plan's estimates are real.

A batch of random images at the backbone's own input size goes through the model without
gradients (what computing features and validating cost); for the first backbone also a full
training step (forward and backward through every layer). A small batch before each is left
out of the timing: it pays one-off costs (allocations, kernel choices). The other backbones'
training speed is their measured inference speed times the first one's training-to-inference
ratio: a training step costs about the same multiple of a forward pass in networks of one
family, and timing each training step would spend much of a small budget on measuring.
Random weights time the same as pretrained ones, so no weights are loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from tl_core.auto.plan import DataShape, Throughput
from tl_core.common import release_memory, resolve_device
from tl_core.config import TrainConfig
from tl_core.data import scanned_dataset
from tl_core.models import Preprocessing, create_model, layer_groups

# The most of the budget that measuring the backbones' speeds may take.
MEASURE_SHARE = 0.15
# Images in the timed batch, and in the warm-up batch before it.
MEASURE_BATCH = 8
WARM_UP_BATCH = 2


def _timed(action: Callable[[torch.Tensor], None], images: torch.Tensor) -> float:
    """Seconds per image of ``action`` on ``images``, after a warm-up on a few of them."""
    action(images[:WARM_UP_BATCH])
    started = time.perf_counter()
    action(images)
    return max(time.perf_counter() - started, 1e-6) / len(images)


def measure_throughput(
    backbone: str,
    image_size: int | None = None,
    device: str = "auto",
    train_ratio: float | None = None,
    batch: int = MEASURE_BATCH,
) -> Throughput:
    """Images per second of ``backbone`` on this computer, frozen and training.

    Args:
        backbone: timm model name.
        image_size: Input side; None uses the backbone's own.
        device: "auto", "cpu" or "cuda".
        train_ratio: Training speed as a share of inference speed, measured on another
            backbone; None times a training step here.
        batch: Images in the timed batch.
    """
    torch_device = resolve_device(device)
    model, _ = create_model(backbone, 2, pretrained=False)
    groups = len(layer_groups(model)) - 1
    fixed = model.pretrained_cfg.get("fixed_input_size")
    size = Preprocessing.for_model(model, None if fixed else image_size).image_size
    model = model.to(torch_device)
    images = torch.randn(batch, 3, size, size, device=torch_device)

    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize()

    def infer(inputs: torch.Tensor) -> None:
        with torch.no_grad():
            model(inputs)
        synchronize()

    def step(inputs: torch.Tensor) -> None:
        targets = torch.zeros(len(inputs), dtype=torch.long, device=torch_device)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        synchronize()

    try:
        model.eval()
        infer_rate = 1 / _timed(infer, images)
        if train_ratio is None:
            model.train()
            train_rate = 1 / _timed(step, images)
        else:
            train_rate = infer_rate * train_ratio
    finally:
        model = None  # dropped before the memory is handed back
        release_memory(torch_device)
    return Throughput(backbone, infer_rate, train_rate, groups)


def measure_all(
    backbones: Sequence[str], base: TrainConfig, more: Callable[[], bool] = lambda: True
) -> list[Throughput]:
    """:func:`measure_throughput` for each backbone at ``base``'s image size and device, the
    base's backbone first (the plan is made for it), training timed on that one; the next is
    measured only while ``more()`` says there is time for it."""
    names = sorted(backbones, key=lambda name: name != base.backbone)
    first = measure_throughput(names[0], base.image_size, base.device)
    ratio = first.train_images_per_second / first.infer_images_per_second
    speeds = [first]
    for name in names[1:]:
        if not more():
            break
        speeds.append(measure_throughput(name, base.image_size, base.device, train_ratio=ratio))
    return speeds


def data_shape(data: str | Path, base: TrainConfig) -> DataShape:
    """The dataset's size as the plan needs it (its images checked as training checks them).

    Raises:
        DatasetError: The data cannot be trained on.
    """
    with scanned_dataset(data) as report:
        report.require_trainable()
        return DataShape(
            images=len(report.items),
            classes=len(report.class_names),
            val_fraction=base.val_fraction,
            batch_size=base.batch_size,
        )
