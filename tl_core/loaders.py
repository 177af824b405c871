"""Data loading for training: the image Dataset, its DataLoaders, and cached-feature loaders.

The trainer receives what this module builds, so how images reach the model (decoded and
augmented every epoch, or passed through the frozen backbone once) is decided in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tl_core.datasets import ImageItem
from tl_core.errors import DatasetError
from tl_core.features import extract_features
from tl_core.images import load_image

if TYPE_CHECKING:
    from tl_core.plan import TrainingPlan

# Cached features are small vectors: evaluating them in large batches costs nothing.
MIN_FEATURE_EVAL_BATCH = 256


class ImageFolderDataset(Dataset):
    """Labelled images for a DataLoader: yields ``(transform(image), class_index)``.

    Holds only paths and labels (no open files), so it pickles into DataLoader workers.

    Args:
        items: Images to serve.
        class_names: Class order; an item's index is its label's position here.
        transform: Applied to the RGB PIL image; None gives a float tensor in [0, 1], CHW.
        draft_size: Passed to :func:`load_image` to decode large JPEGs faster.
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        class_names: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        draft_size: int | None = None,
    ):
        self.items = list(items)
        self.class_names = list(class_names)
        self.class_to_idx = {name: index for index, name in enumerate(self.class_names)}
        unknown = sorted({i.label for i in self.items} - self.class_to_idx.keys())
        if unknown:
            raise DatasetError(
                f"Images are labelled with unknown classes: {', '.join(map(repr, unknown))}.",
                hint="Use the class list of the dataset the images came from.",
            )
        self.transform = transform
        self.draft_size = draft_size

    @property
    def targets(self) -> list[int]:
        """Class index of every item, in order (for samplers and class weights)."""
        return [self.class_to_idx[item.label] for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = self.items[index]
        image = load_image(item.path, draft_size=self.draft_size)
        if self.transform is not None:
            data = self.transform(image)
        else:
            data = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        return data, self.class_to_idx[item.label]


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


def default_num_workers(device: torch.device) -> int:
    # On the CPU the model itself needs the cores; on a GPU, decoding must keep up with it.
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def image_loader(plan: TrainingPlan, items: Sequence[ImageItem], transform, shuffle: bool):
    """A DataLoader over ``items`` with the plan's batch size, workers and seed."""
    config = plan.config
    workers = config.num_workers if config.num_workers >= 0 else default_num_workers(plan.device)
    dataset = ImageFolderDataset(items, plan.class_names, transform)
    batch_size = config.batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=plan.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),
        # A lone image in the last batch breaks BatchNorm layers that are training.
        drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > batch_size,
    )


def training_loaders(plan: TrainingPlan) -> Loaders:
    """Images decoded every epoch: shuffled and augmented for training, plain for validation."""
    prep = plan.preprocessing
    return Loaders(
        train=image_loader(plan, plan.train_items, prep.train_transform(plan.augment), True),
        val=image_loader(plan, plan.val_items, prep.eval_transform(), False),
    )


def feature_source_loaders(plan: TrainingPlan) -> Loaders:
    """Images in a fixed order with the evaluation transform: what the backbone sees once."""
    transform = plan.preprocessing.eval_transform()
    return Loaders(
        train=image_loader(plan, plan.train_items, transform, False),
        val=image_loader(plan, plan.val_items, transform, False),
    )


def cached_feature_loaders(
    plan: TrainingPlan,
    model: torch.nn.Module,
    sources: Loaders,
    autocast,
    on_batch: Callable[[int], None] | None = None,
) -> Loaders:
    """Runs the frozen backbone over ``sources`` once and serves the pooled features.

    Args:
        plan: Gives the batch size, seed and device.
        model: The model on ``plan.device``; it is put in eval mode.
        sources: From :func:`feature_source_loaders`.
        autocast: A callable returning the mixed-precision context for the device.
        on_batch: Called with the number of images of each finished batch, so the caller can
            report progress and honour pause/stop between batches.
    """
    model.eval()
    train_set, val_set = (
        extract_features(model, loader, plan.device, autocast, on_batch)
        for loader in (sources.train, sources.val)
    )
    config = plan.config
    generator = torch.Generator().manual_seed(config.seed)
    return Loaders(
        train=DataLoader(
            train_set, batch_size=config.batch_size, shuffle=True, generator=generator
        ),
        val=DataLoader(val_set, batch_size=max(MIN_FEATURE_EVAL_BATCH, config.batch_size)),
    )
