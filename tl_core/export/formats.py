"""Model-file formats a run exports to: how each is written, and how its own runtime loads it.

Every format holds the same network: the run's model with the normalisation inside
(:class:`ExportedClassifier`), taking a float tensor (N, 3, S, S) of RGB pixels in [0, 1],
already resized and centre-cropped as the run's preprocessing says, and returning logits.
Every format also carries the class names and the preprocessing as JSON (:func:`model_metadata`),
so the file alone says what its outputs mean and how to prepare an image.

ONNX and .pt2 files also carry the run's calibration and open-set model inside their graph
(:class:`tl_core.inference.NetworkWithReliableHead`): they return four outputs, the logits first,
then the calibrated probabilities, the open-set score and the "not one of my classes" flag, and
describe them in a third JSON document, ``open_set.json``; so an export rejects the images
the app rejects. TorchScript (legacy) returns the logits only.

Formats:
    onnx         ONNX (opset 18), for ONNX Runtime and the many runtimes that load ONNX.
    pt2          ``torch.export`` program (``torch.export.save``/``load``): PyTorch's successor
                 to TorchScript.
    torchscript  Legacy: ``torch.jit.save``/``load`` are deprecated by PyTorch; kept for LibTorch
                 C++ programs (``torch::jit::load``) that cannot load the other two yet.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tl_core.inference import NetworkWithReliableHead
from tl_core.models import Preprocessing

# The JSON documents every format carries: class names, and how to prepare an image.
LABELS_METADATA = "labels.json"
PREPROCESSING_METADATA = "preprocessing.json"
OPEN_SET_METADATA = "open_set.json"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# ONNX Runtime has run opset 18 since 1.14 (2023); torch's ONNX exporter starts at 18.
ONNX_OPSET = 18
# torch.export specialises a dimension traced at size 0 or 1; an example batch of 2 keeps the
# batch dimension symbolic, so every export takes any batch size.
EXAMPLE_BATCH = 2

# Runs an exported file on a batch of [0, 1] pixels (N, 3, S, S) and returns its outputs, the
# logits (N, C) first (see :func:`output_list`).
Runner = Callable[[np.ndarray], list[np.ndarray]]


class ExportedClassifier(torch.nn.Module):
    """The run's network with its normalisation inside, and its class names and preprocessing
    as plain attributes (which TorchScript keeps as ``model.class_names``...).

    Args:
        model: The network (input: normalised images; output: logits).
        labels: Class names in output order.
        preprocessing: The run's preprocessing.
    """

    def __init__(
        self, model: torch.nn.Module, labels: list[str], preprocessing: Preprocessing
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.class_names = list(labels)
        self.image_size = int(preprocessing.image_size)
        self.resize_size = resize_size(preprocessing)
        self.interpolation = str(preprocessing.interpolation)
        self.crop_pct = float(preprocessing.crop_pct)

    def forward(self, images: torch.Tensor):
        # The logits, or with a reliable head the four OUTPUT_NAMES, logits first.
        return self.model((images - self.mean) / self.std)


def resize_size(preprocessing: Preprocessing) -> int:
    """The short side an image is resized to before the centre crop (timm's rule: floor)."""
    return int(preprocessing.image_size / preprocessing.crop_pct)


def output_list(outputs) -> list[np.ndarray]:
    """A model's outputs (one tensor or array, or a tuple of them) as a list of arrays."""
    if isinstance(outputs, list | tuple):
        return [np.asarray(output) for output in outputs]
    return [np.asarray(outputs)]


def model_metadata(
    labels: list[str], preprocessing: Preprocessing, network: torch.nn.Module | None = None
) -> dict[str, str]:
    """The JSON documents stored in every exported model: class names and preprocessing, and
    for a network with a reliable head what its four outputs are, with its temperature and
    threshold."""
    described = {
        **preprocessing.to_dict(),
        "resize_size": resize_size(preprocessing),
        "input": "float32 tensor (N, 3, image_size, image_size), RGB, values in [0, 1]: resize "
        "the short side to resize_size (interpolation), centre-crop image_size x image_size; "
        "the model normalises with mean and std itself",
        "output": "logits (N, number of classes); softmax gives probabilities; output i is "
        "labels[i]",
    }
    documents = {
        LABELS_METADATA: json.dumps(list(labels)),
        PREPROCESSING_METADATA: json.dumps(described, indent=2),
    }
    if isinstance(network, NetworkWithReliableHead) and network.head.multi_label:
        described["output"] = (
            "five outputs: logits (N, tags); probabilities (N, tags), each tag's sigmoid (not a "
            "softmax); ood_score (N,); unknown (N,); tags (N, tags), true where a tag's "
            "probability reaches its threshold (open_set.json's thresholds); output i of the "
            "logits, probabilities and tags is labels[i]"
        )
        documents[PREPROCESSING_METADATA] = json.dumps(described, indent=2)
        documents[OPEN_SET_METADATA] = json.dumps(network.describe(), indent=2)
    elif isinstance(network, NetworkWithReliableHead):
        described["output"] = (
            "four outputs: logits (N, classes); probabilities (N, classes), calibrated; "
            "ood_score (N,), how unlike the training images; unknown (N,), true for 'not one "
            "of my classes'; output i of the first two is labels[i]"
        )
        documents[PREPROCESSING_METADATA] = json.dumps(described, indent=2)
        documents[OPEN_SET_METADATA] = json.dumps(network.describe(), indent=2)
    return documents


def _example(preprocessing: Preprocessing) -> torch.Tensor:
    size = preprocessing.image_size
    return torch.rand(EXAMPLE_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))


