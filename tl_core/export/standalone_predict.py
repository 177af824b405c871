"""Classify images with an exported TL Studio run, without TL Studio: torch, timm and pillow.

Shipped as ``predict.py`` in every run export (.zip), beside model.safetensors, config.json and
labels.json. It builds the same timm network and the same evaluation transform (timm's
``create_transform`` with the run's image size, interpolation, crop_pct, mean and std), so it
gives the same classes and probabilities as the app: calibrated with the temperature in
calibration.json, and "not one of my classes" for an image whose pooled features are far from
those of the training images in open_set.safetensors (as far as the app's threshold says).

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
from safetensors import safe_open  # installed with timm
from safetensors.torch import load_file
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


def load_open_set(folder: Path) -> tuple[float, dict | None]:
    """The temperature (1 without calibration.json) and the open-set bank, k and threshold
    (None without open_set.safetensors: an older run, which rejects nothing)."""
    calibration = folder / "calibration.json"
    temperature = json.loads(calibration.read_text())["temperature"] if calibration.is_file() else 1
    stored = folder / "open_set.safetensors"
    if not stored.is_file():
        return float(temperature), None
    with safe_open(str(stored), framework="pt") as tensors:
        meta = tensors.metadata()
        bank = tensors.get_tensor("bank").float()
    threshold = float(meta["threshold"])
    return float(temperature), {"bank": bank, "k": int(meta["k"]), "threshold": threshold}


@torch.no_grad()
def predict(folder: Path, images: list[str], top_k: int) -> dict[str, dict]:
    """For each image: its top classes ([[label, calibrated probability], ...], most probable
    first), whether it is "not one of my classes" (unknown) and its ood_score."""
    model, labels, transform = load_model(folder)
    temperature, open_set = load_open_set(folder)
    thresholds = load_thresholds(folder, labels)
    results = {}
    for name in images:
        with Image.open(name) as image:
            batch = transform(image.convert("RGB")).unsqueeze(0)
        features = model.forward_head(model.forward_features(batch), pre_logits=True)
        logits = model.get_classifier()(features)
        if thresholds is None:
            probabilities = (logits / temperature).softmax(dim=1)[0]
        else:  # several tags: each its own sigmoid, present from its threshold on
            probabilities = logits.sigmoid()[0]
        values, indices = probabilities.topk(min(top_k, len(labels)))
        pairs = zip(values.tolist(), indices.tolist(), strict=True)
        ranking = [[labels[i], float(v)] for v, i in pairs]
        score = None
        if open_set is not None:  # 1 - cosine similarity to the k-th nearest training image
            similarity = torch.nn.functional.normalize(features, dim=1) @ open_set["bank"].T
            k = min(open_set["k"], similarity.shape[1])
            score = float(1.0 - similarity.topk(k, dim=1).values[0, -1])
        unknown = score is not None and score > open_set["threshold"]
        results[name] = {"predictions": ranking, "unknown": unknown, "ood_score": score}
        if thresholds is not None:
            present = [i for i, t in enumerate(thresholds) if float(probabilities[i]) >= t]
            tags = sorted(([labels[i], float(probabilities[i])] for i in present),
                          key=lambda pair: -pair[1])  # fmt: skip
            results[name]["tags"] = tags
    return results


def load_thresholds(folder: Path, labels: list[str]) -> list[float] | None:
    """A multi-label run's threshold of each tag (thresholds.json), or None for a run that gives
    one class per image."""
    config = json.loads((folder / "config.json").read_text())
    if config["model"].get("task") != "multi_label":
        return None
    stored = folder / "thresholds.json"
    chosen = json.loads(stored.read_text())["thresholds"] if stored.is_file() else {}
    return [float(chosen.get(label, 0.5)) for label in labels]


def answer(result: dict) -> str:
    """The answer in words: "brick 87.0%, wall 9.1%", or "Not one of my classes (closest: brick,
    31 %)"."""
    if result["unknown"]:
        label, probability = result["predictions"][0]
        return f"Not one of my classes (closest: {label}, {round(probability * 100)} %)"
    if "tags" in result:  # several tags per image
        return ", ".join(f"{label} {p:.1%}" for label, p in result["tags"]) or "no tag"
    return ", ".join(f"{label} {p:.1%}" for label, p in result["predictions"])


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
    for name, result in results.items():
        print(f"{name}: {answer(result)}")


if __name__ == "__main__":
    main()
