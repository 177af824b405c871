"""Labelled images as a PyTorch Dataset: what every pass over images (training, features) reads."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tl_core.common import DatasetError
from tl_core.data.images import load_image
from tl_core.data.records import ImageItem


class ImageFolderDataset(Dataset):
    """Labelled images for a DataLoader: yields ``(transform(image), class_index)``, or for
    images with tags (a multi-label dataset) ``(transform(image), multi_hot)``, a float vector
    with a 1 for each of the image's tags (see :func:`item_targets`).

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
        unknown = sorted(
            {name for i in self.items for name in _labels_of(i)} - self.class_to_idx.keys()
        )
        if unknown:
            raise DatasetError(
                f"Images are labelled with unknown classes: {', '.join(map(repr, unknown))}.",
                hint="Use the class list of the dataset the images came from.",
            )
        self.transform = transform
        self.draft_size = draft_size

    @property
    def targets(self) -> list:
        """Class index of every item, in order (for samplers and class weights); for tagged
        items, each item's multi-hot list."""
        return item_targets(self.items, self.class_names).tolist()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = self.items[index]
        image = load_image(item.path, draft_size=self.draft_size)
        if self.transform is not None:
            data = self.transform(image)
        else:
            data = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        if item.tags is not None:
            return data, _multi_hot(item.tags, self.class_to_idx)
        return data, self.class_to_idx[item.label]


def _labels_of(item: ImageItem) -> tuple[str, ...]:
    return item.tags if item.tags is not None else (item.label,)


def _multi_hot(tags: Sequence[str], index: dict[str, int]) -> torch.Tensor:
    target = torch.zeros(len(index), dtype=torch.float32)
    target[[index[tag] for tag in tags]] = 1.0
    return target


def item_targets(items: Sequence[ImageItem], class_names: Sequence[str]) -> torch.Tensor:
    """What a loss compares the model's outputs with, for each item in order: the class indices
    (int64, shape ``(n,)``), or for tagged items (a multi-label dataset) multi-hot float rows
    (shape ``(n, len(class_names))``).
    """
    index = {name: position for position, name in enumerate(class_names)}
    if items and items[0].tags is not None:
        return torch.stack([_multi_hot(item.tags or (), index) for item in items])
    return torch.tensor([index[item.label] for item in items], dtype=torch.int64)


def default_num_workers(device: torch.device) -> int:
    # On the CPU the model itself needs the cores; on a GPU, decoding must keep up with it.
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))
