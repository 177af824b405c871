"""Data loading for training: the image Dataset, its DataLoaders, and cached-input loaders.

The trainer receives what this module builds, so how images reach the model is decided in one
place: decoded (and augmented) every epoch; passed through the frozen backbone once, its pooled
features reused from a feature store where it has them (head-only training); or passed through
the frozen leading layer groups once (partial fine-tuning without augmentation).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tl_core.data import ImageFolderDataset, ImageItem, default_num_workers
from tl_core.features import (
    BatchFeatures,
    FeatureKey,
    PrefixSplit,
    extract_features,
    feature_key_for,
    file_digest,
    split_frozen_prefix,
)
from tl_core.training import distributed
from tl_core.training.recipes import training_stages

if TYPE_CHECKING:
    from tl_core.training.plan import TrainingPlan

logger = logging.getLogger(__name__)

# Cached features are small vectors: evaluating them in large batches costs nothing.
MIN_FEATURE_EVAL_BATCH = 256


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


def _feature_loader(plan: TrainingPlan, dataset: Dataset, shuffle: bool) -> DataLoader:
    """Batches of feature rows: shuffled with the run's seed for training; for validation in
    item order, in large batches (evaluating small vectors costs nothing)."""
    config = plan.config
    if shuffle:
        order = shuffled_order(dataset, config.seed)
        return DataLoader(dataset, batch_size=config.batch_size, **order)
    return DataLoader(dataset, batch_size=max(MIN_FEATURE_EVAL_BATCH, config.batch_size))


def _labels(plan: TrainingPlan, items: Sequence[ImageItem]) -> torch.Tensor:
    return torch.tensor([plan.class_names.index(item.label) for item in items], dtype=torch.int64)


def feature_loaders(
    plan: TrainingPlan, sources: FeatureSources, computed: Mapping[str, torch.Tensor]
) -> Loaders:
    """Serves every image's features, known or just computed, in item order.

    The training loader shuffles with the run's seed; validation keeps the item order.
    """
    rows = {**sources.known, **computed}

    def dataset(digests: Sequence[str], items: Sequence[ImageItem]) -> TensorDataset:
        features = torch.stack([rows[d] for d in digests]) if digests else torch.empty(0)
        return TensorDataset(features, _labels(plan, items))

    return Loaders(
        train=_feature_loader(plan, dataset(sources.train_digests, plan.train_items), True),
        val=_feature_loader(plan, dataset(sources.val_digests, plan.val_items), False),
    )


class FeatureRowsDataset(Dataset):
    """Feature rows and their labels; the rows are filled in as the backbone computes them.

    Args:
        labels: The class index of every row.
        known: Rows known already, by row index.
    """

    def __init__(self, labels: torch.Tensor, known: Mapping[int, torch.Tensor]):
        self.labels = labels
        self.features: torch.Tensor | None = None  # allocated once a row gives the width
        self.serve_indices = False  # serve each row's index instead of its features
        for index, row in known.items():
            self._allocate(row.shape)[index] = row

    def _allocate(self, row_shape: torch.Size) -> torch.Tensor:
        if self.features is None:
            self.features = torch.empty(len(self.labels), *row_shape, dtype=torch.float32)
        return self.features

    def fill(self, indices: Sequence[int], rows: torch.Tensor) -> None:
        self._allocate(rows.shape[1:])[list(indices)] = rows

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.serve_indices:
            return torch.tensor(index), self.labels[index]
        return self.features[index], self.labels[index]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[list(indices)], self.labels[list(indices)]


class FeaturesOnFirstPass:
    """A loader over feature rows whose first pass computes the rows it lacks, just in time.

    The head need not wait for every image's features: the first pass takes its batches in
    the order the loader's sampler draws, and the backbone computes each batch's missing rows
    just before the batch is served. The first loss point then comes one batch of backbone work
    after Start instead of the whole dataset's. The order is drawn exactly as iterating the
    loader draws it, so every epoch gets the batches it would have had with every feature
    computed first. Rows the first pass leaves out (a dropped last image) are computed at its
    end, so that later passes only read.

    Args:
        plan: Gives the evaluation transform, batch size and workers of the image loader.
        loader: Over a :class:`FeatureRowsDataset`.
        missing: The item of each row still to compute, by row index.
        digests: The file digest of every row (to keep the computed ones in a store).
        compute: The pooled features of a batch of images (``features.BatchFeatures``).
        on_batch: Told the number of images of each computed batch (progress, pause and stop).
        on_complete: Called once every row is known.
    """

    def __init__(
        self,
        plan: TrainingPlan,
        loader: DataLoader,
        missing: Mapping[int, ImageItem],
        digests: Sequence[str],
        compute: Callable[[torch.Tensor], torch.Tensor],
        on_batch: Callable[[int], None] | None = None,
        on_complete: Callable[[], None] | None = None,
    ):
        self.plan = plan
        self.loader = loader
        self.dataset: FeatureRowsDataset = loader.dataset
        self.missing = dict(missing)
        self.computed_indices: list[int] = []
        self.digests = digests
        self.compute = compute
        self.on_batch = on_batch
        self.on_complete = on_complete

    @property
    def complete(self) -> bool:
        return not self.missing

    def computed_rows(self) -> dict[str, torch.Tensor]:
        """The rows computed here (views of the dataset's matrix), by digest."""
        return {self.digests[i]: self.dataset.features[i] for i in self.computed_indices}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self._first_pass() if self.missing else iter(self.loader)

    def _draw_batches(self) -> list[list[int]]:
        """The row indices of each batch of a pass, drawn by iterating the loader itself, so
        that its random generator advances exactly as in a pass over the features."""
        self.dataset.serve_indices = True
        try:
            return [indices.tolist() for indices, _ in self.loader]
        finally:
            self.dataset.serve_indices = False

    def _first_pass(self):
        batches = self._draw_batches()
        order = list(dict.fromkeys(i for batch in batches for i in batch if i in self.missing))
        needed = set(order)
        order += [i for i in self.missing if i not in needed]
        images = image_loader(
            self.plan,
            [self.missing[i] for i in order],
            self.plan.preprocessing.eval_transform(),
            shuffle=False,
        )
        chunks = (order[i : i + images.batch_size] for i in range(0, len(order), images.batch_size))
        pending = zip(chunks, images, strict=True)
        for batch in batches:
            while any(i in self.missing for i in batch):
                self._compute_next(pending)
            yield self.dataset.batch(batch)
        while self.missing:
            self._compute_next(pending)

    def _compute_next(self, pending) -> None:
        indices, (pixels, _) = next(pending)
        self.dataset.fill(indices, self.compute(pixels))
        for index in indices:
            del self.missing[index]
        self.computed_indices.extend(indices)
        if self.on_batch is not None:
            self.on_batch(len(indices))
        if not self.missing:
            self.compute = None  # let the backbone's folded copy go: later passes only read
            if self.on_complete is not None:
                self.on_complete()


def features_on_first_pass(
    plan: TrainingPlan,
    sources: FeatureSources,
    compute: Callable[[torch.Tensor], torch.Tensor],
    on_batch: Callable[[int], None] | None = None,
    on_complete: Callable[[], None] | None = None,
) -> tuple[FeaturesOnFirstPass, FeaturesOnFirstPass]:
    """Training and validation loaders over every image's features, the known ones from
    ``sources`` and the others computed on the loaders' first pass (:class:`FeaturesOnFirstPass`).

    ``on_complete`` is called once both loaders know every row.
    """
    parts: list[FeaturesOnFirstPass] = []

    def both_complete() -> None:
        if on_complete is not None and all(part.complete for part in parts):
            on_complete()

    for items, digests, shuffle in (
        (plan.train_items, sources.train_digests, True),
        (plan.val_items, sources.val_digests, False),
    ):
        known = {i: sources.known[d] for i, d in enumerate(digests) if d in sources.known}
        dataset = FeatureRowsDataset(_labels(plan, items), known)
        missing = {i: item for i, item in enumerate(items) if i not in known}
        loader = _feature_loader(plan, dataset, shuffle)
        parts.append(
            FeaturesOnFirstPass(plan, loader, missing, digests, compute, on_batch, both_complete)
        )
    return parts[0], parts[1]


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
