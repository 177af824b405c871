"""Backbone features computed once, for training only the head of a frozen backbone.

With every backbone layer frozen and no augmentation, each image always gives the same pooled
feature vector. Computing those vectors once and training the head on them makes ten epochs cost
little more than one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from tl_core.common import in_preferred_layout
from tl_core.models import folded_copy


def pooled_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The vector timm's models feed their classifier (after pooling, before the last layer)."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def classify_features(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    return model.get_classifier()(features)


class BatchFeatures:
    """The pooled features of batches of images (on the CPU), computed on ``device``.

    The backbone runs with its batch norms folded into its convolutions: a copy of ``model``
    made on the first batch (``tl_core.models.batchnorm_folding``), which gives the same features
    faster. ``model`` itself is left as it is.

    Args:
        model: The model, with every backbone layer frozen.
        device: Where it runs.
        autocast: A callable returning the mixed-precision context for ``device``.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, autocast):
        self.model = model
        self.device = device
        self.autocast = autocast
        self.backbone: torch.nn.Module | None = None

    @torch.no_grad()  # not inference_mode: the head later trains on these tensors
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = in_preferred_layout(images.to(self.device, non_blocking=True), self.device)
        if self.backbone is None:
            self.backbone = folded_copy(self.model, images[:1], pooled_features)
        with self.autocast():
            return pooled_features(self.backbone, images).float().cpu()


def extract_features(
    compute: BatchFeatures,
    loader: DataLoader,
    on_batch: Callable[[int], None] | None = None,
) -> TensorDataset:
    """Runs the frozen backbone over a loader once.

    Args:
        compute: The backbone's features of a batch (with the model in eval mode).
        loader: Yields (images, labels) in a fixed order.
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
        batch_features = compute(images)
        if features is None:
            features = torch.empty(count, *batch_features.shape[1:], dtype=torch.float32)
            labels = torch.empty((count, *targets.shape[1:]), dtype=targets.dtype)
        features[done : done + len(targets)] = batch_features
        labels[done : done + len(targets)] = targets
        done += len(targets)
        if on_batch:
            on_batch(len(targets))
    if features is None:
        return TensorDataset(torch.empty(0), torch.empty(0, dtype=torch.int64))
    return TensorDataset(features[:done], labels[:done])
