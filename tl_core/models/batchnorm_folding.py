"""Frozen batch norms folded into the convolutions before them, for the backbone's inference passes.

In eval mode a batch norm is a fixed scale and shift per channel. Right after a convolution,
that scale and shift can go into the convolution's own weights and bias, and the norm's pass
over the activations disappears. On a CPU the norms take about 30% of an EfficientNet's
inference time, so the passes that only run a frozen backbone (the head-only feature pass, the
frozen prefix of partial fine-tuning, the advisor's feature pass) run on a folded copy: the
default backbone's feature pass runs 1.5x as fast on a 2-core CPU (bench/batchnorm_folding.py).
The model that trains, saves and exports keeps its own layers and weights; the copy costs the
backbone's size in memory again while a pass runs.

Which convolution feeds which norm is read from one forward pass on a probe batch, not from the
order the layers were declared in: a pre-activation network declares its norm before the
convolution it normalises. The folded copy is kept only if it gives the original's output on
the probe; otherwise the original is used as it is.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import torch
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import nn

from tl_core.common import in_preferred_layout
from tl_core.models.freezing import in_eval_mode

# Exact types only: these use their weight as it is. A subclass may not (timm's ScaledStdConv2d
# standardises its weight on every call, which would undo the folded scale).
FOLDABLE_CONVS = (nn.Conv2d, Conv2dSame)
FOLDABLE_NORMS = (nn.BatchNorm2d, BatchNormAct2d)
# Folding only reorders float32 arithmetic: outputs agree to about 1e-6 of their scale.
RELATIVE_TOLERANCE = 1e-4

logger = logging.getLogger(__name__)

Pass = Callable[[nn.Module, torch.Tensor], Any]


def probe_images(
    module: nn.Module, image_size: int, device: torch.device, count: int = 1
) -> torch.Tensor:
    """``count`` random images of ``image_size`` (the same ones on every call), in the layout
    and dtype ``module`` runs on."""
    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, image_size, image_size, generator=generator, dtype=dtype)
    return in_preferred_layout(images.to(device), device)


@torch.no_grad()
def conv_norm_pairs(
    module: nn.Module, probe: torch.Tensor, run: Pass = nn.Module.__call__
) -> tuple[list[tuple[str, str]], Any]:
    """The (convolution, norm) pairs of ``module``, by name, where the norm's input is exactly
    the convolution's output in ``run(module, probe)``, and that pass's output. Layers called
    more than once (a shared layer) or a convolution that feeds several norms are left out."""
    names = {layer: name for name, layer in module.named_modules()}
    calls: dict[str, int] = {}
    conv_outputs: dict[int, str] = {}
    outputs_alive = []  # so that no output's id is reused by a later tensor during the pass
    fed: list[tuple[str, str]] = []

    def seen_conv(layer, args, output) -> None:
        name = names[layer]
        calls[name] = calls.get(name, 0) + 1
        conv_outputs[id(output)] = name
        outputs_alive.append(output)

    def seen_norm(layer, args, output) -> None:
        name = names[layer]
        calls[name] = calls.get(name, 0) + 1
        conv = conv_outputs.get(id(args[0])) if args else None
        if conv is not None:
            fed.append((conv, name))

    hooks = []
    for layer in module.modules():
        if type(layer) in FOLDABLE_CONVS:
            hooks.append(layer.register_forward_hook(seen_conv))
        elif type(layer) in FOLDABLE_NORMS and _is_fixed(layer):
            hooks.append(layer.register_forward_hook(seen_norm))
    try:
        output = run(module, probe)
    finally:
        for hook in hooks:
            hook.remove()
    convs = [conv for conv, _ in fed]
    pairs = [
        (conv, norm)
        for conv, norm in fed
        if calls[conv] == 1 and calls[norm] == 1 and convs.count(conv) == 1
    ]
    return pairs, output


def _is_fixed(norm: nn.BatchNorm2d) -> bool:
    """Whether the norm normalises by its stored statistics (eval mode), a fixed affine map."""
    return not norm.training and norm.running_mean is not None and norm.running_var is not None


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Moves ``norm``'s scale and shift into ``conv``'s weight and bias."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.affine:
        scale = scale * norm.weight
        shift = shift * norm.weight + norm.bias
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.weight.mul_(scale.to(conv.weight.dtype).reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)


def _without_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """What is left of a folded norm: timm's BatchNormAct2d keeps its dropout and activation."""
    if isinstance(norm, BatchNormAct2d):
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()


def _replace(module: nn.Module, name: str, replacement: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(module.get_submodule(parent), attribute, replacement)


@torch.no_grad()
def folded_copy(
    module: nn.Module, probe: torch.Tensor, run: Pass = nn.Module.__call__
) -> nn.Module:
    """A copy of ``module`` in eval mode, on its device, with each batch norm that directly
    follows a convolution folded into it; ``module`` itself where nothing folds or where the
    copy's output differs from what ``module`` gives in eval mode.

    Args:
        module: Run in eval mode, once, on ``probe`` (not at all if it has no batch norm).
        probe: A batch like those the copy will run on (one image is enough).
        run: The pass the copy is for, ``run(module, images)``: the module's call, or for
            instance ``features.pooled_features``.

    Only for inference passes: the copy computes what ``module`` computes in eval mode, its
    parameters do not train, and ``module`` is left as it was (its modes included).
    """
    if not any(type(layer) in FOLDABLE_NORMS for layer in module.modules()):
        return module  # nothing to fold (a ViT, a ConvNeXt): not even the probe pass
    with in_eval_mode(module):  # a head that trains meanwhile has dropout
        pairs, expected = conv_norm_pairs(module, probe, run)
        if not pairs:
            return module
        try:
            folded = _folded(module, pairs)
            got = run(folded, probe)
        except Exception:  # a speed-up never costs a run: the model runs as it is
            logger.info("Batch norms left unfolded: the copy could not be made", exc_info=True)
            return module
    if not _agree(expected, got):
        logger.info("Batch norms left unfolded: the folded copy's output differs")
        return module
    return folded


def _folded(module: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    folded = copy.deepcopy(module).requires_grad_(False)
    for conv, norm in pairs:
        _fold(folded.get_submodule(conv), folded.get_submodule(norm))
        _replace(folded, norm, _without_norm(folded.get_submodule(norm)))
    return folded.eval()


def _agree(expected, got) -> bool:
    if not isinstance(expected, torch.Tensor) or not isinstance(got, torch.Tensor):
        return False
    if expected.shape != got.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    tolerance = RELATIVE_TOLERANCE * max(scale, 1e-6)
    return bool((expected.float() - got.float()).abs().max() <= tolerance)
