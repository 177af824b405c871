"""Feature loaders whose first pass computes the features it lacks, just in time, so the head
starts training one batch of backbone work after Start instead of the whole dataset's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from tl_core.data import ImageItem
from tl_core.training.feature_loaders import FeatureSources, class_indices, feature_row_loader
from tl_core.training.loaders import image_loader

if TYPE_CHECKING:
    from tl_core.training.plan import TrainingPlan


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
        dataset = FeatureRowsDataset(class_indices(plan, items), known)
        missing = {i: item for i, item in enumerate(items) if i not in known}
        loader = feature_row_loader(plan, dataset, shuffle)
        parts.append(
            FeaturesOnFirstPass(plan, loader, missing, digests, compute, on_batch, both_complete)
        )
    return parts[0], parts[1]
