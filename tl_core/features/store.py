"""Backbone features kept on disk, so the same image never goes through the same backbone twice.

A frozen backbone with fixed preprocessing maps an image file to the same vector every time.
The store keeps those vectors keyed by what decides them: the file's bytes (a hash, so a
renamed or copied file still hits and an edited one misses), the backbone, where its weights
came from, the preprocessing, the numeric precision and the timm version. One safetensors file
per backbone setting holds every image computed so far with it; new images are added to it.

Memory stays bounded as datasets grow: a file past ``FEATURE_MEMORY_BUDGET`` bytes is
memory-mapped rather than read (the OS pages rows in as they are used, and can drop them
again), every vector is a view of one matrix rather than an object of its own, and saving
streams the rows to disk in chunks instead of building the whole file in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch

from tl_core.common import atomic_write
from tl_core.models import Preprocessing

FEATURE_CACHE_ENV = "TL_STUDIO_FEATURE_CACHE"
FEATURE_TENSOR = "features"
RANDOM_INIT = "random init"  # create_model's weights source without pretrained weights
# Feature files larger than this are memory-mapped instead of read into memory: 256 MiB is
# 50,000 vectors of 1,280 floats (EfficientNet-Lite0).
FEATURE_MEMORY_BUDGET = 256 * 1024**2
_CHUNK_ROWS = 4096  # rows written at a time when saving

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


class FeatureRows(Mapping[str, torch.Tensor]):
    """Feature vectors by file digest, kept as one matrix: a row is a view, not an object.

    Args:
        digests: The digest of each row of ``matrix``.
        matrix: One float32 vector per row.
        mapped_from: The file ``matrix`` is memory-mapped from; None when it is in memory.
    """

    def __init__(
        self, digests: Sequence[str], matrix: torch.Tensor, mapped_from: Path | None = None
    ):
        if len(digests) != len(matrix):
            raise ValueError(f"{len(digests)} digests for {len(matrix)} feature rows")
        self.matrix = matrix
        self.mapped_from = mapped_from
        self._index = {digest: row for row, digest in enumerate(digests)}

    def __getitem__(self, digest: str) -> torch.Tensor:
        return self.matrix[self._index[digest]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: object) -> bool:
        return digest in self._index

    def stack(self, digests: Sequence[str]) -> torch.Tensor:
        """The rows of ``digests``, in that order, as one tensor in memory."""
        return self.matrix[torch.tensor([self._index[d] for d in digests], dtype=torch.int64)]

    @property
    def memory_mapped(self) -> bool:
        """True when the rows are read from the file on disk as they are used."""
        return self.mapped_from is not None


@dataclass(frozen=True)
class StoredFeatures:
    """What the store holds for one key.

    Attributes:
        rows: Feature vector of each file digest (a :class:`FeatureRows` when loaded).
        images_per_second: The backbone's speed, measured when the features were computed.
        speed_images: How many images that speed was measured on.
    """

    rows: Mapping[str, torch.Tensor]
    images_per_second: float | None = None
    speed_images: int = 0


class FeatureStore:
    """Feature vectors on disk, one safetensors file per :class:`FeatureKey`.

    Args:
        folder: Where the files live; created on the first save.
        memory_budget: Files with more feature bytes than this are memory-mapped when loaded.
    """

    def __init__(self, folder: str | Path, memory_budget: int = FEATURE_MEMORY_BUDGET):
        self.folder = Path(folder)
        self.memory_budget = memory_budget

    def path(self, key: FeatureKey) -> Path:
        return self.folder / key.file_name()

    def load(self, key: FeatureKey) -> StoredFeatures:
        """The stored vectors for ``key``; nothing when there are none or the file is damaged."""
        path = self.path(key)
        if not path.is_file():
            return StoredFeatures({})
        try:
            digests, array, metadata = _read_features(path, self.memory_budget)
            speed = metadata.get("images_per_second")
            mapped = path if isinstance(array, np.memmap) else None
            return StoredFeatures(
                rows=FeatureRows(digests, torch.from_numpy(array), mapped),
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
        features: torch.Tensor | Sequence[torch.Tensor],
        images_per_second: float | None,
    ) -> None:
        """Adds ``features`` (one row per digest) to what was stored for ``key``, atomically.

        The rows are streamed to the file a chunk at a time, so saving never holds a second
        copy of the stored features. The speed is kept from whichever pass measured it on the
        most images.

        Raises:
            OSError: The folder cannot be written (a full disk, no permission).
        """
        if len(digests) != len(features):
            raise ValueError(f"{len(digests)} digests for {len(features)} feature rows")
        new = set(digests)
        kept = [digest for digest in stored.rows if digest not in new]
        speed, speed_images = stored.images_per_second, stored.speed_images
        if images_per_second is not None and len(digests) >= speed_images:
            speed, speed_images = images_per_second, len(digests)
        metadata = {
            "key": json.dumps(key.to_dict(), sort_keys=True),
            "digests": json.dumps(kept + list(digests)),
            "speed_images": str(speed_images),
            "images_per_second": "" if speed is None else repr(speed),
        }
        if isinstance(stored.rows, FeatureRows) and len(kept) == len(stored.rows):
            old: Sequence[torch.Tensor] = stored.rows.matrix  # rows in file order, untouched
        else:
            old = [stored.rows[digest] for digest in kept]
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_features(self.path(key), [old, features], metadata)


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
            self.store.save(
                self.key, self.stored, list(rows), list(rows.values()), images_per_second
            )
        except Exception:
            logger.warning(
                "Could not keep features in %s; the next run computes them again",
                self.store.folder,
                exc_info=True,
            )
            return False
        return True


# ----------------------------------------------------------------------------- the file format
# A safetensors file (readable by ``safetensors.torch.load_file``) with one float32 matrix:
# 8 bytes giving the header's length, the JSON header (shape, offsets, metadata), the rows.


def _write_features(
    path: Path, parts: Sequence[torch.Tensor | Sequence[torch.Tensor]], metadata: dict[str, str]
) -> None:
    """Writes the rows of ``parts``, in order, as one matrix, atomically and a chunk at a time."""
    rows = sum(len(part) for part in parts)
    first = next(part for part in parts if len(part))
    width = int(first[0].numel())
    header = {
        FEATURE_TENSOR: {
            "dtype": "F32",
            "shape": [rows, width],
            "data_offsets": [0, rows * width * 4],
        },
        "__metadata__": metadata,
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors does

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            file.write(struct.pack("<Q", len(encoded)))
            file.write(encoded)
            for part in parts:
                for start in range(0, len(part), _CHUNK_ROWS):
                    chunk = part[start : start + _CHUNK_ROWS]
                    block = chunk if isinstance(chunk, torch.Tensor) else torch.stack(chunk)
                    block = block.detach().to("cpu", torch.float32).reshape(len(block), width)
                    file.write(block.contiguous().numpy().tobytes())

    atomic_write(path, write)


def _read_features(path: Path, memory_budget: int) -> tuple[list[str], np.ndarray, dict]:
    """The digests, the feature matrix (memory-mapped past ``memory_budget`` bytes) and the
    metadata of a feature file.

    Raises:
        ValueError: The file is cut short or is not a feature file.
    """
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    entry = header[FEATURE_TENSOR]
    metadata = header.get("__metadata__") or {}
    digests = json.loads(metadata["digests"])
    rows, width = entry["shape"]
    start, end = entry["data_offsets"]
    offset = 8 + length + start
    if entry["dtype"] != "F32" or end - start != rows * width * 4 or len(digests) != rows:
        raise ValueError(f"{path.name} is not a float32 matrix with one row per digest")
    if path.stat().st_size < offset + end - start:
        raise ValueError(f"{path.name} is cut short")
    if end - start > memory_budget:
        # Copy-on-write: a tensor may be written to without ever changing the file.
        array = np.memmap(path, np.float32, mode="c", offset=offset, shape=(rows, width))
    else:
        array = np.fromfile(path, np.float32, count=rows * width, offset=offset)
        array = array.reshape(rows, width)
    return digests, array, metadata
