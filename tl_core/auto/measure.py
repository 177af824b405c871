"""Measures how fast each backbone runs on this computer, so the plan's estimates are real.

A few batches of random images at the backbone's own input size go through the model: once
without gradients (what computing features and validating cost), once with a full training
step (forward and backward through every layer). The first batch of each kind is left out of
the timing: it pays one-off costs (allocations, kernel choices). Random weights time the same
as pretrained ones, so no weights are loaded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from tl_core.auto.plan import Throughput
from tl_core.common import release_memory, resolve_device
from tl_core.models import Preprocessing, create_model, layer_groups

# Images per timed batch, and timed batches after the warm-up one.
MEASURE_BATCH = 8
MEASURE_BATCHES = 2


def _timed(action, batches: int) -> float:
    action()  # warm-up, not timed
    started = time.perf_counter()
    for _ in range(batches):
        action()
    return max(time.perf_counter() - started, 1e-6)


def measure_throughput(
    backbone: str,
    image_size: int | None = None,
    device: str = "auto",
    batch: int = MEASURE_BATCH,
    batches: int = MEASURE_BATCHES,
) -> Throughput:
    """Images per second of ``backbone`` on this computer, frozen and training.

    Args:
        backbone: timm model name.
        image_size: Input side; None uses the backbone's own.
        device: "auto", "cpu" or "cuda".
        batch: Images per timed batch.
        batches: Timed batches of each kind.
    """
    torch_device = resolve_device(device)
    model, _ = create_model(backbone, 2, pretrained=False)
    groups = len(layer_groups(model)) - 1
    fixed = model.pretrained_cfg.get("fixed_input_size")
    size = Preprocessing.for_model(model, None if fixed else image_size).image_size
    model = model.to(torch_device)
    images = torch.randn(batch, 3, size, size, device=torch_device)
    targets = torch.zeros(batch, dtype=torch.long, device=torch_device)
    optimizer = None
    try:
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                model(images)
            if torch_device.type == "cuda":
                torch.cuda.synchronize()

        infer_seconds = _timed(infer, batches)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

        def step() -> None:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), targets).backward()
            optimizer.step()
            if torch_device.type == "cuda":
                torch.cuda.synchronize()

        train_seconds = _timed(step, batches)
    finally:
        model = optimizer = None  # dropped before the memory is handed back
        release_memory(torch_device)
    return Throughput(
        backbone=backbone,
        infer_images_per_second=batch * batches / infer_seconds,
        train_images_per_second=batch * batches / train_seconds,
        groups=groups,
    )


def measure_all(
    backbones: Sequence[str], image_size: int | None = None, device: str = "auto"
) -> list[Throughput]:
    """:func:`measure_throughput` for each backbone, in order."""
    return [measure_throughput(name, image_size, device) for name in backbones]
