"""Checks of what a run folder says about its model, so a damaged or edited folder fails with
a sentence naming what is wrong instead of an error deep inside timm, torch or safetensors.

The JSON files are checked when a run is loaded; the weights when its model is built, since
only the architecture can tell which tensors it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.data.transforms import str_to_interp_mode

from tl_core.common import RunError, TLStudioError, plural
from tl_core.config import TrainConfig
from tl_core.models import Preprocessing, classifier_prefixes, is_classifier_key

DAMAGED_HINT = "Train the run again, or restore the folder from an export."
# Wide enough for every timm backbone's own input size, narrow enough to catch an edit.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 4096
MIN_CLASSES = 2  # training refuses fewer, so a run never has fewer


def damaged(what: str) -> RunError:
    """The error for a run folder whose files contradict themselves or cannot be read.

    Args:
        what: What exactly is wrong, naming the file, as the end of a sentence.
    """
    return RunError(f"This run folder is damaged or was edited: {what}.", DAMAGED_HINT)


def _kind(value: Any) -> str:
    """A JSON value's kind in words, for saying what was found instead."""
    names = {dict: "an object", list: "a list", str: "a text", bool: "true or false"}
    if value is None:
        return "null"
    if isinstance(value, Real) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        raise damaged(f"{what} is missing")
    if not isinstance(value, dict):
        raise damaged(f"{what} should be a JSON object but is {_kind(value)}")
    return value


def check_train_settings(config: Any) -> TrainConfig:
    """The training settings in config.json (its "train" object)."""
    train = _object(_object(config, "config.json").get("train"), 'config.json\'s "train"')
    try:
        return TrainConfig.from_dict(train)
    except TLStudioError as exc:
        what = exc.message.removeprefix("Invalid training settings: ").rstrip(".")
        raise damaged(f"config.json holds invalid training settings ({what})") from None
    except (TypeError, ValueError) as exc:  # a value of the wrong type, e.g. "epochs": "x"
        raise damaged(f"config.json holds a training setting of the wrong type ({exc})") from None


def check_model_info(config: Any) -> dict[str, Any]:
    """The model description in config.json (its "model" object), with a usable backbone name."""
    info = _object(_object(config, "config.json").get("model"), 'config.json\'s "model"')
    backbone = info.get("backbone")
    if not isinstance(backbone, str) or not backbone.strip():
        raise damaged(f"config.json should name the backbone, but its backbone is {backbone!r}")
    return info


def _channels(value: Any, name: str) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        found = f"{plural(len(value), 'value')}" if isinstance(value, list) else _kind(value)
        raise damaged(
            f"config.json's preprocessing {name} should hold 3 numbers (red, green, blue), "
            f"not {found}"
        )
    if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise damaged(f"config.json's preprocessing {name} {value} holds something not a number")
    return tuple(float(v) for v in value)


def check_preprocessing(info: Mapping[str, Any]) -> Preprocessing:
    """The preprocessing in config.json's "model" object, every value in a usable range."""
    data = _object(info.get("preprocessing"), "config.json's preprocessing")
    missing = [key for key in ("image_size", "mean", "std") if key not in data]
    if missing:
        raise damaged(f"config.json's preprocessing lacks {', '.join(missing)}")
    size = data["image_size"]
    if not isinstance(size, int) or isinstance(size, bool):
        raise damaged(f"config.json's image size {size!r} is not a whole number of pixels")
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise damaged(
            f"config.json's image size is {size} pixels; it must be from {MIN_IMAGE_SIZE} "
            f"to {MAX_IMAGE_SIZE}"
        )
    mean, std = _channels(data["mean"], "mean"), _channels(data["std"], "std")
    if min(std) <= 0:
        raise damaged(f"config.json's preprocessing std {list(std)} must be above 0")
    interpolation = data.get("interpolation", "bicubic")
    try:
        str_to_interp_mode(interpolation)
    except (KeyError, TypeError):
        raise damaged(
            f"config.json names an unknown resize interpolation {interpolation!r}"
        ) from None
    crop_pct = data.get("crop_pct", 0.875)
    # Any positive share works (timm's own configs go up to 1.15: the image is padded).
    if not isinstance(crop_pct, Real) or isinstance(crop_pct, bool) or not 0 < crop_pct < math.inf:
        raise damaged(f"config.json's crop_pct is {crop_pct!r}; it must be a number above 0")
    return Preprocessing(size, mean, std, interpolation, float(crop_pct))


