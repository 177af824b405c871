"""Draws TL Studio's built-in sample dataset: circles, squares and triangles.

Each image is one filled or outlined shape of random colour, size, rotation and position on a
varied background (gradients, noise, stripes, checks), on square and non-square canvases. A
pretrained backbone separates the classes easily, yet no two images are alike. The output is
deterministic for a given seed and Pillow build.

Usage:
    python assets/make_sample_dataset.py [--out assets/sample_dataset] [--per-class 30]
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle")
SUPERSAMPLE = 3  # Drawn larger, then downsampled: smooth edges without antialiasing support.
JPEG_QUALITY = 85

Color = tuple[int, int, int]


def random_color(rng: random.Random) -> Color:
    return tuple(rng.randrange(256) for _ in range(3))


def luminance(color: Color | np.ndarray) -> float:
    r, g, b = (float(c) for c in color)
    return 0.299 * r + 0.587 * g + 0.114 * b


def linear_gradient(w: int, h: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    a, b = np.array(random_color(rng), float), np.array(random_color(rng), float)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w]
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return a + (b - a) * t[..., None]


def radial_gradient(w: int, h: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    a, b = np.array(random_color(rng), float), np.array(random_color(rng), float)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    ys, xs = np.mgrid[0:h, 0:w]
    t = np.hypot(xs - cx, ys - cy)
    t = t / max(float(t.max()), 1e-6)
    return a + (b - a) * t[..., None]


def noise(w: int, h: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    base = np.array(random_color(rng), float)
    # Blurred noise reads as texture (paper, sand) rather than sensor grain.
    field = np_rng.normal(0, rng.uniform(25, 60), (h // 4 + 1, w // 4 + 1, 3))
    field = np.asarray(
        Image.fromarray(np.clip(field + 128, 0, 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC
        ),
        float,
    )
    return base + field - 128


def stripes(w: int, h: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    a, b = np.array(random_color(rng), float), np.array(random_color(rng), float)
    b = a + (b - a) * 0.35  # Low contrast, so stripes never compete with the shape's edges.
    period = rng.uniform(8, 24) * SUPERSAMPLE
    angle = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[0:h, 0:w]
    t = (np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period) + 1) / 2
    return a + (b - a) * t[..., None]


def checks(w: int, h: int, rng: random.Random, np_rng: np.random.Generator) -> np.ndarray:
    a, b = np.array(random_color(rng), float), np.array(random_color(rng), float)
    b = a + (b - a) * 0.3
    cell = int(rng.uniform(10, 28) * SUPERSAMPLE)
    ys, xs = np.mgrid[0:h, 0:w]
    t = ((xs // cell + ys // cell) % 2).astype(float)
    return a + (b - a) * t[..., None]


BACKGROUNDS: tuple[Callable[..., np.ndarray], ...] = (
    linear_gradient,
    radial_gradient,
    noise,
    stripes,
    checks,
)


def shape_polygon(
    kind: str, cx: float, cy: float, radius: float, rotation: float
) -> list[tuple[float, float]]:
    """Vertices of a square or triangle inscribed in a circle of ``radius``."""
    corners = 4 if kind == "square" else 3
    return [
        (
            cx + radius * math.cos(rotation + 2 * math.pi * k / corners),
            cy + radius * math.sin(rotation + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def draw_image(kind: str, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    """One sample image of class ``kind``."""
    side = rng.randint(96, 160)
    if rng.random() < 0.4:
        # Non-square canvases, landscape or portrait.
        w, h = side, int(side * rng.uniform(0.65, 0.9))
        if rng.random() < 0.5:
            w, h = h, w
    else:
        w = h = side
    big_w, big_h = w * SUPERSAMPLE, h * SUPERSAMPLE

    background = rng.choice(BACKGROUNDS)(big_w, big_h, rng, np_rng)
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))

    # A colour that stands out from the background's average brightness or hue.
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(100):
        color = random_color(rng)
        distance = float(np.linalg.norm(np.array(color, float) - mean))
        if abs(luminance(color) - luminance(mean)) > 60 or distance > 170:
            break

    short = min(big_w, big_h)
    # The polygon's circumradius; squares and triangles look smaller, so they get a bit more.
    radius = short * rng.uniform(0.2, 0.4) * (1.0 if kind == "circle" else 1.12)
    radius = min(radius, short * 0.45)
    cx = rng.uniform(radius, big_w - radius)
    cy = rng.uniform(radius, big_h - radius)
    outline_only = rng.random() < 0.25
    width = int(rng.uniform(0.08, 0.16) * radius)

    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if outline_only:
            draw.ellipse(box, outline=color, width=width)
        else:
            draw.ellipse(box, fill=color)
    else:
        points = shape_polygon(kind, cx, cy, radius, rng.uniform(0, 2 * math.pi))
        if outline_only:
            draw.polygon(points, outline=color, width=width)
        else:
            draw.polygon(points, fill=color)

    image = canvas.resize((w, h), Image.Resampling.LANCZOS)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    grain = np_rng.normal(0, rng.uniform(2, 8), (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image, float) + grain, 0, 255).astype(np.uint8))


def make_sample_dataset(out: Path, per_class: int = 30, seed: int = 0) -> list[Path]:
    """Writes ``per_class`` JPEGs per class under ``out/<class>/``, replacing earlier ones."""
    written = []
    for class_index, kind in enumerate(CLASSES):
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{kind}_*.jpg"):
            old.unlink()
        # One generator per class: changing one class's count leaves the others unchanged.
        rng = random.Random(seed * 1000 + class_index)
        np_rng = np.random.default_rng(seed * 1000 + class_index)
        for i in range(per_class):
            path = folder / f"{kind}_{i:03d}.jpg"
            draw_image(kind, rng, np_rng).save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "sample_dataset"
    )
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_sample_dataset(args.out, args.per_class, args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"Wrote {len(paths)} images ({total / 1024:.0f} KiB) to {args.out}")


if __name__ == "__main__":
    main()
