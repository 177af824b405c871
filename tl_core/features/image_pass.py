"""Frozen-backbone features of a list of images, computed once and kept in a FeatureStore.

The backbone advisor and the label-issue finder both need the pooled feature vector of every
image for a backbone; this module computes the vectors the cache lacks (each distinct file
once), stores them, and reports progress and honours a stop event after every batch.
"""

from __future__ import annotations

import threading
import time
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from tl_core.common import TLStudioError, autocast_for, in_preferred_layout
from tl_core.data import ImageFolderDataset, ImageItem, default_num_workers
from tl_core.features.pooled import BatchFeatures, extract_features
from tl_core.features.store import (
    FeatureKey,
    FeatureRows,
    FeatureStore,
    StoredFeatures,
    feature_key_for,
)
from tl_core.models import Preprocessing

FEATURE_BATCH_SIZE = 32
Progress = Callable[[int, int, str], None]
"""Called as ``progress(done, total, message)``; done and total count images."""


@dataclass
class Tracker:
    """Counts images done across a long task, reports them, and honours the stop event.

    Attributes:
        total: Images the whole task will go through.
        progress: Told ``(done, total, message)`` at every report.
        stop: Once set, :meth:`check_stop` raises ``stopped()``.
        stopped: Builds the error that says which task was stopped.
        messages: Sentences worth showing the user once the task ends.
    """

    total: int
    progress: Progress | None
    stop: threading.Event | None
    stopped: Callable[[], TLStudioError]
    done: int = 0
    messages: list[str] = field(default_factory=list)

    def report(self, message: str, images: int = 0) -> None:
        self.done += images
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise self.stopped()


@dataclass(frozen=True)
class FeaturePass:
    """The features of a list of images for one backbone, and what computing them cost.

    Attributes:
        rows: Feature vector of each file digest.
        cached: How many of the images' vectors came from the cache.
        images_per_second: The backbone's speed on this computer (measured now, or when the
            cached vectors were computed).
        seconds: Time spent running the backbone (0 when every vector was cached).
    """

    rows: Mapping[str, torch.Tensor]
    cached: int
    images_per_second: float | None
    seconds: float

    def matrix(self, digests: Sequence[str]) -> torch.Tensor:
        """One row per digest, in that order."""
        return torch.stack([self.rows[d] for d in digests])


def backbone_features(
    name: str,
    model: torch.nn.Module,
    weights_source: str,
    preprocessing: Preprocessing,
    items: Sequence[ImageItem],
    digests: Sequence[str],
    device: torch.device,
    store: FeatureStore | None,
    tracker: Tracker,
) -> FeaturePass:
    """The feature vector of every image, from the store where it has them, else computed.

    Args:
        name: The backbone's timm name (part of the cache key, and of progress messages).
        model: The backbone, with pretrained weights.
        weights_source: Where its weights came from (``create_model``'s description).
        preprocessing: How images are resized and normalised for it.
        items: The images.
        digests: The file digest of each item (``feature_store.file_digest``).
        device: Where the backbone runs.
        store: The cache; None neither reads nor writes one.
        tracker: Told about every batch; its stop event is checked before each.

    Raises:
        TLStudioError: ``tracker.stopped()``, once its stop event is set.
    """
    autocast = autocast_for(device)
    # The same key as head-only training builds, so either finds the other's features.
    key = feature_key_for(name, weights_source, preprocessing, device, autocast)
    store = store if key.reusable else None
    stored = store.load(key) if store else StoredFeatures({})
    # Byte-identical files share a digest: each distinct file goes through the backbone once.
    first_item: dict[str, ImageItem] = {}
    for digest, item in zip(digests, items, strict=True):
        first_item.setdefault(digest, item)
    todo = [digest for digest in first_item if digest not in stored.rows]
    cached = sum(digest in stored.rows for digest in digests)
    tracker.report(f"{name}: {cached} of {len(items)} features found", cached)
    if not todo:
        return FeaturePass(stored.rows, cached, stored.images_per_second, 0.0)
    # Timing a pass of one batch needs a warm-up, worth it only to improve the speed on record.
    timed = len(todo) > stored.speed_images
    computed, seconds, speed = _run_backbone(
        name, model, [first_item[d] for d in todo], preprocessing, device, autocast, tracker, timed
    )
    # Views of the stored and the new matrices, not one tensor object per image.
    rows = ChainMap(FeatureRows(todo, computed), stored.rows)
    if store is not None:
        _save(store, key, stored, todo, computed, speed, tracker)
    tracker.report(f"{name}: features ready", len(items) - cached - len(todo))
    return FeaturePass(rows, cached, speed, seconds)


def _run_backbone(
    name: str,
    model: torch.nn.Module,
    items: Sequence[ImageItem],
    preprocessing: Preprocessing,
    device: torch.device,
    autocast,
    tracker: Tracker,
    timed: bool = True,
) -> tuple[torch.Tensor, float, float]:
    """Runs the frozen backbone over ``items``.

    ``timed`` warms the backbone up first when ``items`` fill only one batch, so that its
    speed is measured without one-off costs.

    Returns:
        The features, the seconds taken, and the images per second after the first batch:
        the first pays one-off costs (allocations, kernel selection) that would make a
        backbone measured first look slower than the same backbone measured later.
    """
    # Every name an item is labelled with: its class, or each of its tags (multi-label).
    class_names = sorted(
        {i.label for i in items if i.tags is None} | {t for i in items for t in i.tags or ()}
    )
    dataset = ImageFolderDataset(items, class_names, preprocessing.eval_transform())
    loader = DataLoader(
        dataset,
        batch_size=FEATURE_BATCH_SIZE,
        num_workers=default_num_workers(device),
        pin_memory=device.type == "cuda",
    )
    model = in_preferred_layout(model.to(device).eval(), device)
    compute = BatchFeatures(model, device, autocast)
    if timed and len(loader) == 1:
        _warm_up(compute, preprocessing.image_size, len(items))
    done, first_batch = 0, None

    def on_batch(images: int) -> None:
        nonlocal done, first_batch
        done += images
        if first_batch is None and len(loader) > 1:
            first_batch = (done, time.perf_counter())
        tracker.report(f"{name}: features of {done}/{len(items)} images", images)
        tracker.check_stop()

    tracker.check_stop()
    started = time.perf_counter()
    features = extract_features(compute, loader, on_batch).tensors[0]
    ended = time.perf_counter()
    counted, since = first_batch or (0, started)
    speed = (len(items) - counted) / max(ended - since, 1e-9)
    return features, ended - started, speed


def _warm_up(compute: BatchFeatures, image_size: int, batch: int) -> None:
    """One untimed pass on a blank batch, for a sample too small to time after its first (the
    backbone's folded copy is made on it too)."""
    compute(torch.zeros(batch, 3, image_size, image_size))


def _save(
    store: FeatureStore,
    key: FeatureKey,
    stored: StoredFeatures,
    digests: Sequence[str],
    features: torch.Tensor,
    speed: float | None,
    tracker: Tracker,
) -> None:
    try:
        store.save(key, stored, digests, features, speed)
    except OSError as exc:
        # The results do not need the cache; the next pass only takes longer.
        message = (
            f"The features could not be kept in {store.folder} ({exc.strerror or exc}); "
            "the next comparison will compute them again."
        )
        if message not in tracker.messages:
            tracker.messages.append(message)
