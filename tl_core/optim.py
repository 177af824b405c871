"""Optimiser and learning-rate schedule for transfer learning."""

from __future__ import annotations

import math

import torch


def build_optimizer(
    model: torch.nn.Module,
    head_param_names: set[str],
    lr: float,
    backbone_lr_scale: float,
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with discriminative learning rates.

    The new head learns at ``lr``; unfrozen pretrained layers at ``lr * backbone_lr_scale``, so
    fine-tuning adjusts good features instead of overwriting them. Biases and norm weights (1-D
    tensors) get no weight decay, as is usual for AdamW.
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name in head_param_names, param.ndim <= 1)
        groups.setdefault(key, []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": lr if is_head else lr * backbone_lr_scale,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from near zero, then cosine decay to 1% of each group's learning rate."""
    warmup_steps = max(0, min(warmup_steps, total_steps // 2))
    floor = 0.01

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
