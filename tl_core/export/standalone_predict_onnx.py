"""Classify images with a TL Studio ONNX export, without TL Studio: onnxruntime and pillow.

Shipped as ``predict_onnx.py`` in every run export (.zip), for the .onnx file that
``tl-studio export RUN --format onnx`` writes. The .onnx file carries the class names and the
preprocessing in its metadata (``labels.json``, ``preprocessing.json``), so it is all this
script needs. Its graph also returns the calibrated probabilities, the open-set score and
whether the image is "not one of my classes" (``open_set.json`` in the metadata says how);
an older export returns logits only, and then nothing is rejected. The preprocessing below is
timm's evaluation transform, step for step as torchvision does it on a PIL image: resize the
short side to ``resize_size`` (the long side scaled and truncated), centre-crop ``image_size``
(offsets rounded), scale to [0, 1]. The model normalises with the run's mean and std itself.

Usage:
    python predict_onnx.py model.onnx image.jpg [more.jpg ...] [--top-k 3] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime
from PIL import Image

# torchvision's names for PIL's resampling filters, as timm's configs use them.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """One image as the model takes it: float32 (3, S, S), RGB in [0, 1], resized and cropped."""
    image = image.convert("RGB")
    short_target, size = preprocessing["resize_size"], preprocessing["image_size"]
    width, height = image.size
    if width <= height:
        new_size = (short_target, int(short_target * height / width))
    else:
        new_size = (int(short_target * width / height), short_target)
    image = image.resize(new_size, RESAMPLING[preprocessing["interpolation"]])
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predict(model_file: str, images: list[str], top_k: int) -> dict[str, dict]:
    """For each image: its top classes ([[label, calibrated probability], ...], most probable
    first), whether it is "not one of my classes" (unknown) and its ood_score."""
    session = onnxruntime.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    labels = json.loads(metadata["labels.json"])
    preprocessing = json.loads(metadata["preprocessing.json"])
    input_name = session.get_inputs()[0].name
    results = {}
    for name in images:
        with Image.open(name) as image:
            batch = pixels(image, preprocessing)[None]
        outputs = session.run(None, {input_name: batch})
        tags = None
        if len(outputs) == 5:  # a multi-label run's: tags, the tags at their thresholds, last
            tags = [[labels[i], float(outputs[1][0][i])] for i in np.flatnonzero(outputs[4][0])]
            tags.sort(key=lambda pair: -pair[1])
        if len(outputs) >= 4:  # logits, probabilities, ood_score, unknown
            probabilities, score, unknown = outputs[1][0], float(outputs[2][0]), bool(outputs[3][0])
        else:
            probabilities, score, unknown = softmax(outputs[0])[0], None, False
        best = np.argsort(-probabilities, kind="stable")[: min(top_k, len(labels))]
        ranking = [[labels[i], float(probabilities[i])] for i in best]
        results[name] = {"predictions": ranking, "unknown": unknown, "ood_score": score}
        if tags is not None:
            results[name]["tags"] = tags
    return results


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
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=3, help="classes to show per image")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    results = predict(args.model, args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, result in results.items():
        print(f"{name}: {answer(result)}")


if __name__ == "__main__":
    main()
