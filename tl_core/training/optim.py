"""Optimiser and learning-rate schedule for transfer learning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tl_core.models import LayerGroup

# Warm-up never takes more than this share of a run (or of a gradual-unfreezing stage):
# fastai's one-cycle warms up for 25 % (fit_one_cycle's pct_start). A whole epoch of warm-up
# in a two-epoch run would spend half the run at a low rate.
WARMUP_MAX_FRACTION = 0.25


def even_mults(low: float, high: float, count: int) -> list[float]:
    """``count`` numbers from ``low`` to ``high`` in equal ratios (fastai's ``even_mults``).

    One number is ``high``: a lone group is the head, which learns at the full rate.
    """
    if count == 1:
        return [high]
    step = (high / low) ** (1 / (count - 1))
    return [low * step**i for i in range(count)]


def group_learning_rates(
    groups: Sequence[LayerGroup], frozen_count: int, lr: float, lowest_fraction: float
) -> dict[str, float]:
    """The learning rate of every layer group, by name.

    Trainable groups get rates in equal ratios from ``lr * lowest_fraction`` (the lowest
    trainable group) up to ``lr`` (the head): features near the input are the most general
    and change least. Frozen groups get the lowest rate, which only their normalisation layers
    use when those train (fastai's ``train_bn``).

    Args:
        groups: Layer groups, input to head.
        frozen_count: How many leading groups are frozen.
        lr: The head's learning rate.
        lowest_fraction: The lowest trainable group's share of ``lr``.
    """
    trainable = groups[frozen_count:]
    rates = even_mults(lr * lowest_fraction, lr, len(trainable))
    lowest = lr * lowest_fraction
    return {
        group.name: rates[group.index - frozen_count] if group.index >= frozen_count else lowest
        for group in groups
    }


def build_optimizer(
    model: torch.nn.Module,
    groups: Sequence[LayerGroup],
    frozen_count: int,
    lr: float,
    lowest_fraction: float,
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, one learning rate per layer group.

    Rates follow :func:`group_learning_rates`. Biases and norm weights (1-D tensors) get no
    weight decay, as is usual for AdamW (fastai's ``wd_bn_bias=False``). Every parameter group
    carries its layer group's ``name``, so tests and logs can tell them apart.
    """
    rates = group_learning_rates(groups, frozen_count, lr, lowest_fraction)
    params = dict(model.named_parameters())
    param_groups = []
    for group in groups:
        split: dict[bool, list[torch.nn.Parameter]] = {False: [], True: []}
        for name in group.param_names:
            if params[name].requires_grad:
                split[params[name].ndim <= 1].append(params[name])
        param_groups += [
            {
                "params": members,
                "name": group.name,
                "lr": rates[group.name],
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
            for no_decay, members in split.items()
            if members
        ]
    return torch.optim.AdamW(param_groups)


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up steps for a run of ``total_steps``: the setting, capped at
    ``WARMUP_MAX_FRACTION`` of the run."""
    wanted = round(warmup_epochs * steps_per_epoch)
    return max(0, min(wanted, math.floor(total_steps * WARMUP_MAX_FRACTION)))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from near zero, then cosine decay to 1% of each group's learning rate."""
    floor = 0.01

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
