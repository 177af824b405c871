"""Frozen, JSON-friendly settings for a training run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tl_core.common import TLStudioError
from tl_core.config.freeze import FreezeDepth

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
AUGMENT_CHOICES = ("auto", "none", "light", "strong")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Weighting the loss by class: "auto" weights it when the classes are imbalanced enough to
# matter (tl_core.training.class_weights says when), "on" always, "off" never.
CLASS_WEIGHTING_CHOICES = ("auto", "on", "off")
# The imbalance (largest class over smallest) from which "auto" weights the loss. Measured
# (bench/imbalance.py, digits, head only): at 2x weighting raised balanced accuracy by 2.7 points
# and the small classes' recall by 9; at 1x it changes nothing. The health report warns from
# 3x, so the remedy is on before the warning shows.
AUTO_CLASS_WEIGHTING_RATIO = 2.0

# Training modes: which layers train, and when. See tl_core.training.recipes for what each does.
FEATURE_EXTRACTION = "feature-extraction"
FINE_TUNE = "fine-tune"
FULL_FINE_TUNE = "full-fine-tune"
GRADUAL = "gradual"
MODES = (FEATURE_EXTRACTION, FINE_TUNE, FULL_FINE_TUNE, GRADUAL)
# The freeze setting a mode implies when none is given (fine-tuning the top groups needs one).
_MODE_FREEZE = {FEATURE_EXTRACTION: "all", FULL_FINE_TUNE: "none", GRADUAL: "none"}


def fixed_mode(depth: FreezeDepth) -> str:
    """The name of a fixed-freeze mode: what a freeze depth trains."""
    if depth.is_all:
        return FEATURE_EXTRACTION
    return FULL_FINE_TUNE if depth.groups == 0 else FINE_TUNE


def check_mode_freeze(mode: str | None, freeze: FreezeDepth | str | None) -> str:
    """The mode of a mode and freeze a person gave (either may be None), refusing a contradiction.

    ``TrainConfig`` names a fixed mode by its freeze setting (so that a freeze-depth sweep can
    vary it); a person who asks for full fine-tuning with three groups frozen is told instead.

    Raises:
        TLStudioError: ``mode`` implies another freeze setting than ``freeze``, or ``freeze``
            is not a freeze depth.
    """
    if mode is None:  # no mode asked for: the freeze setting names it, as before modes
        return FEATURE_EXTRACTION if freeze is None else fixed_mode(FreezeDepth.parse(freeze))
    if freeze is None or mode in (FINE_TUNE, GRADUAL):
        return mode
    implied = _MODE_FREEZE[mode]
    if fixed_mode(FreezeDepth.parse(freeze)) != mode:
        raise TLStudioError(
            f"Mode {mode} trains with freeze {implied!r}, not {str(freeze)!r}.",
            f"Leave out the freeze setting, or use mode {FINE_TUNE} to freeze some groups.",
        )
    return mode


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
        mode: How the backbone trains: "feature-extraction" (head only), "fine-tune" (the
            groups above ``freeze``), "full-fine-tune" (everything) or "gradual" (head first,
            then one more group from the top each stage, down to ``freeze``). For the three
            fixed modes ``freeze`` decides what trains and ``mode`` is its name, set from it,
            so ``replace(freeze=...)`` keeps the two in step.
        freeze: The freeze depth (``tl_core.config.freeze``), given as a ``FreezeDepth`` or
            as text and kept as its canonical text: "all" (train the head only: feature
            extraction), "none" (train everything) or the number of leading layer groups to
            freeze. None takes the mode's own ("all", "none", and "none" for gradual
            unfreezing: down to the input). ``depth`` gives it as a ``FreezeDepth``.
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Learning rate of the new head. Trainable backbone groups get rates spread
            geometrically below it, the lowest at ``lr * backbone_lr_scale``, so pretrained
            features near the input change least (fastai's discriminative rates).
        backbone_lr_scale: The lowest trainable group's share of ``lr`` (1 gives every group
            the head's rate).
        weight_decay: AdamW weight decay (never on biases and norm weights).
        warmup_epochs: Linear warm-up length before the cosine decay, capped at a quarter of
            the run (of each stage in gradual unfreezing) so short runs still train at speed.
        image_size: Input side in pixels; None uses the backbone's own default.
        val_fraction: Share of each class held out for validation.
        seed: Seeds the split, initialisation, shuffling and augmentation.
        augment: "none", "light", "strong", or "auto" (none when the backbone is fully frozen,
            so features can be cached; light otherwise).
        early_stopping_patience: Epochs without validation-loss improvement before stopping;
            0 disables early stopping.
        label_smoothing: Cross-entropy label smoothing.
        class_weighting: "auto", "on" or "off": weight each class's loss by the inverse of its
            share of the training images, so a small class counts as much as a big one.
            "auto" does so when the largest class is at least twice the smallest (see
            ``tl_core.training.class_weights``).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        num_workers: Data-loading worker processes; -1 picks a value for the device.
    """

    data: str
    val_data: str | None = None
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    pretrained: bool = True
    mode: str = FEATURE_EXTRACTION
    freeze: FreezeDepth | str | None = None
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
    class_weighting: str = "auto"
    device: str = "auto"
    num_workers: int = -1

    def __post_init__(self):
        problems = self._settle_mode()
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
        if self.class_weighting not in CLASS_WEIGHTING_CHOICES:
            problems.append(f"class weighting must be one of {', '.join(CLASS_WEIGHTING_CHOICES)}")
        if self.device not in DEVICE_CHOICES:
            problems.append(f"device must be one of {', '.join(DEVICE_CHOICES)}")
        if self.early_stopping_patience < 0:
            problems.append("early-stopping patience cannot be negative")
        if not 0 < self.backbone_lr_scale <= 1:
            problems.append("the lowest group's learning-rate share must be above 0 and at most 1")
        if not self.weight_decay >= 0:
            problems.append("weight decay cannot be negative")
        if not self.warmup_epochs >= 0:
            problems.append("warm-up epochs cannot be negative")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label smoothing must be from 0 up to (not including) 1")
        if problems:
            raise TLStudioError("Invalid training settings: " + "; ".join(problems) + ".")

    def _settle_mode(self) -> list[str]:
        """Fills in the freeze a mode implies and names fixed modes by their freeze.

        Returns:
            What is wrong with the pair, in words (empty when nothing is).
        """
        if self.mode not in MODES:
            return [f"mode must be one of {', '.join(MODES)}"]
        freeze = self.freeze if self.freeze is not None else _MODE_FREEZE.get(self.mode)
        if freeze is None:
            return ["fine-tuning the top groups needs a freeze depth (a number of groups)"]
        try:
            depth = FreezeDepth.parse(freeze)
        except TLStudioError:
            return ['freeze must be "all", "none" or a number of layer groups']
        object.__setattr__(self, "freeze", str(depth))  # frozen dataclass: settle once, here
        if self.mode != GRADUAL:
            object.__setattr__(self, "mode", fixed_mode(depth))
            return []
        problems = []
        if depth.is_all:
            problems.append("gradual unfreezing needs at least one backbone group to unfreeze")
        if self.epochs < 2:
            problems.append("gradual unfreezing needs at least 2 epochs (head first, then more)")
        return problems

    @property
    def depth(self) -> FreezeDepth:
        """The freeze depth (``freeze``, always settled to its text)."""
        return FreezeDepth.parse(self.freeze)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a config, ignoring keys this version does not know (older or newer runs)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
