"""Exports of a trained run: a portable .zip of the run and a TorchScript model."""

from __future__ import annotations

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
cropped image scaled to [0, 1] and does the normalisation itself:
  model = torch.jit.load("model.pt")
  logits = model(images)  # images: float tensor (N, 3, {size}, {size}) in [0, 1]
"""


class NormalizedModel(torch.nn.Module):
    """Puts the run's normalisation inside the model, so callers need only resize and crop."""

    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def export_torchscript(run: Run | str | Path, out_file: str | Path) -> Path:
    """Traces the run's model (with normalisation inside) to a TorchScript file.

    The traced model takes a float tensor (N, 3, S, S) with values in [0, 1], already resized
    and cropped as the run's preprocessing says, and returns logits.
    """
    run = as_run(run)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    prep = run.preprocessing
    wrapped = NormalizedModel(run.build_model("cpu"), prep.mean, prep.std).eval()
    example = torch.rand(1, 3, prep.image_size, prep.image_size)
    with warnings.catch_warnings():
        # Tracing warns about shape-dependent Python branches, which are fixed for one size,
        # and that TorchScript is deprecated: it is still what most deployment tools load.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(wrapped, example)
    atomic_write(out_file, lambda tmp: traced.save(str(tmp)))
    return out_file


def how_to_load_text(run: Run) -> str:
    prep = run.preprocessing
    return HOW_TO_LOAD.format(
        name=run.path.name,
        backbone=run.backbone,
        num_classes=len(run.labels),
        labels=", ".join(run.labels),
        resize=int(prep.image_size / prep.crop_pct),
        size=prep.image_size,
        interpolation=prep.interpolation,
        mean=tuple(round(v, 4) for v in prep.mean),
        std=tuple(round(v, 4) for v in prep.std),
    )


def export_zip(run: Run | str | Path, out_file: str | Path) -> Path:
    """Packs weights, config, labels, metrics and HOW_TO_LOAD.txt into one .zip file."""
    run = as_run(run)
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
