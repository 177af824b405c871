"""Frozen, JSON-friendly settings for a training run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tl_core.errors import TLStudioError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
AUGMENT_CHOICES = ("auto", "none", "light", "strong")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained.

    Attributes:
        data: Folder or .zip of labelled images (one folder per class).
        val_data: Optional separate validation folder; when unset, ``val_fraction`` of ``data``
            is held out, stratified by class.
        backbone: Any timm model name.
        weights: Optional weights file (.safetensors or .pth) for the backbone.
        pretrained: False trains the same architecture from random initialisation (the
            baseline that shows what transfer buys).
        freeze: "all" (train the head only: feature extraction), "none" (train everything) or
            the number of leading layer groups to freeze, as a string.
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Learning rate of the new head; unfrozen backbone groups use
            ``lr * backbone_lr_scale`` so pretrained features change gently.
        backbone_lr_scale: See ``lr``.
        weight_decay: AdamW weight decay.
        warmup_epochs: Linear warm-up length before the cosine decay.
        image_size: Input side in pixels; None uses the backbone's own default.
        val_fraction: Share of each class held out for validation.
        seed: Seeds the split, initialisation, shuffling and augmentation.
        augment: "none", "light", "strong", or "auto" (none when the backbone is fully frozen,
            so features can be cached; light otherwise).
        early_stopping_patience: Epochs without validation-loss improvement before stopping;
            0 disables early stopping.
        label_smoothing: Cross-entropy label smoothing.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        num_workers: Data-loading worker processes; -1 picks a value for the device.
    """

    data: str
    val_data: str | None = None
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    pretrained: bool = True
    freeze: str = "all"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    image_size: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    augment: str = "auto"
    early_stopping_patience: int = 3
    label_smoothing: float = 0.0
    device: str = "auto"
    num_workers: int = -1

    def __post_init__(self):
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch size must be at least 1")
        if not self.lr > 0:
            problems.append("learning rate must be positive")
        if not 0 < self.val_fraction < 1:
            problems.append("validation fraction must be between 0 and 1")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            problems.append("image size must be between 32 and 1024 pixels")
        if self.augment not in AUGMENT_CHOICES:
            problems.append(f"augment must be one of {', '.join(AUGMENT_CHOICES)}")
        if self.device not in DEVICE_CHOICES:
            problems.append(f"device must be one of {', '.join(DEVICE_CHOICES)}")
        if self.early_stopping_patience < 0:
            problems.append("early-stopping patience cannot be negative")
        if self.freeze not in ("all", "none") and not str(self.freeze).isdigit():
            problems.append('freeze must be "all", "none" or a number of layer groups')
        if problems:
            raise TLStudioError("Invalid training settings: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a config, ignoring keys this version does not know (older or newer runs)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
