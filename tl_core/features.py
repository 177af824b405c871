"""Backbone features computed once, for training only the head of a frozen backbone.

With every backbone layer frozen and no augmentation, each image always gives the same pooled
feature vector. Computing those vectors once and training the head on them makes ten epochs cost
little more than one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from tl_core.devices import in_preferred_layout


def pooled_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The vector timm's models feed their classifier (after pooling, before the last layer)."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def classify_features(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    return model.get_classifier()(features)


@torch.no_grad()  # not inference_mode: the head later trains on these tensors
def batch_pooled_features(
    model: torch.nn.Module, images: torch.Tensor, device: torch.device, autocast
) -> torch.Tensor:
    """The pooled features of one batch of images (on the CPU), computed on ``device``."""
    images = in_preferred_layout(images.to(device, non_blocking=True), device)
    with autocast():
        return pooled_features(model, images).float().cpu()


@torch.no_grad()  # not inference_mode: the head later trains on these tensors
def extract_features(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast,
    on_batch: Callable[[int], None] | None = None,
) -> TensorDataset:
    """Runs the frozen backbone over a loader once.

    Args:
        model: The model, in eval mode.
        loader: Yields (images, labels) in a fixed order.
        device: Where the backbone runs.
        autocast: A callable returning the mixed-precision context for ``device``.
        on_batch: Called with the number of images in each finished batch (for progress and
            the stop/pause check).

    Returns:
        Float32 features and labels, on the CPU.
    """
    # Filled in place rather than concatenated at the end: a concatenation holds every batch
    # and the result at once, twice the features' size at the peak.
    count = len(loader.dataset)
    features = labels = None
    done = 0
    for images, targets in loader:
        batch_features = batch_pooled_features(model, images, device, autocast)
        if features is None:
            features = torch.empty(count, *batch_features.shape[1:], dtype=torch.float32)
            labels = torch.empty(count, dtype=targets.dtype)
        features[done : done + len(targets)] = batch_features
        labels[done : done + len(targets)] = targets
        done += len(targets)
        if on_batch:
            on_batch(len(targets))
    if features is None:
        return TensorDataset(torch.empty(0), torch.empty(0, dtype=torch.int64))
    return TensorDataset(features[:done], labels[:done])
