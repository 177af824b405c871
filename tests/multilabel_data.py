"""A generated multi-label dataset where the answer is known: each image shows a red circle, a
blue square, both or neither, drawn with PIL on a noisy grey background."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TAGS = ("circle", "square")


def shapes_image(tags: tuple[str, ...], seed: int, size: int = 32) -> Image.Image:
    """A blotchy grey image with a red circle on the left and/or a blue square on the right.

    The background's blotches differ with the seed, so no two images look like copies."""
    rng = np.random.default_rng(seed)
    blotches = Image.fromarray(rng.integers(60, 200, (4, 4), dtype=np.uint8)).resize(
        (size, size), Image.BILINEAR
    )
    grey = np.asarray(blotches, float)[..., None] + rng.normal(0, 8, (size, size, 3))
    image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    jitter = int(rng.integers(0, 3))
    if "circle" in tags:
        draw.ellipse((2 + jitter, 8, 14 + jitter, 20), fill=(220, 30, 30))
    if "square" in tags:
        draw.rectangle((18 - jitter, 10, 29 - jitter, 21), fill=(30, 40, 220))
    return image


def make_shapes_dataset(root: str | Path, per_kind: int = 6, seed: int = 0) -> Path:
    """Writes ``root/images/*.png`` and ``root/labels.csv``: ``per_kind`` images each of
    circle only, square only, both, and neither (an empty labels cell).

    Returns:
        ``root``.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    kinds = [("circle",), ("square",), ("circle", "square"), ()]
    rows = []
    for k, tags in enumerate(kinds):
        for i in range(per_kind):
            name = f"images/{'_'.join(tags) or 'none'}_{i}.png"
            shapes_image(tags, seed * 10_007 + k * 1000 + i).save(root / name)
            rows.append((name, ";".join(tags)))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "labels"])
        writer.writerows(rows)
    return root
