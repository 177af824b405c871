"""Backbone features kept on disk, so the same image never goes through the same backbone twice.

A frozen backbone with fixed preprocessing maps an image file to the same vector every time.
The store keeps those vectors keyed by what decides them: the file's bytes (a hash, so a
renamed or copied file still hits and an edited one misses), the backbone, where its weights
came from, the preprocessing, the numeric precision and the timm version. One safetensors file
per backbone setting holds every image computed so far with it; new images are added to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from tl_core.preprocessing import Preprocessing
from tl_core.runs import save_weights, weights_metadata

FEATURE_CACHE_ENV = "TL_STUDIO_FEATURE_CACHE"
FEATURE_TENSOR = "features"
RANDOM_INIT = "random init"  # create_model's weights source without pretrained weights

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where the command line keeps features: ``$TL_STUDIO_FEATURE_CACHE``, else the user's cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``tl-studio/features``."""
    if os.environ.get(FEATURE_CACHE_ENV):
        return Path(os.environ[FEATURE_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tl-studio" / "features"


def file_digest(path: str | Path) -> str:
    """Hash of a file's bytes: the same 128-bit BLAKE2b the dataset scan uses for duplicates."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """Everything besides the image that decides its feature vector.

    Attributes:
        backbone: timm model name.
        weights_source: Where the weights came from (``create_model``'s description).
        preprocessing: Resize, crop and normalisation of the images.
        precision: ``"float32"``, or the autocast type on a GPU (features differ slightly).
    """

    backbone: str
    weights_source: str
    preprocessing: Preprocessing
    precision: str

    def to_dict(self) -> dict:
        return {
            "backbone": self.backbone,
            "weights_source": self.weights_source,
            "preprocessing": self.preprocessing.to_dict(),
            "precision": self.precision,
            "timm": timm.__version__,
        }

    def file_name(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return f"{self.backbone}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"

    @property
    def reusable(self) -> bool:
        """False for random weights: they differ on every call, so their features never recur."""
        return self.weights_source != RANDOM_INIT


def precision_name(device: torch.device, autocast) -> str:
    """``"float32"`` on the CPU; on CUDA the type ``autocast()`` computes in, e.g.
    ``"torch.bfloat16"``."""
    if device.type != "cuda":
        return "float32"
    # torch.autocast names its type; a null context computes in float32.
    return str(getattr(autocast(), "fast_dtype", torch.float32))


def feature_key_for(
    backbone: str,
    weights_source: str,
    preprocessing: Preprocessing,
    device: torch.device,
    autocast,
    weights_file: str | Path | None = None,
) -> FeatureKey:
    """The key of a backbone's features, built the same way by every user of the store.

    Args:
        backbone: timm model name.
        weights_source: ``create_model``'s description of where the weights came from.
        preprocessing: How the images are resized and normalised.
        device: Where the backbone runs.
        autocast: A callable returning the mixed-precision context for ``device``.
        weights_file: The file the weights were read from, if any. Its description names only
            the file, so its contents' digest is added: two different ``best.safetensors``
            must never share features.
    """
    if weights_file is not None and weights_source != RANDOM_INIT:
        weights_source = f"{weights_source} [blake2b {file_digest(weights_file)}]"
    return FeatureKey(backbone, weights_source, preprocessing, precision_name(device, autocast))


@dataclass(frozen=True)
class StoredFeatures:
    """What the store holds for one key.

    Attributes:
        rows: Feature vector of each file digest.
        images_per_second: The backbone's speed, measured when the features were computed.
        speed_images: How many images that speed was measured on.
    """

    rows: dict[str, torch.Tensor]
    images_per_second: float | None = None
    speed_images: int = 0


class FeatureStore:
    """Feature vectors on disk, one safetensors file per :class:`FeatureKey`.

    Args:
        folder: Where the files live; created on the first save.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, key: FeatureKey) -> Path:
        return self.folder / key.file_name()

    def load(self, key: FeatureKey) -> StoredFeatures:
        """The stored vectors for ``key``; nothing when there are none or the file is damaged."""
        path = self.path(key)
        if not path.is_file():
            return StoredFeatures({})
        try:
            metadata = weights_metadata(path)
            features = load_file(str(path))[FEATURE_TENSOR]
            digests = json.loads(metadata["digests"])
            if len(digests) != len(features):
                raise ValueError("digest list and feature rows differ in length")
            speed = metadata.get("images_per_second")
            return StoredFeatures(
                rows=dict(zip(digests, features, strict=True)),
                images_per_second=float(speed) if speed else None,
                speed_images=int(metadata.get("speed_images", 0)),
            )
        except Exception:  # a damaged cache only costs a recomputation
            logger.warning("Ignoring the unreadable feature cache %s", path, exc_info=True)
            return StoredFeatures({})

    def save(
        self,
        key: FeatureKey,
        stored: StoredFeatures,
        digests: Sequence[str],
        features: torch.Tensor,
        images_per_second: float | None,
    ) -> None:
        """Adds ``features`` (one row per digest) to what was stored for ``key``, atomically.

        The speed is kept from whichever pass measured it on the most images.

        Raises:
            OSError: The folder cannot be written (a full disk, no permission).
        """
        rows = dict(stored.rows)
        rows.update(zip(digests, features, strict=True))
        speed, speed_images = stored.images_per_second, stored.speed_images
        if images_per_second is not None and len(digests) >= speed_images:
            speed, speed_images = images_per_second, len(digests)
        metadata = {
            "key": json.dumps(key.to_dict(), sort_keys=True),
            "digests": json.dumps(list(rows)),
            "speed_images": str(speed_images),
            "images_per_second": "" if speed is None else repr(speed),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        save_weights(self.path(key), {FEATURE_TENSOR: torch.stack(list(rows.values()))}, metadata)


@dataclass
class KeyedStore:
    """A store opened at one key: the features it holds, and where new ones go.

    Attributes:
        store: The store.
        key: The backbone setting.
        stored: What the store held for ``key`` when it was opened.
    """

    store: FeatureStore
    key: FeatureKey
    stored: StoredFeatures

    @classmethod
    def open(cls, folder: str | Path, key: FeatureKey) -> KeyedStore | None:
        """The store in ``folder`` at ``key``; None when ``key``'s features are never reused."""
        if not key.reusable:
            return None
        store = FeatureStore(folder)
        return cls(store, key, store.load(key))

    def add(self, rows: Mapping[str, torch.Tensor], images_per_second: float | None) -> bool:
        """Keeps ``rows`` (feature vectors by digest) in the store.

        A store that cannot be written (a full disk, no permission) only means the next run
        computes these features again: the failure is logged, never raised.

        Returns:
            Whether the rows were kept.
        """
        if not rows:
            return True
        try:
            features = torch.stack(list(rows.values()))
            self.store.save(self.key, self.stored, list(rows), features, images_per_second)
        except Exception:
            logger.warning(
                "Could not keep features in %s; the next run computes them again",
                self.store.folder,
                exc_info=True,
            )
            return False
        return True
