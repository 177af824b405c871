"""Loaders over images for training: decoded (and augmented) every epoch, or passed through
the frozen leading layer groups once (partial fine-tuning without augmentation).

The trainer receives what the loader modules build, so how images reach the model is decided
in one place: here for images, in ``tl_core.training.feature_loaders`` for the pooled features
of a frozen backbone (head-only training), computed once and reused from a feature store where
it has them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tl_core.data import ImageFolderDataset, ImageItem, default_num_workers
from tl_core.features import PrefixSplit, split_frozen_prefix
from tl_core.training import distributed
from tl_core.training.recipes import training_stages

if TYPE_CHECKING:
    from tl_core.training.plan import TrainingPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaders:
    """The training and validation loaders of one run."""

    train: DataLoader
    val: DataLoader

    @property
    def num_images(self) -> int:
        return len(self.train.dataset) + len(self.val.dataset)

    @property
    def num_batches(self) -> int:
        return len(self.train) + len(self.val)


def image_loader(plan: TrainingPlan, items: Sequence[ImageItem], transform, shuffle: bool):
    """A DataLoader over ``items`` with the plan's batch size, workers and seed."""
    config = plan.config
    workers = config.num_workers if config.num_workers >= 0 else default_num_workers(plan.device)
    dataset = ImageFolderDataset(items, plan.class_names, transform)
    batch_size = config.batch_size
    order = shuffled_order(dataset, config.seed) if shuffle else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=plan.device.type == "cuda",
        drop_last=drops_last(distributed.share_size(len(dataset)), batch_size, shuffle),
        **order,
    )


def shuffled_order(dataset: Dataset, seed: int) -> dict[str, Any]:
    """DataLoader arguments for a training set: shuffled with the run's seed; under torchrun,
    each process gets its share through a DistributedSampler (reshuffled each epoch by the
    trainer's ``distributed.set_epoch``)."""
    sampler = distributed.shuffling_sampler(dataset, seed)
    if sampler is not None:
        return {"sampler": sampler}
    return {"shuffle": True, "generator": torch.Generator().manual_seed(seed)}


def drops_last(size: int, batch_size: int, shuffle: bool) -> bool:
    # A lone image in the last batch breaks BatchNorm layers that are training.
    return shuffle and size % batch_size == 1 and size > batch_size


def training_loaders(plan: TrainingPlan) -> Loaders:
    """Images decoded every epoch: shuffled and augmented for training, plain for validation."""
    prep = plan.preprocessing
    return Loaders(
        train=image_loader(plan, plan.train_items, prep.train_transform(plan.augment), True),
        val=image_loader(plan, plan.val_items, prep.eval_transform(), False),
    )


def frozen_prefix_split(plan: TrainingPlan) -> PrefixSplit | None:
    """The model split after its frozen groups (``tl_core.features.frozen_prefix``), or None where
    the
    frozen layers must run as part of the model: nothing or everything frozen, a recipe that
    changes the freeze between stages or trains frozen norm layers, or a model that cannot be
    split exactly."""
    freeze = plan.freeze
    if plan.caches_features or not 0 < freeze.frozen_count < freeze.num_backbone_groups:
        return None
    stages = training_stages(plan.config, freeze.num_backbone_groups)
    if len(stages) != 1 or stages[0].train_bn or stages[0].frozen_groups != freeze.frozen_count:
        return None
    split, reason = split_frozen_prefix(plan.model, freeze, plan.preprocessing.image_size)
    if split is None:
        logger.info("The frozen layers run with the rest of the model: %s", reason)
    elif any(p.requires_grad for p in split.prefix.parameters()):
        return None
    return split


def prefix_output_loaders(
    plan: TrainingPlan,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
) -> Loaders:
    """Loaders over the frozen prefix's stored outputs, batched and shuffled exactly as
    :func:`training_loaders` batches the images (same seed, same dropped last image)."""
    config = plan.config
    train_set, val_set = TensorDataset(*train), TensorDataset(*val)
    return Loaders(
        train=DataLoader(
            train_set,
            batch_size=config.batch_size,
            drop_last=drops_last(distributed.share_size(len(train_set)), config.batch_size, True),
            **shuffled_order(train_set, config.seed),
        ),
        val=DataLoader(val_set, batch_size=config.batch_size),
    )
