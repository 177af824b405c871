"""Classify images with an exported TL Studio run, without TL Studio: torch, timm and pillow.

Shipped as ``predict.py`` in every run export (.zip), beside model.safetensors, config.json and
labels.json. It builds the same timm network and the same evaluation transform (timm's
``create_transform`` with the run's image size, interpolation, crop_pct, mean and std), so it
gives the same classes and probabilities as the app.

Usage (in the unzipped folder):
    python predict.py image.jpg [more.jpg ...] [--top-k 3] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch
from PIL import Image
from safetensors.torch import load_file  # installed with timm
from timm.data import create_transform

HERE = Path(__file__).resolve().parent


def load_model(folder: Path) -> tuple[torch.nn.Module, list[str], object]:
    """The run's network in eval mode, its class names, and its evaluation transform."""
    config = json.loads((folder / "config.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    prep = config["model"]["preprocessing"]
    model = timm.create_model(
        config["model"]["backbone"], pretrained=False, num_classes=len(labels)
    )
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    transform = create_transform(
        input_size=(3, prep["image_size"], prep["image_size"]),
        is_training=False,
        interpolation=prep["interpolation"],
        mean=tuple(prep["mean"]),
        std=tuple(prep["std"]),
        crop_pct=prep["crop_pct"],
    )
    return model.eval(), labels, transform


@torch.no_grad()
def predict(folder: Path, images: list[str], top_k: int) -> dict[str, list[list]]:
    """{image: [[label, probability], ...] most probable first} for each image."""
    model, labels, transform = load_model(folder)
    results = {}
    for name in images:
        with Image.open(name) as image:
            batch = transform(image.convert("RGB")).unsqueeze(0)
        probabilities = model(batch).softmax(dim=1)[0]
        values, indices = probabilities.topk(min(top_k, len(labels)))
        results[name] = [
            [labels[i], float(v)] for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=3, help="classes to show per image")
    parser.add_argument("--model-dir", type=Path, default=HERE, help="the unzipped export")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    results = predict(args.model_dir, args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, ranking in results.items():
        print(f"{name}: " + ", ".join(f"{label} {p:.1%}" for label, p in ranking))


if __name__ == "__main__":
    main()
