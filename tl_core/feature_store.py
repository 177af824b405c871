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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from tl_core.preprocessing import Preprocessing
from tl_core.runs import save_weights, weights_metadata

FEATURE_CACHE_ENV = "TL_STUDIO_FEATURE_CACHE"
FEATURE_TENSOR = "features"

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
