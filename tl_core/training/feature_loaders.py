"""Loaders over a frozen backbone's pooled features, for head-only training.

The backbone goes through every image once (the images whose features a feature store already
holds are skipped); the head then trains on the feature vectors. Under torchrun each process
computes a share and the shares are gathered. ``tl_core.training.features_first_pass`` serves
the features while the first epoch is still computing them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tl_core.data import ImageItem, item_targets
from tl_core.features import (
    BatchFeatures,
    FeatureKey,
    extract_features,
    feature_key_for,
    file_digest,
)
from tl_core.training import distributed
from tl_core.training.loaders import Loaders, image_loader, shuffled_order

if TYPE_CHECKING:
    from tl_core.training.plan import TrainingPlan

# Cached features are small vectors: evaluating them in large batches costs nothing.
MIN_FEATURE_EVAL_BATCH = 256


def plan_feature_key(plan: TrainingPlan, autocast) -> FeatureKey:
    """The feature-store key of a head-only run, built as the backbone advisor builds it, so a
    run finds the features a comparison of backbones computed (and the other way round)."""
    config = plan.config
    return feature_key_for(
        config.backbone.strip(),
        plan.weights_source,
        plan.preprocessing,
        plan.device,
        autocast,
        weights_file=config.weights if config.pretrained else None,
    )


def item_digest(item: ImageItem) -> str:
    """The digest of an item's bytes: the scan's, else computed (items not made by a scan)."""
    return item.digest or file_digest(item.path)


@dataclass(frozen=True)
class FeatureSources:
    """A head-only run's images: those the backbone must still see, and the features known.

    Under torchrun each process computes a share of the images whose features are not known
    (see ``distributed.padded_share``), and :func:`gather_computed` puts the shares together.

    Attributes:
        loaders: This process's share of the training and of the validation images whose
            features are not known, each in item order, with the evaluation transform.
        todo_digests: The digest of each image in ``loaders``, training images first.
        unknown: The digests of every training, and every validation, image whose features
            are not known (all processes' shares), in item order.
        train_digests: The digest of every training image, in item order.
        val_digests: The digest of every validation image, in item order.
        known: Feature vectors already computed (from a feature store), by digest.
        steps_per_epoch: Training steps of one epoch on the features.
    """

    loaders: Loaders
    todo_digests: tuple[str, ...]
    train_digests: tuple[str, ...]
    val_digests: tuple[str, ...]
    known: Mapping[str, torch.Tensor]
    steps_per_epoch: int
    unknown: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def num_images(self) -> int:
        """Images the backbone has to compute (in this process)."""
        return self.loaders.num_images

    @property
    def num_batches(self) -> int:
        return self.loaders.num_batches

    @property
    def found(self) -> int:
        """Images whose features are known already."""
        return len(self.train_digests) + len(self.val_digests) - sum(map(len, self.unknown))


def feature_source_loaders(
    plan: TrainingPlan, known: Mapping[str, torch.Tensor] | None = None, shared: bool = False
) -> FeatureSources:
    """The images the frozen backbone must go through once, in a fixed order.

    Args:
        plan: Gives the images, the evaluation transform and the batch size.
        known: Feature vectors already computed, by file digest: their images are skipped.
        shared: Under torchrun, give this process only its share of the images (the
            processes then exchange their results with :func:`gather_computed`); otherwise
            every process goes through every image.
    """
    known = known or {}
    transform = plan.preprocessing.eval_transform()
    train_digests = tuple(item_digest(item) for item in plan.train_items)
    val_digests = tuple(item_digest(item) for item in plan.val_items)
    todo: dict[str, list[tuple[ImageItem, str]]] = {"train": [], "val": []}
    for part, items, digests in (
        ("train", plan.train_items, train_digests),
        ("val", plan.val_items, val_digests),
    ):
        todo[part] = [(i, d) for i, d in zip(items, digests, strict=True) if d not in known]
    mine = {
        part: distributed.padded_share(pairs) if shared else pairs for part, pairs in todo.items()
    }
    return FeatureSources(
        loaders=Loaders(
            train=image_loader(plan, [i for i, _ in mine["train"]], transform, False),
            val=image_loader(plan, [i for i, _ in mine["val"]], transform, False),
        ),
        todo_digests=tuple(d for part in ("train", "val") for _, d in mine[part]),
        train_digests=train_digests,
        val_digests=val_digests,
        known=known,
        steps_per_epoch=math.ceil(
            distributed.share_size(len(train_digests)) / plan.config.batch_size
        ),
        unknown=tuple(tuple(d for _, d in todo[part]) for part in ("train", "val")),
    )


def compute_features(
    model: torch.nn.Module,
    sources: FeatureSources,
    device: torch.device,
    autocast,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Runs the frozen backbone over the images whose features are not known yet.

    Args:
        model: The model on ``device``; it is put in eval mode.
        sources: From :func:`feature_source_loaders`.
        device: Where the backbone runs.
        autocast: A callable returning the mixed-precision context for the device.
        on_batch: Called with the number of images of each finished batch, so the caller can
            report progress and honour pause/stop between batches.

    Returns:
        The new feature vectors (float32, on the CPU), by digest.
    """
    compute = BatchFeatures(model.eval(), device, autocast)
    digests = iter(sources.todo_digests)  # the training loader's images, then validation's
    computed: dict[str, torch.Tensor] = {}
    for loader in (sources.loaders.train, sources.loaders.val):
        if len(loader.dataset):
            matrix = extract_features(compute, loader, on_batch).tensors[0]
            # Rows are views of the loader's matrix: no second copy of every feature.
            computed.update(zip(itertools.islice(digests, len(matrix)), matrix, strict=True))
    if next(digests, None) is not None:
        raise RuntimeError("fewer features were computed than images asked for")
    return computed


def gather_computed(
    sources: FeatureSources, computed: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every process's share of the computed features, on every process (under torchrun;
    ``computed`` itself otherwise).

    Args:
        sources: From :func:`feature_source_loaders` with ``shared=True``.
        computed: This process's share, from :func:`compute_features`.
    """
    if distributed.world_size() == 1 or not sources.todo_digests:
        return dict(computed)
    mine = torch.stack([computed[digest] for digest in sources.todo_digests])
    shares = distributed.all_gather(mine)  # the same number of rows on every process
    rows: dict[str, torch.Tensor] = {}
    start = 0
    for digests in sources.unknown:
        size = distributed.share_size(len(digests))
        parts = [share[start : start + size] for share in shares]
        rows.update(zip(digests, distributed.interleave_shares(parts, len(digests)), strict=True))
        start += size
    return rows


def feature_row_loader(plan: TrainingPlan, dataset: Dataset, shuffle: bool) -> DataLoader:
    """Batches of feature rows: shuffled with the run's seed for training; for validation in
    item order, in large batches (evaluating small vectors costs nothing)."""
    config = plan.config
    if shuffle:
        order = shuffled_order(dataset, config.seed)
        return DataLoader(dataset, batch_size=config.batch_size, **order)
    return DataLoader(dataset, batch_size=max(MIN_FEATURE_EVAL_BATCH, config.batch_size))


def class_indices(plan: TrainingPlan, items: Sequence[ImageItem]) -> torch.Tensor:
    """The class index of each item, in order."""
    return item_targets(items, plan.class_names)


def feature_loaders(
    plan: TrainingPlan, sources: FeatureSources, computed: Mapping[str, torch.Tensor]
) -> Loaders:
    """Serves every image's features, known or just computed, in item order.

    The training loader shuffles with the run's seed; validation keeps the item order.
    """
    rows = {**sources.known, **computed}

    def dataset(digests: Sequence[str], items: Sequence[ImageItem]) -> TensorDataset:
        features = torch.stack([rows[d] for d in digests]) if digests else torch.empty(0)
        return TensorDataset(features, class_indices(plan, items))

    return Loaders(
        train=feature_row_loader(plan, dataset(sources.train_digests, plan.train_items), True),
        val=feature_row_loader(plan, dataset(sources.val_digests, plan.val_items), False),
    )


def cached_feature_loaders(
    plan: TrainingPlan,
    model: torch.nn.Module,
    sources: FeatureSources,
    autocast,
    on_batch: Callable[[int], None] | None = None,
) -> Loaders:
    """Runs the frozen backbone over ``sources`` once and serves the pooled features.

    Args:
        plan: Gives the batch size, seed and device.
        model: The model on ``plan.device``; it is put in eval mode.
        sources: From :func:`feature_source_loaders`.
        autocast: A callable returning the mixed-precision context for the device.
        on_batch: Called with the number of images of each finished batch.
    """
    computed = compute_features(model, sources, plan.device, autocast, on_batch)
    return feature_loaders(plan, sources, computed)
