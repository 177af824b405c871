"""Partial fine-tuning without rerunning the frozen layers: the model split at the freeze depth.

When the first K layer groups are frozen, every epoch sends each image through the same fixed
layers again. Split at the boundary of those groups, the model becomes ``prefix`` (frozen) and
``suffix`` (the rest, which trains). With augmentation off, the prefix maps each image to the
same tensor every epoch, so it runs once over the data and the epochs train only the suffix on
the stored outputs. With augmentation on, the prefix still runs every batch, but without
autograd.

A split is made only where it is exact: the model's ``forward_features`` must be its children
applied in order (checked on a batch, in eval mode), the frozen groups must be exactly the
parameters of a leading run of those children, and nothing in the prefix may behave
differently in training (a norm layer that updates its statistics, dropout, stochastic
depth). Elsewhere (a ViT adds position embeddings between modules) the whole model trains as
before.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from tl_core.common import in_preferred_layout
from tl_core.models import FreezeSummary, folded_copy, in_eval_mode, probe_images, set_train_mode

# Top-level children where timm's forward_head starts: the feature sequence ends before them.
HEAD_MODULES = ("global_pool", "head", "fc", "classifier", "fc_norm", "head_drop", "flatten")
# Prefix outputs beyond this many bytes go to a memory-mapped file instead of RAM.
MEMORY_BUDGET_BYTES = 1 << 30
_CHECK_SIZE = 64  # side of the random batch the split is checked on (fixed-size models: theirs)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixSplit:
    """A model cut after its frozen layer groups.

    Attributes:
        model: The whole model (its head and every parameter stay where they are).
        prefix: The frozen leading children, in forward order.
        rest: The feature children after them.
        folded_prefix: What runs the prefix: a copy with its batch norms folded into its
            convolutions (``tl_core.models.batchnorm_folding``), or None to run ``prefix`` itself.
    """

    model: nn.Module
    prefix: nn.Sequential
    rest: nn.Sequential
    folded_prefix: nn.Module | None = None

    @torch.no_grad()
    def run_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen layers' output; no autograd graph is kept for them."""
        return (self.prefix if self.folded_prefix is None else self.folded_prefix)(images)

    def suffix(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the prefix's output: the remaining feature layers, then the head."""
        return self.model.forward_head(self.rest(hidden))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits, with the frozen prefix run without autograd."""
        return self.suffix(self.run_prefix(images))


def feature_sequence(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children ``forward_features`` applies, in order, with Sequential containers opened
    one level (so a boundary can fall between ``blocks.2`` and ``blocks.3``)."""
    sequence = []
    for name, child in model.named_children():
        if name in HEAD_MODULES:
            break
        if isinstance(child, nn.Sequential):
            sequence += [(f"{name}.{sub}", module) for sub, module in child.named_children()]
        else:
            sequence.append((name, child))
    return sequence


def _param_names(prefix: str, module: nn.Module) -> set[str]:
    return {f"{prefix}.{name}" for name, _ in module.named_parameters()}


def _changes_in_training(module: nn.Module) -> bool:
    """Whether ``module`` computes differently in train mode (after ``set_train_mode``)."""
    if not module.training:
        return False
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return True  # updates its running statistics, normalises by the batch's
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
        return True
    return getattr(module, "drop_prob", 0) > 0  # timm's DropPath and DropBlock


def split_frozen_prefix(
    model: nn.Module, freeze: FreezeSummary, image_size: int
) -> tuple[PrefixSplit | None, str]:
    """Splits ``model`` after its frozen groups, where that is exact.

    Args:
        model: The frozen model (``apply_freeze`` done), on the CPU or its device.
        freeze: Which groups are frozen.
        image_size: Input side, for the check batch of fixed-size models.

    Returns:
        The split, or None, and a sentence saying why not (empty when split).
    """
    frozen = {name for g in freeze.groups[: freeze.frozen_count] for name in g.param_names}
    if not frozen or freeze.frozen_count >= freeze.num_backbone_groups:
        return None, "no or every backbone group is frozen"
    if not callable(getattr(model, "forward_head", None)):
        return None, "the model has no separate head"
    sequence = feature_sequence(model)
    seen: set[str] = set()
    cut = None
    for index, (name, module) in enumerate(sequence):
        seen |= _param_names(name, module)
        if seen == frozen:
            cut = index + 1  # the last such index keeps parameter-free layers (a pool) inside
        elif cut is not None or not seen <= frozen:
            break
    if cut is None:
        return None, "the frozen groups are not a leading run of the model's layers"
    prefix = nn.Sequential(*(module for _, module in sequence[:cut]))
    split = PrefixSplit(model, prefix, nn.Sequential(*(m for _, m in sequence[cut:])))
    if not _forward_matches(model, split, image_size):
        return None, "the model's forward pass is not its layers in order"
    was_training = model.training
    set_train_mode(model)
    changing = [m for m in prefix.modules() if _changes_in_training(m)]
    model.train(was_training)
    if changing:
        return None, f"a frozen layer ({type(changing[0]).__name__}) changes in training"
    probe = _check_images(model, image_size, count=1)
    return replace(split, folded_prefix=folded_copy(prefix, probe)), ""


def _check_images(model: nn.Module, image_size: int, count: int) -> torch.Tensor:
    """Random images to check on: small, except for models made for one input size."""
    fixed = model.pretrained_cfg.get("fixed_input_size")
    size = image_size if fixed else min(image_size, _CHECK_SIZE)
    return probe_images(model, size, next(model.parameters()).device, count)


@torch.no_grad()
def _forward_matches(model: nn.Module, split: PrefixSplit, image_size: int) -> bool:
    images = _check_images(model, image_size, count=2)
    with in_eval_mode(model):
        try:
            whole = model.forward_features(images)
            parts = split.rest(split.prefix(images))
        except Exception:  # a model whose children do not chain (shapes, extra arguments)
            return False
    return whole.shape == parts.shape and torch.allclose(whole, parts, rtol=1e-4, atol=1e-5)


class ActivationStore:
    """One tensor per image, in RAM within a budget, beyond it in a memory-mapped file.

    The file is unlinked as soon as it is mapped: the mapping lives as long as the tensor, and
    no file is left behind even when the process is killed.
    """

    def __init__(
        self,
        count: int,
        shape: Sequence[int],
        dtype: torch.dtype,
        budget_bytes: int | None = None,
        folder: str | None = None,
    ):
        numel = count * int(torch.Size(shape).numel())
        nbytes = numel * dtype.itemsize
        self.on_disk = nbytes > (MEMORY_BUDGET_BYTES if budget_bytes is None else budget_bytes)
        if not self.on_disk:
            self.tensor = torch.empty((count, *shape), dtype=dtype)
            return
        handle, path = tempfile.mkstemp(prefix="tl-studio-prefix-", suffix=".bin", dir=folder)
        try:
            os.ftruncate(handle, nbytes)
            flat = torch.from_file(path, shared=True, size=numel, dtype=dtype)
        finally:
            os.close(handle)
            os.unlink(path)
        self.tensor = flat.view(count, *shape)


@torch.no_grad()
def compute_prefix_outputs(
    split: PrefixSplit,
    loader,
    device: torch.device,
    autocast,
    on_batch: Callable[[int], None] | None = None,
    budget_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs the prefix over a loader in fixed order (the model in eval mode).

    Outputs beyond ``budget_bytes`` (default :data:`MEMORY_BUDGET_BYTES`) are kept in a
    memory-mapped file (see :class:`ActivationStore`).

    Returns:
        The outputs (on the CPU, in the dtype the prefix produced) and the labels.
    """
    split.model.eval()
    store = None
    labels = []
    start = 0
    total = len(loader.dataset)
    for images, targets in loader:
        images = in_preferred_layout(images.to(device, non_blocking=True), device)
        with autocast():
            hidden = split.run_prefix(images)
        if store is None:
            store = ActivationStore(total, hidden.shape[1:], hidden.dtype, budget_bytes)
            if store.on_disk:
                logger.info("Frozen layers' output kept in a memory-mapped file")
        store.tensor[start : start + len(hidden)] = hidden.cpu()
        start += len(hidden)
        labels.append(targets)
        if on_batch:
            on_batch(len(targets))
    if store is None:
        return torch.empty(0), torch.empty(0, dtype=torch.int64)
    return store.tensor, torch.cat(labels)
