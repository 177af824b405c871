"""Saliency maps: which part of an image drove a prediction (Grad-CAM).

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the backbone's last feature map by the
mean gradient of a class score with respect to it, sums the weighted channels and keeps the
positive part: the regions whose features raised that score. It needs nothing but timm's
``forward_features``/``forward_head`` split, so it works across architectures:

- convolutional networks (EfficientNet, MobileNet, ResNet, ConvNeXt, ...) give an NCHW map
  (NHWC where the model says so through ``output_fmt``, as Swin does);
- vision transformers give tokens; the patch tokens are laid back on their square grid.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from tl_core.common import TLStudioError
from tl_core.models import in_eval_mode

# Matplotlib's "inferno" at 11 evenly spaced points: perceptually uniform, readable in greyscale
# and by colour-blind viewers. Interpolating between them is indistinguishable from the full map.
INFERNO = np.array(
    [
        (0, 0, 4),
        (22, 11, 57),
        (66, 10, 104),
        (106, 23, 110),
        (147, 38, 103),
        (188, 55, 84),
        (221, 81, 58),
        (243, 120, 25),
        (252, 165, 10),
        (246, 215, 70),
        (252, 255, 164),
    ],
    dtype=np.float32,
)


def saliency_map(
    model: torch.nn.Module, image_tensor: torch.Tensor, target_index: int | None = None
) -> np.ndarray:
    """Grad-CAM heatmap of one preprocessed image for one class.

    The model is run in eval mode and left exactly as it was found: the train/eval mode of every
    module, ``requires_grad`` of every parameter, and no ``.grad`` left on any parameter. Works
    inside ``torch.no_grad()`` too.

    Args:
        model: A timm classifier (with ``forward_features`` and ``forward_head``).
        image_tensor: One normalised image, shape (3, H, W), as the model's eval transform gives.
        target_index: The class whose score is explained; None explains the predicted class.

    Returns:
        A float32 array of shape (H, W) in [0, 1], stretched so that the strongest evidence for
        the class is 1 and the weakest 0. All zeros if nothing in the image raises the score.

    Raises:
        TLStudioError: The backbone's features are not a spatial map or a square token grid.
    """
    heatmap, _ = grad_cam(model, image_tensor, target_index)
    return heatmap


def grad_cam(
    model: torch.nn.Module, image_tensor: torch.Tensor, target_index: int | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """``saliency_map``, plus the image's logits (shape (num_classes,), float32 on the CPU)."""
    if image_tensor.ndim != 3 or image_tensor.shape[0] != 3:
        raise ValueError(f"expected one (3, H, W) image, got shape {tuple(image_tensor.shape)}")
    parameter = next(model.parameters())
    # A fresh leaf that requires grad puts the features in the graph even when every parameter
    # is frozen, without touching the parameters' own flags.
    x = image_tensor.detach().to(parameter.device, parameter.dtype).unsqueeze(0)
    x.requires_grad_(True)
    with torch.enable_grad(), in_eval_mode(model), _last_block_input(model) as block_input:
        features = model.forward_features(x)
        logits = model.forward_head(features)[0]
        index = int(logits.argmax()) if target_index is None else int(target_index)
        if not 0 <= index < logits.shape[0]:
            raise ValueError(f"target_index {index} is outside 0..{logits.shape[0] - 1}")
        activations, as_map = _gradient_source(model, features, block_input)
        # autograd.grad computes only this gradient and stores nothing in any parameter's .grad.
        (gradient,) = torch.autograd.grad(logits[index], activations)
    with torch.no_grad():
        feature_map, gradient = as_map(activations.detach()).float(), as_map(gradient).float()
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        heatmap = _normalise(cam).cpu().numpy().astype(np.float32)
    return heatmap, logits.detach().float().cpu()


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blends a heatmap, coloured with the inferno map, over an image.

    Cold regions come out darker and violet, hot ones bright yellow, so the eye goes to where the
    evidence is while the whole image stays visible under it.

    Args:
        image: The image the heatmap was computed on (any mode; the result is RGB).
        heatmap: Values in [0, 1], of any shape: it is resized to the image.
        alpha: Opacity of the colours (0 shows only the image, 1 only the heatmap).

    Returns:
        An RGB image of the same size as ``image``.
    """
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    heat = Image.fromarray(np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0))
    heat = heat.resize((base.shape[1], base.shape[0]), Image.Resampling.BILINEAR)
    blended = (1.0 - alpha) * base + alpha * colourise(np.asarray(heat, dtype=np.float32))
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """RGB colours (float32, 0-255, shape (..., 3)) of values in [0, 1] on the inferno map."""
    positions = np.linspace(0.0, 1.0, len(INFERNO))
    values = np.clip(heatmap, 0.0, 1.0)
    return np.stack(
        [np.interp(values, positions, INFERNO[:, channel]) for channel in range(3)], axis=-1
    ).astype(np.float32)


def split_eval_transform(
    transform: transforms.Compose,
) -> tuple[Callable[[Image.Image], Image.Image], Callable[[Image.Image], torch.Tensor]]:
    """Splits an eval transform where the image becomes a tensor.

    Returns:
        The image steps (resize the short side, centre-crop: what the model sees, as a picture)
        and the tensor steps (to tensor, normalise). Chained, they are ``transform`` itself, so
        a heatmap computed through them lines up with the picture pixel for pixel.

    Raises:
        ValueError: ``transform`` is not a Compose with a to-tensor step.
    """
    steps = list(getattr(transform, "transforms", []))
    for index, step in enumerate(steps):
        if isinstance(step, transforms.ToTensor | transforms.PILToTensor):
            return transforms.Compose(steps[:index]), transforms.Compose(steps[index:])
    raise ValueError(f"cannot find where {transform!r} turns the image into a tensor")


def explain_image(
    model: torch.nn.Module,
    transform: transforms.Compose,
    image: Image.Image,
    target_index: int | None = None,
) -> tuple[Image.Image, int, float]:
    """Grad-CAM overlay of one image, drawn on the model's own (resized, cropped) view of it.

    Args:
        model: A timm classifier.
        transform: Its eval transform (see ``split_eval_transform``).
        image: The image as given by the user, any size.
        target_index: The class to explain; None explains the predicted class.

    Returns:
        The overlay (the size of the model's input), the class index explained and that class's
        probability.
    """
    view_steps, tensor_steps = split_eval_transform(transform)
    view = view_steps(image.convert("RGB"))
    heatmap, logits = grad_cam(model, tensor_steps(view), target_index)
    index = int(logits.argmax()) if target_index is None else int(target_index)
    return overlay(view, heatmap), index, float(logits.softmax(dim=0)[index])


# ---- internals ---------------------------------------------------------------------------------


@contextmanager
def _last_block_input(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Captures the tokens entering a transformer's last block, if the model has ``blocks``.

    With class-token pooling the last block's output patch tokens never reach the logits (their
    gradient is zero); before the last block's attention they do, which is where Grad-CAM on
    vision transformers looks.
    """
    captured: list[torch.Tensor] = []
    blocks = getattr(model, "blocks", None)
    handle = None
    # A model shared by the app's sessions may run in another thread meanwhile: keep only ours.
    owner = threading.get_ident()

    def capture(_module: torch.nn.Module, args: tuple) -> None:
        if args and threading.get_ident() == owner:
            captured.append(args[0])

    if isinstance(blocks, torch.nn.Sequential | torch.nn.ModuleList) and len(blocks):
        handle = blocks[-1].register_forward_pre_hook(capture)
    try:
        yield captured
    finally:
        if handle is not None:
            handle.remove()


def _gradient_source(
    model: torch.nn.Module, features: torch.Tensor, block_input: list[torch.Tensor]
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The activations to take gradients at, and how to lay them out as an NCHW map.

    The gradient must be taken at a tensor the logits were computed from, so reshaping comes
    after, applied alike to the activations and to their gradient.
    """
    if features.ndim == 4:
        if str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC"):
            return features, lambda t: t.permute(0, 3, 1, 2)
        return features, lambda t: t
    if features.ndim == 3:
        tokens = block_input[-1] if block_input and block_input[-1].ndim == 3 else features
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        side = math.isqrt(max(tokens.shape[1] - prefix, 0))
        if side > 0 and side * side == tokens.shape[1] - prefix:
            return tokens, lambda t: t[:, prefix:].transpose(1, 2).reshape(1, -1, side, side)
    name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
    raise TLStudioError(
        f"Saliency maps are not available for the {name} backbone: its features are not a "
        f"spatial map or a square grid of patches (got shape {tuple(features.shape)}).",
        "Predictions still work; choose a convolutional backbone or a ViT to see saliency.",
    )


def _normalise(cam: torch.Tensor) -> torch.Tensor:
    """Stretches a non-negative map to [0, 1]; a flat map is all ones (or all zeros if 0)."""
    low, high = float(cam.min()), float(cam.max())
    if high <= 0:
        return torch.zeros_like(cam)
    if high - low <= 1e-6 * high:
        return torch.ones_like(cam)
    return (cam - low) / (high - low)
