"""Turns a TrainConfig into everything a training run needs: data split, model, device."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tl_core.common import PHASE_PREPARING, TLStudioError, TrainingObserver, resolve_device
from tl_core.config import TrainConfig
from tl_core.data import (
    DatasetReport,
    ImageItem,
    Issue,
    check_validation_classes,
    overlap_issue,
    scan_dataset,
    split_overlap,
    stratified_split,
)
from tl_core.models import FreezeSummary, Preprocessing, apply_freeze, create_model
from tl_core.training import distributed
from tl_core.training.class_weights import ClassWeighting, class_weighting, tag_weighting


@dataclass
class TrainingPlan:
    """A config resolved against real data and a real model, ready to train."""

    config: TrainConfig
    device: torch.device
    report: DatasetReport
    class_names: list[str]
    train_items: list[ImageItem]
    val_items: list[ImageItem]
    model: torch.nn.Module
    weights_source: str
    preprocessing: Preprocessing
    freeze: FreezeSummary
    head_params: set[str]
    augment: str
    class_weighting: ClassWeighting

    @property
    def num_val_images(self) -> int:
        """The images every validation accuracy of this run is measured on."""
        return len(self.val_items)

    @property
    def val_overlap(self) -> int:
        """Validation images whose byte-identical copy is among the training images."""
        return len(split_overlap(self.report, self.train_items, self.val_items))

    @property
    def warnings(self) -> tuple[Issue, ...]:
        """The dataset's health warnings, plus the train/validation overlap of this split."""
        overlap = overlap_issue(self.val_overlap, self.num_val_images)
        return self.report.warnings + ((overlap,) if overlap else ())

    @property
    def backbone_frozen(self) -> bool:
        """True when only the head trains, so backbone features never change."""
        return self.freeze.trainable_params == sum(
            p.numel() for n, p in self.model.named_parameters() if n in self.head_params
        )

    def describe(self) -> str:
        """One sentence on what will train, for the CLI and the app."""
        freeze = self.freeze
        text = (
            f"{self.config.backbone} ({self.weights_source}); "
            f"{freeze.frozen_count} of {freeze.num_backbone_groups} layer groups frozen: "
            f"{freeze.trainable_params:,} parameters train, {freeze.frozen_params:,} frozen; "
            f"{len(self.train_items)} training and {len(self.val_items)} validation images "
            f"in {len(self.class_names)} {'tags' if self.multi_label else 'classes'}; "
            f"augmentation {self.augment}; "
            f"{self.class_weighting.describe()}"
        )
        if self.caches_features:
            text += "; backbone features computed once"
        return text + "."

    @property
    def multi_label(self) -> bool:
        """Whether each image carries a set of tags (a ``labels.csv`` dataset): one sigmoid
        output per tag instead of a softmax over classes."""
        return self.report.multi_label

    def loss_function(self) -> torch.nn.Module:
        """The training loss: cross-entropy with the run's label smoothing and class weights;
        for a multi-label run, binary cross-entropy on each tag's output, with the tags'
        positive weights (label smoothing does not apply)."""
        if self.multi_label:
            return torch.nn.BCEWithLogitsLoss(pos_weight=self.class_weighting.tensor(self.device))
        return torch.nn.CrossEntropyLoss(
            weight=self.class_weighting.tensor(self.device),
            label_smoothing=self.config.label_smoothing,
        )

    @property
    def caches_features(self) -> bool:
        """Features can be computed once when the backbone is frozen and inputs never vary."""
        return self.backbone_frozen and self.augment == "none"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_augment(config: TrainConfig, backbone_frozen: bool) -> str:
    if config.augment != "auto":
        return config.augment
    # A frozen backbone trains on cached features, which augmentation would invalidate.
    return "none" if backbone_frozen else "light"


def scan_and_split(
    config: TrainConfig, workdir: Path
) -> tuple[DatasetReport, list[ImageItem], list[ImageItem]]:
    """The dataset's health report, and its training and validation images.

    Raises:
        DatasetError: The images cannot be trained on.
    """
    report = scan_dataset(config.data, extract_to=workdir / "data")
    report.require_trainable()
    if config.val_data:
        val_report = scan_dataset(config.val_data, extract_to=workdir / "val_data")
        check_validation_classes(report, val_report)
        return report, list(report.items), list(val_report.items)
    # The scan grouped the copies already: the split reuses its groups.
    split = stratified_split(
        report.items, config.val_fraction, config.seed, copies=report.near_duplicates
    )
    return report, *split


def prepare_training(
    config: TrainConfig, workdir: Path, observer: TrainingObserver | None = None
) -> TrainingPlan:
    """Scans and splits the data, builds the model, freezes it and picks the device.

    Args:
        config: The run's settings.
        workdir: Where a zipped dataset may be unpacked (inside the run folder).
        observer: Told which phase is under way.
    """
    observer = observer or TrainingObserver()
    device = distributed.local_device(resolve_device(config.device))  # torchrun: this rank's GPU
    seed_everything(config.seed)

    observer.on_phase("Checking the images", PHASE_PREPARING)
    # Under torchrun, rank 0 scans and splits (unpacking a zip into its run folder) and every
    # rank trains on its result: one split, identical everywhere, and only rank 0 writes.
    report, train_items, val_items = distributed.decided_by_main(
        lambda: scan_and_split(config, workdir)
    )

    observer.on_phase(f"Loading the {config.backbone} backbone")
    class_names = list(report.class_names)
    model, weights_source = create_model(
        config.backbone,
        len(class_names),
        pretrained=config.pretrained,
        weights_file=config.weights,
    )
    freeze = apply_freeze(model, config.freeze)
    head_params = {name for group in freeze.groups if group.is_head for name in group.param_names}
    preprocessing = Preprocessing.for_model(model, config.image_size)
    native_size = model.pretrained_cfg.get("input_size", (3, 0, 0))[-1]
    if model.pretrained_cfg.get("fixed_input_size") and preprocessing.image_size != native_size:
        raise TLStudioError(
            f"{config.backbone} only accepts {native_size}-pixel images.",
            f"Leave the image size at its default ({native_size}), or pick another backbone.",
        )
    plan = TrainingPlan(
        config=config,
        device=device,
        report=report,
        class_names=class_names,
        train_items=train_items,
        val_items=val_items,
        model=model,
        weights_source=weights_source,
        preprocessing=preprocessing,
        freeze=freeze,
        head_params=head_params,
        augment="none",
        class_weighting=(
            tag_weighting(config.class_weighting, (i.tags or () for i in train_items), class_names)
            if report.multi_label
            else class_weighting(
                config.class_weighting, (item.label for item in train_items), class_names
            )
        ),
    )
    plan.augment = resolve_augment(config, plan.backbone_frozen)
    return plan
