"""Perceptual fingerprints, which stay close when an image is resized, re-encoded or cropped.

A fingerprint is the DCT hash ("pHash") of the image in grey, shrunk to 32 x 32: its 8 x 8
lowest spatial frequencies, each bit saying whether a coefficient lies above their median,
plus the image's mean colour. Resizing, JPEG re-encoding and small crops barely move either,
so copies land a few bits and a few grey levels apart, while different photographs differ in
about half of the 64 bits. The colour matters for simple pictures, where two different images
can share a layout (a square in the middle) and so a hash. ``bench/near_duplicates.py``
measured this against a difference hash and against backbone embeddings on real images.

Grouping uses multi-index hashing: two hashes at most ``d`` bits apart agree exactly on at
least one of ``d + 1`` disjoint bands of bits (pigeonhole), so only images sharing a band are
compared, and grouping thousands of images costs milliseconds rather than all pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

HASH_BITS = 64
_SIDE = 32  # the grey thumbnail the DCT runs on
_LOW = 8  # the low-frequency block kept: _LOW * _LOW = HASH_BITS bits
# bench/near_duplicates.py on 420 real images and 840 copies: at 6 bits 94-99 % of resized and
# JPEG-re-encoded copies are found, 61 % of 3 %-cropped ones, and no two different images pair
# up except 7 pairs of scikit-learn's 8 x 8-pixel digits; at 10 bits those become 277 pairs.
# Backbone embeddings did worse: at the cosine distance with no false pair they found 19 % of
# copies (faces and digits sit close in embedding space), at ~500 times the cost per image.
NEAR_DUPLICATE_BITS = 6
NEAR_DUPLICATE_COLOR = 12  # largest difference of a mean colour channel, in 0-255 levels
# A thumbnail this flat (grey-level standard deviation, 0-255) has no structure to hash: its
# bits would be noise, and every blank image would match every other.
_MIN_CONTRAST = 2.0


@dataclass(frozen=True, slots=True)  # one per scanned image: no __dict__ each
class Fingerprint:
    """What two copies of one picture share.

    Attributes:
        bits: The 64-bit DCT hash of the grey image.
        color: Mean red, green and blue, 0-255.
    """

    bits: int
    color: tuple[int, int, int]

    def distance(self, other: Fingerprint) -> int:
        """Hamming distance of the hashes."""
        return (self.bits ^ other.bits).bit_count()

    def matches(
        self,
        other: Fingerprint,
        max_bits: int = NEAR_DUPLICATE_BITS,
        max_color: int = NEAR_DUPLICATE_COLOR,
    ) -> bool:
        """True when ``other`` looks like a copy of this image."""
        return self.distance(other) <= max_bits and all(
            abs(a - b) <= max_color for a, b in zip(self.color, other.color, strict=True)
        )


@cache
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``m @ x`` transforms the columns of ``x``."""
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


def fingerprint(image: Image.Image) -> Fingerprint | None:
    """The fingerprint of ``image``, or None for an image too flat to tell apart.

    Args:
        image: An RGB PIL image; it is shrunk with a box filter, which averages every source
            pixel, so the result hardly depends on the image's own size.
    """
    small = np.asarray(image.convert("RGB").resize((_SIDE, _SIDE), Image.Resampling.BOX), float)
    grey = small @ [0.299, 0.587, 0.114]  # ITU-R 601 luma, as PIL's "L" mode
    if grey.std() < _MIN_CONTRAST:
        return None
    m = _dct_matrix(_SIDE)
    low = (m @ grey @ m.T)[:_LOW, :_LOW].ravel()
    # The DC term is the mean brightness, not structure: the median is taken over the rest.
    bits = np.packbits(low > np.median(low[1:]))
    color = tuple(int(round(c)) for c in small.mean(axis=(0, 1)))
    return Fingerprint(int.from_bytes(bits.tobytes(), "big"), color)


def similar_pairs(
    prints: Sequence[Fingerprint | None],
    max_bits: int = NEAR_DUPLICATE_BITS,
    max_color: int = NEAR_DUPLICATE_COLOR,
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose fingerprints match; None is never paired.

    The hashes go into numpy arrays and the candidates of each band are compared a vector at a
    time, never held as Python objects: memory stays linear in the images, and the
    comparisons (about ``bands * N**2 / 2**band_bits`` for spread-out hashes) run at numpy's
    speed: 50,000 images take about a second instead of half a minute.
    """
    present = np.array([i for i, value in enumerate(prints) if value is not None], np.int64)
    if len(present) < 2:
        return []
    bits = np.array([prints[i].bits for i in present], np.uint64)
    colors = np.array([prints[i].color for i in present], np.int16)
    bands = max_bits + 1
    edges = [HASH_BITS * band // bands for band in range(bands + 1)]
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for band in range(bands):
        mask = np.uint64((1 << (edges[band + 1] - edges[band])) - 1)
        keys = (bits >> np.uint64(edges[band])) & mask
        # Sorted by band value, a bucket is a run of equal keys, in index order (stable sort).
        # Comparing each position with the one ``offset`` further on, for growing offsets,
        # visits every pair within every run once, and each step is one vector operation.
        order = np.argsort(keys, kind="stable")
        sorted_keys, sorted_bits = keys[order], bits[order]
        for offset in range(1, len(order)):
            same = sorted_keys[:-offset] == sorted_keys[offset:]
            if not same.any():
                break  # no run is longer than offset
            # Contiguous slices, no gathers: only the few pairs that pass are looked up.
            close = same & (
                np.bitwise_count(sorted_bits[:-offset] ^ sorted_bits[offset:]) <= max_bits
            )
            first = np.flatnonzero(close)
            i, j = order[first], order[first + offset]
            similar = (np.abs(colors[i] - colors[j]) <= max_color).all(axis=1)
            found.append((i[similar], j[similar]))
    found = [(i, j) for i, j in found if len(i)]
    if not found:
        return []
    # One code per pair (i * n + j) removes the pairs found in several bands, and sorts them.
    n = len(prints)
    codes = np.unique(np.concatenate([present[i] * n + present[j] for i, j in found]))
    return [(int(i), int(j)) for i, j in zip(codes // n, codes % n, strict=True)]


def connected_groups(count: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Groups of indices joined by ``pairs`` (transitively), two or more each, ordered by their
    smallest index; each group is sorted.

    Only the indices named in ``pairs`` are tracked, so memory follows the copies found, not
    ``count``.
    """
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        if not (0 <= i < count and 0 <= j < count):
            raise IndexError(f"pair {(i, j)} outside 0..{count - 1}")
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in sorted(parent):
        groups[root(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
