"""Exports of a trained run: a portable .zip of the run and a TorchScript model.

Both carry the class names and the preprocessing, so whoever holds only the exported file
knows what its outputs mean and how to prepare an image.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch

from tl_core.runs import (
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    Run,
    as_run,
    atomic_write,
)

# The JSON files stored inside a TorchScript export (its zip's ``extra/`` folder).
TORCHSCRIPT_LABELS = "labels.json"
TORCHSCRIPT_PREPROCESSING = "preprocessing.json"

HOW_TO_LOAD = """\
TL Studio model: {name}
Backbone: {backbone} ({num_classes} classes: {labels})

Files
  model.safetensors  the trained weights (timm architecture "{backbone}")
  config.json        training settings and preprocessing
  labels.json        class names, in the order of the model's outputs
  metrics.json       per-epoch loss and accuracy

Preprocessing
  RGB image, resize the short side to {resize} px ({interpolation}), centre-crop {size}x{size},
  scale to [0, 1], normalise with mean {mean} and std {std}.

Predict with the command line (unzip first):
  tl-studio predict path/to/unzipped_folder image.jpg --top-k 3

Load in Python with timm:
  import json, timm, torch
  from safetensors.torch import load_file
  labels = json.load(open("labels.json"))
  model = timm.create_model("{backbone}", pretrained=False, num_classes=len(labels))
  model.load_state_dict(load_file("model.safetensors"))
  model.eval()

A TorchScript export (tl-studio export RUN --format torchscript --out model.pt) takes the
cropped image scaled to [0, 1] and does the normalisation itself. It carries the class names
and the preprocessing, so the .pt file alone is enough:
  model = torch.jit.load("model.pt")
  logits = model(images)  # images: float tensor (N, 3, {size}, {size}) in [0, 1]
  model.class_names       # {labels_list}: output i is class_names[i]
  model.image_size, model.resize_size, model.interpolation, model.crop_pct
  model.mean, model.std   # used inside; for reference
The same as JSON, readable without running the model (the .pt file is a zip; they are also
under its extra/ folder):
  extra = {{"labels.json": "", "preprocessing.json": ""}}
  model = torch.jit.load("model.pt", _extra_files=extra)
  labels = json.loads(extra["labels.json"])
"""


class ExportedClassifier(torch.nn.Module):
    """A traced model with the run's normalisation inside, and its class names and
    preprocessing as attributes that TorchScript keeps.

    Args:
        model: The traced network (input: normalised images; output: logits).
        labels: Class names in output order.
        preprocessing: The run's preprocessing.
    """

    def __init__(self, model: torch.nn.Module, labels: list[str], preprocessing) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        # Plain attributes: scripting infers their types (list of str, int, str, float).
        self.class_names = list(labels)
        self.image_size = int(preprocessing.image_size)
        self.resize_size = resize_size(preprocessing)
        self.interpolation = str(preprocessing.interpolation)
        self.crop_pct = float(preprocessing.crop_pct)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def resize_size(preprocessing) -> int:
    """The short side an image is resized to before the centre crop (timm's rule)."""
    return int(preprocessing.image_size / preprocessing.crop_pct)


def torchscript_metadata(run: Run) -> dict[str, str]:
    """The JSON files stored inside a TorchScript export: class names and preprocessing."""
    prep = run.preprocessing
    preprocessing = {
        **prep.to_dict(),
        "resize_size": resize_size(prep),
        "input": "float tensor (N, 3, image_size, image_size), RGB, values in [0, 1]; "
        "resize the short side to resize_size, centre-crop image_size; the model normalises "
        "with mean and std itself",
    }
    return {
        TORCHSCRIPT_LABELS: json.dumps(list(run.labels)),
        TORCHSCRIPT_PREPROCESSING: json.dumps(preprocessing, indent=2),
    }


def export_torchscript(run: Run | str | Path, out_file: str | Path) -> Path:
    """Writes the run's model (normalisation inside) as a TorchScript file.

    The network is traced; a scripted wrapper adds the normalisation and keeps the class
    names and preprocessing as attributes (``model.class_names``...). They are also stored as
    JSON files inside the .pt (``torch.jit.load(..., _extra_files=...)``). The model takes a
    float tensor (N, 3, S, S) with values in [0, 1], already resized and cropped as the run's
    preprocessing says, and returns logits.
    """
    run = as_run(run)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    prep = run.preprocessing
    example = torch.rand(1, 3, prep.image_size, prep.image_size)
    with warnings.catch_warnings():
        # Tracing warns about shape-dependent Python branches, which are fixed for one size,
        # and that TorchScript is deprecated: it is still what most deployment tools load.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(run.build_model("cpu"), example)
        scripted = torch.jit.script(ExportedClassifier(traced, run.labels, prep).eval())
        extra = torchscript_metadata(run)
        atomic_write(out_file, lambda tmp: torch.jit.save(scripted, str(tmp), _extra_files=extra))
    return out_file


def how_to_load_text(run: Run) -> str:
    prep = run.preprocessing
    return HOW_TO_LOAD.format(
        name=run.path.name,
        backbone=run.backbone,
        num_classes=len(run.labels),
        labels=", ".join(run.labels),
        labels_list=list(run.labels),
        resize=resize_size(prep),
        size=prep.image_size,
        interpolation=prep.interpolation,
        mean=tuple(round(v, 4) for v in prep.mean),
        std=tuple(round(v, 4) for v in prep.std),
    )


def export_zip(run: Run | str | Path, out_file: str | Path) -> Path:
    """Packs weights, config, labels, metrics and HOW_TO_LOAD.txt into one .zip file.

    Raises:
        RunError: The run folder is damaged or was edited: its model cannot be built.
    """
    run = as_run(run)
    run.build_model("cpu")  # an export must load the first time: never pack weights that don't
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in (WEIGHTS_FILE, CONFIG_FILE, LABELS_FILE, METRICS_FILE):
                if (run.path / name).is_file():
                    archive.write(run.path / name, arcname=name)
            archive.writestr("HOW_TO_LOAD.txt", how_to_load_text(run))

    atomic_write(out_file, write)
    return out_file
