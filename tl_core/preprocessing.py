"""Image preprocessing derived from the backbone's timm config, never hand-written."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
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
