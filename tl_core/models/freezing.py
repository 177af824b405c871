"""Freezing by layer groups: freezing a depth K freezes the first K groups
(``tl_core.models.grouping``); the head always trains. Also the train and eval modes that
keep frozen norm layers fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from tl_core.config import FreezeDepth
from tl_core.models.grouping import LayerGroup, layer_groups


@dataclass(frozen=True)
class FreezeSummary:
    """Which layer groups are frozen, and how many parameters train.

    Attributes:
        groups: All layer groups, head last.
        frozen_count: How many leading groups are frozen.
        trainable_params: Scalar parameters that will be trained.
        frozen_params: Scalar parameters held fixed.
    """

    groups: tuple[LayerGroup, ...]
    frozen_count: int
    trainable_params: int
    frozen_params: int

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.frozen_params

    @property
    def num_backbone_groups(self) -> int:
        return sum(not g.is_head for g in self.groups)

    def is_frozen(self, group: LayerGroup) -> bool:
        return group.index < self.frozen_count

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per group (index, name, params, frozen), input to head."""
        return [
            {"index": g.index, "name": g.name, "params": g.num_params, "frozen": self.is_frozen(g)}
            for g in self.groups
        ]


# Normalisation layers whose weights keep training in frozen groups when ``train_bn`` is set:
# the types fastai's ``norm_types`` lists (timm's LayerNorm2d subclasses nn.LayerNorm).
NORM_TYPES = (
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
    torch.nn.LayerNorm,
)


def norm_param_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters that belong to normalisation layers (see ``NORM_TYPES``)."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, module in model.named_modules()
        if isinstance(module, NORM_TYPES)
        for param_name, _ in module.named_parameters(recurse=False)
    }


def apply_freeze(
    model: torch.nn.Module, freeze: FreezeDepth | int | str, train_bn: bool = False
) -> FreezeSummary:
    """Freezes the first layer groups of ``model`` and unfreezes the rest.

    Args:
        model: A timm model.
        freeze: The freeze depth: a ``FreezeDepth``, or as given ("all", "none" or a number
            of leading groups).
        train_bn: Keep the normalisation layers of frozen groups trainable, as fastai's
            ``train_bn=True`` does: their statistics then adapt to the new images while the
            convolutions stay fixed.

    Returns:
        The resulting split of groups and parameter counts.
    """
    groups = layer_groups(model)
    num_backbone_groups = len(groups) - 1
    frozen_count = FreezeDepth.parse(freeze, num_backbone_groups).resolve(num_backbone_groups)
    frozen_names = {n for g in groups[:frozen_count] for n in g.param_names}
    if train_bn:
        frozen_names -= norm_param_names(model)
    trainable = frozen = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)
        if name in frozen_names:
            frozen += param.numel()
        else:
            trainable += param.numel()
    return FreezeSummary(tuple(groups), frozen_count, trainable, frozen)


def set_train_mode(model: torch.nn.Module) -> torch.nn.Module:
    """``model.train()``, except that fully frozen norm layers stay in eval mode.

    In train mode a batch-norm layer updates its running statistics even when its weights
    are frozen, which would shift the features a frozen backbone produces. Norm layers with
    parameters that all have ``requires_grad=False`` therefore keep using their stored
    statistics. Call it at the start of every training epoch, in place of ``model.train()``.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase):
            own = list(module.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                module.eval()
    return model


@contextmanager
def in_eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, BatchNorm statistics fixed), then every module's own mode back.

    Restoring module by module keeps mixed states intact, such as frozen BatchNorm layers kept
    in eval mode inside a model that is training (``set_train_mode``).
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