def check_labels(labels: Any, info: Mapping[str, Any], multi_label: bool = False) -> list[str]:
    """labels.json: distinct class names, as many as config.json says the model has."""
    if not isinstance(labels, list):
        raise damaged(f"labels.json should be a list of class names but is {_kind(labels)}")
    # One tag is a yes/no model of its own (one sigmoid); one class is no model at all.
    fewest = 1 if multi_label else MIN_CLASSES
    if len(labels) < fewest:
        raise damaged(
            f"labels.json lists {plural(len(labels), 'class')}; a model has at least {fewest}"
        )
    odd = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if odd:
        raise damaged(f"labels.json holds {odd[0]!r}, which is not a class name")
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise damaged(f"labels.json names the class {twice[0]!r} more than once")
    expected = info.get("num_classes")
    if isinstance(expected, int) and expected != len(labels):
        raise damaged(
            f"labels.json lists {plural(len(labels), 'class')}, but config.json says the model "
            f"has {expected}"
        )
    return labels


def check_metrics(metrics: Any) -> dict[str, Any]:
    """metrics.json: an object whose history is a list of epochs."""
    metrics = _object(metrics, "metrics.json")
    if not isinstance(metrics.get("history", []), list):
        raise damaged("metrics.json's history should be a list of epochs")
    return metrics


def check_validation_split(split: Any, labels: list[str]) -> list[tuple[Path, str]]:
    """The validation images in split.json, as (path, class name) pairs of the run's classes."""
    pairs = _object(split, "split.json").get("val")
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        for pair in pairs
    ):
        raise damaged("split.json should list the validation images as [path, class] pairs")
    unknown = sorted({label for _, label in pairs} - set(labels))
    if unknown:
        raise damaged(
            f"split.json and labels.json disagree: split.json names the class "
            f"{unknown[0]!r}, which labels.json lacks"
        )
    return [(Path(path), label) for path, label in pairs]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a run's safetensors file.

    Raises:
        RunError: The file is cut short or is not a safetensors file.
    """
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise unreadable_weights(path, exc) from None


def unreadable_weights(path: Path, error: Exception) -> RunError:
    """The error for a weights file that safetensors cannot read."""
    return damaged(f"{path.name} is cut short or is not a safetensors file ({error})")


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a single number"


def check_weights_fit(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], labels: list[str], backbone: str
) -> None:
    """Checks that ``state`` has exactly the tensors ``model`` needs, in their shapes.

    Args:
        model: The run's architecture, built for ``len(labels)`` classes.
        state: The tensors read from the run's weights file.
        labels: The run's class names.
        backbone: The backbone config.json names, for the message.

    Raises:
        RunError: A tensor is missing, extra or of the wrong shape; a classifier head with a
            different number of outputs than labels.json has classes is named as such.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{plural(len(missing), 'tensor')} missing (first: {missing[0]})")
        if extra:
            parts.append(f"{plural(len(extra), 'tensor')} it has no place for (first: {extra[0]})")
        raise damaged(
            f"the weights in model.safetensors do not fit the backbone {backbone} named in "
            f"config.json: {', '.join(parts)}"
        )
    wrong = [key for key in expected if state[key].shape != expected[key].shape]
    if not wrong:
        return
    # Only the head's number of outputs differs: the weights were trained for other classes.
    head = classifier_prefixes(model)
    outputs = {state[key].shape[0] for key in wrong if state[key].dim() >= 1}
    if len(outputs) == 1 and all(
        is_classifier_key(key, head) and state[key].shape[1:] == expected[key].shape[1:]
        for key in wrong
    ):
        raise damaged(
            f"labels.json lists {plural(len(labels), 'class')}, but the model's head in "
            f"model.safetensors has {plural(outputs.pop(), 'output')}"
        )
    first = wrong[0]
    raise damaged(
        f"the weights in model.safetensors do not fit the backbone {backbone} named in "
        f"config.json: {plural(len(wrong), 'tensor')} of the wrong shape (first: {first} is "
        f"{_shape(state[first])}, the model needs {_shape(expected[first])})"
    )