def _batch_dimension() -> tuple[dict[int, torch.export.Dim]]:
    return ({0: torch.export.Dim("batch", min=1)},)


# ---- ONNX ---------------------------------------------------------------------------------------


def write_onnx(
    network: torch.nn.Module, labels: list[str], preprocessing: Preprocessing, path: Path
) -> None:
    """Exports with torch's own exporter (``dynamo=True``, through ``torch.export``).

    The legacy TorchScript-based exporter (``dynamo=False``) still works but warns that it will
    be removed; the new one needs onnxscript and gives the same graph on every run. Weights are
    kept inside the one .onnx file (no external ``.data`` file to lose), and the metadata goes
    into the model's ``metadata_props``, which ONNX Runtime reads as ``custom_metadata_map``.
    """
    reliable = isinstance(network, NetworkWithReliableHead)
    program = torch.onnx.export(
        ExportedClassifier(network, labels, preprocessing).eval(),
        (_example(preprocessing),),
        None,
        input_names=[INPUT_NAME],
        output_names=list(network.output_names) if reliable else [OUTPUT_NAME],
        opset_version=ONNX_OPSET,
        dynamo=True,
        dynamic_shapes=_batch_dimension(),
        verbose=False,
    )
    program.model.metadata_props.update(model_metadata(labels, preprocessing, network))
    program.model.doc_string = "TL Studio image classifier; see labels.json, preprocessing.json" + (
        ", open_set.json." if reliable else "."
    )
    program.save(str(path), external_data=False)


def load_onnx(path: Path) -> Runner:
    import onnxruntime  # deferred: only ONNX exports need it

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda pixels: session.run(None, {INPUT_NAME: pixels})


# ---- torch.export (.pt2) ------------------------------------------------------------------------


def write_pt2(
    network: torch.nn.Module, labels: list[str], preprocessing: Preprocessing, path: Path
) -> None:
    """``torch.export`` of the whole classifier; the metadata travels as the archive's extra
    files (``torch.export.load(path, extra_files={...})``)."""
    program = torch.export.export(
        ExportedClassifier(network, labels, preprocessing).eval(),
        (_example(preprocessing),),
        dynamic_shapes=_batch_dimension(),
        strict=False,
    )
    extra_files = model_metadata(labels, preprocessing, network)
    torch.export.save(program, str(path), extra_files=extra_files)


def load_pt2(path: Path) -> Runner:
    model = torch.export.load(str(path)).module()
    return _torch_runner(model)


# ---- TorchScript (legacy) -----------------------------------------------------------------------


def write_torchscript(
    network: torch.nn.Module, labels: list[str], preprocessing: Preprocessing, path: Path
) -> None:
    """The network is traced; a scripted wrapper adds the normalisation and keeps the class
    names and preprocessing as attributes; the metadata is also stored as extra files."""
    with warnings.catch_warnings():
        # Tracing warns about shape-dependent Python branches, fixed for one input size, and
        # TorchScript itself is deprecated: this format is kept for LibTorch C++ only.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(network, _example(preprocessing))
        scripted = torch.jit.script(ExportedClassifier(traced, labels, preprocessing).eval())
        extra = model_metadata(labels, preprocessing)
        torch.jit.save(scripted, str(path), _extra_files=extra)


def load_torchscript(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        model = torch.jit.load(str(path))
    return _torch_runner(model)


def _torch_runner(model) -> Runner:
    @torch.no_grad()
    def run(pixels: np.ndarray) -> list[np.ndarray]:
        return output_list(model(torch.from_numpy(pixels)))

    return run


# ---- the formats --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFormat:
    """One kind of exported model file.

    Attributes:
        name: As the CLI's ``--format`` takes it.
        title: As people call it.
        suffix: The file name's ending.
        loaded_by: What loads it, in words.
        write: Writes (network, labels, preprocessing) to a path, normalisation inside.
        load: Loads a written file with the format's own runtime, to check it.
        legacy: Kept for older programs only; not offered on the Export page.
        reliable: Carries the calibration and the open-set model (four outputs).
    """

    name: str
    title: str
    suffix: str
    loaded_by: str
    write: Callable[[torch.nn.Module, list[str], Preprocessing, Path], None]
    load: Callable[[Path], Runner]
    legacy: bool = False
    reliable: bool = True


MODEL_FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat(
            "onnx",
            "ONNX",
            ".onnx",
            "ONNX Runtime (Python, C++, C#, Java, JavaScript, mobile) and most inference servers",
            write_onnx,
            load_onnx,
        ),
        ModelFormat(
            "pt2",
            "torch.export (.pt2)",
            ".pt2",
            "PyTorch alone: torch.export.load (no timm, no TL Studio)",
            write_pt2,
            load_pt2,
        ),
        ModelFormat(
            "torchscript",
            "TorchScript (legacy)",
            ".pt",
            "LibTorch C++ (torch::jit::load); deprecated by PyTorch",
            write_torchscript,
            load_torchscript,
            legacy=True,
            reliable=False,
        ),
    )
}
