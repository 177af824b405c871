"""Training modes and their stages: which layer groups train, and for how many epochs.

Four modes, named choices for a domain expert rather than knobs:

- feature extraction: only the new head trains, on backbone features computed once;
- fine-tune the top groups: the groups above a freeze depth train with the head;
- full fine-tune: every layer trains;
- gradual unfreezing (ULMFiT, Howard & Ruder 2018; fastai's ``freeze_to``): the head trains
  first, then each stage unfreezes more groups from the top, with a fresh schedule and fresh
  optimiser state, and with the normalisation layers of frozen groups training throughout
  (fastai's ``train_bn``).

The fixed modes are one stage; gradual unfreezing is several. The trainer runs the stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from tl_core.common import TLStudioError, plural
from tl_core.config import (
    FEATURE_EXTRACTION,
    FINE_TUNE,
    FULL_FINE_TUNE,
    GRADUAL,
    MODES,
    TrainConfig,
    frozen_words,
)

MODE_LABELS = {
    FEATURE_EXTRACTION: "Feature extraction (head only)",
    FINE_TUNE: "Fine-tune the top groups",
    FULL_FINE_TUNE: "Full fine-tune",
    GRADUAL: "Gradual unfreezing",
}
# When to pick each mode, in one sentence (Yosinski et al. 2014; Kornblith et al. 2019).
MODE_ADVICE = {
    FEATURE_EXTRACTION: "Little data and images like ImageNet's photos: train only the new "
    "head on features computed once, in seconds.",
    FINE_TUNE: "More data, or images somewhat unlike ImageNet's: let the top groups adapt "
    "while the general features near the input stay fixed.",
    FULL_FINE_TUNE: "Plenty of data or a distant domain (medical, satellite, microscope "
    "images): every layer adapts, at rates that shrink toward the input.",
    GRADUAL: "A distant domain with little data: train the head first, then unfreeze one "
    "group more from the top each stage, so new layers never wreck pretrained ones.",
}
assert set(MODE_LABELS) == set(MODE_ADVICE) == set(MODES)


@dataclass(frozen=True)
class Stage:
    """One stage of training: a freeze depth held for some epochs with its own schedule.

    Attributes:
        number: 1 for the first stage.
        frozen_groups: How many leading layer groups are frozen during the stage.
        epochs: How many epochs it lasts.
        train_bn: Whether the normalisation layers of frozen groups train.
    """

    number: int
    frozen_groups: int
    epochs: int
    train_bn: bool = False


def training_stages(config: TrainConfig, num_backbone_groups: int) -> list[Stage]:
    """The stages ``config`` trains in, for a backbone with ``num_backbone_groups`` groups.

    Gradual unfreezing starts with the head alone and ends at the config's freeze depth,
    unfreezing one group per stage, with one epoch per stage and the rest of the epochs in
    the last (ULMFiT: "until convergence at the last iteration"). With fewer epochs than
    groups to unfreeze, each stage unfreezes several groups, spaced evenly.

    Raises:
        TLStudioError: The freeze depth does not fit the backbone, or gradual unfreezing
            would have nothing to unfreeze.
    """
    target = config.depth.resolve(num_backbone_groups)
    if config.mode != GRADUAL:
        return [Stage(1, target, config.epochs)]
    if target >= num_backbone_groups:
        raise TLStudioError(
            "Gradual unfreezing has nothing to unfreeze: every backbone group stays frozen.",
            "Unfreeze down to fewer groups, or choose feature extraction.",
        )
    count = min(config.epochs, num_backbone_groups - target + 1)
    # Evenly spaced depths from head-only down to the target, first and last included.
    depths = [
        round(num_backbone_groups - (num_backbone_groups - target) * i / (count - 1))
        for i in range(count)
    ]
    epochs = [1] * (count - 1) + [config.epochs - (count - 1)]
    return [
        Stage(number, depth, stage_epochs, train_bn=True)
        for number, (depth, stage_epochs) in enumerate(zip(depths, epochs, strict=True), 1)
    ]


def describe_stages(stages: list[Stage], num_backbone_groups: int) -> str:
    """The stages in words, e.g. "3 stages: head only (1 epoch), 2/4 groups frozen (1 epoch),
    full fine-tune (3 epochs)"."""
    words = [frozen_words(s.frozen_groups, num_backbone_groups) for s in stages]
    parts = [
        f"{w} ({plural(s.epochs, 'epoch', 'epochs')})" for w, s in zip(words, stages, strict=True)
    ]
    return f"{plural(len(stages), 'stage')}: " + ", ".join(parts)
