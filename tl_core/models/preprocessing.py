"""Image preprocessing derived from the backbone's timm config, never hand-written."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

AUGMENT_LEVELS = ("none", "light", "strong")


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input, saved with every run so exports reproduce it."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def for_model(cls, model: torch.nn.Module, image_size: int | None = None) -> Preprocessing:
        """Reads the model's pretrained config; ``image_size`` overrides its input size."""
        cfg = resolve_data_config({}, model=model)
        size = int(image_size or cfg["input_size"][-1])
        return cls(
            image_size=size,
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bicubic"),
            crop_pct=float(data.get("crop_pct", 0.875)),
        )

    def eval_transform(self):
        """Resize the short side and centre-crop, so non-square images keep their proportions."""
        return create_transform(
            input_size=(3, self.image_size, self.image_size),
            is_training=False,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
            crop_pct=self.crop_pct,
        )

    def train_transform(self, augment: str):
        """Training transform for an augmentation level ("none" is the eval transform)."""
        if augment not in AUGMENT_LEVELS:
            raise ValueError(f"unknown augmentation level {augment!r}")
        if augment == "none":
            return self.eval_transform()
        strong = augment == "strong"
        return create_transform(
            input_size=(3, self.image_size, self.image_size),
            is_training=True,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
            # light: gentle crops and flips; strong: wider crops, colour jitter, RandAugment.
            scale=(0.5, 1.0) if strong else (0.8, 1.0),
            hflip=0.5,
            color_jitter=0.3 if strong else None,
            auto_augment="rand-m7-mstd0.5" if strong else None,
            re_prob=0.1 if strong else 0.0,
        )

    def to_display(self, tensor: torch.Tensor) -> np.ndarray:
        """A normalised CHW tensor back to an RGB uint8 HWC array, as a person would see it."""
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        pixels = (tensor.float() * std + mean).clamp(0, 1)
        return (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def augmentation_preview(
    preprocessing: Preprocessing,
    images: Sequence[Image.Image],
    levels: Sequence[str] = AUGMENT_LEVELS,
    seed: int = 0,
) -> dict[str, list[np.ndarray]]:
    """What each augmentation level makes of ``images``: the trainer's own transforms, undone
    only as far as normalisation, so a person sees what the model is shown.

    Args:
        preprocessing: The model's preprocessing.
        images: RGB images.
        levels: Augmentation levels to show.
        seed: Picks the random crops, flips and colour changes; another seed, other samples.
            The global random state is left as it was.

    Returns:
        For each level, one array per image.
    """
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            torch.manual_seed(seed)
            preview = {}
            for level in levels:
                transform = preprocessing.train_transform(level)
                preview[level] = [preprocessing.to_display(transform(image)) for image in images]
            return preview
    finally:
        random.setstate(state)
