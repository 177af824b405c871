"""Which finds copies better: the perceptual fingerprint, a difference hash, or embeddings?

Real images that ship with installed packages (the sample dataset, scikit-image's photographs
cut into quarters, scikit-learn's digits, scikit-image's LFW faces) are written as files, and a
third of them get copies: resized to half and to 1.5 times, re-encoded as JPEG at quality 30 and
90, and cropped by 3 % and 6 % on each side. Every image is then fingerprinted exactly as the
dataset scan does it (the file decoded at the scan's draft size), and every pair is scored by:

- ``fingerprint``: ``tl_core.data.image_hash`` (DCT hash of the grey image plus mean colour);
- ``phash-grey``: the same DCT hash without the colour check;
- ``dhash``: a 64-bit difference hash (adjacent-pixel signs of a 9 x 8 grey thumbnail);
- ``cosine``: cosine similarity of the default backbone's pooled features (the feature cache
  the label-issue finder uses).

For each, at the threshold the app uses (and at the best one), it prints how many copy pairs
are found (recall, per kind of copy) and how many pairs of different images are taken for
copies (false pairs), and the cost per image.

    .venv/bin/python bench/near_duplicates.py [--no-embeddings]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tl_core.data import ImageItem, image_hash, load_image
from tl_core.data.scanning import _SCAN_DRAFT_SIZE

COPIES = {
    "resize 0.5x": lambda im: im.resize(_scaled(im, 0.5), Image.Resampling.BILINEAR),
    "resize 1.5x": lambda im: im.resize(_scaled(im, 1.5), Image.Resampling.BICUBIC),
    "jpeg q30": lambda im: im,
    "jpeg q90": lambda im: im,
    "crop 3%": lambda im: _crop(im, 0.03),
    "crop 6%": lambda im: _crop(im, 0.06),
}
JPEG_QUALITY = {"jpeg q30": 30, "jpeg q90": 90}


def _scaled(image: Image.Image, factor: float) -> tuple[int, int]:
    return max(8, round(image.width * factor)), max(8, round(image.height * factor))


def _crop(image: Image.Image, share: float) -> Image.Image:
    dx, dy = round(image.width * share), round(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def real_images() -> list[tuple[str, Image.Image]]:
    """(source name, RGB image) for every original."""
    import skimage.data
    from sklearn.datasets import load_digits

    images = [
        (f"sample/{path.parent.name}/{path.stem}", Image.open(path).convert("RGB"))
        for path in sorted(Path("assets/sample_dataset").rglob("*.jpg"))
    ]
    for name in ("astronaut", "camera", "chelsea", "coffee", "coins", "horse", "moon", "page",
                 "rocket", "brick", "grass", "gravel", "text", "hubble_deep_field", "retina",
                 "immunohistochemistry", "logo", "clock", "cell", "microaneurysms"):  # fmt: skip
        try:
            photo = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        except Exception:  # an image that needs a download: skipped
            continue
        w, h = photo.width // 2, photo.height // 2
        for qx in range(2):
            for qy in range(2):
                images.append(
                    (f"photo/{name}/{qx}{qy}", photo.crop((qx * w, qy * h, qx * w + w, qy * h + h)))
                )
    digits = load_digits()
    for index in range(150):
        ink = (digits.images[index] / 16 * 255).astype(np.uint8)
        image = Image.fromarray(255 - ink).resize((64, 64), Image.Resampling.BICUBIC)
        images.append((f"digit/{digits.target[index]}/{index}", image.convert("RGB")))
    faces = skimage.data.lfw_subset()
    for index in range(0, 200, 2):
        face = Image.fromarray((faces[index] * 255).astype(np.uint8)).resize((64, 64))
        images.append((f"lfw/{index}", face.convert("RGB")))
    return images


def write_files(folder: Path, images: list[tuple[str, Image.Image]]):
    """Originals as PNG, copies of every third original; returns (items, source, kind)."""
    items, sources, kinds = [], [], []
    for number, (name, image) in enumerate(images):
        variants = [("original", image)]
        if number % 3 == 0:
            variants += [(kind, make(image)) for kind, make in COPIES.items()]
        for kind, variant in variants:
            stem = f"{number:04d}_{kind.replace(' ', '_').replace('%', '')}"
            if kind in JPEG_QUALITY:
                path = folder / f"{stem}.jpg"
                variant.save(path, quality=JPEG_QUALITY[kind])
            else:
                path = folder / f"{stem}.png"
                variant.save(path)
            items.append(ImageItem(path, name.split("/")[0]))
            sources.append(number)
            kinds.append(kind)
    return items, np.array(sources), kinds


def dhash(image: Image.Image) -> int:
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), float)
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming_matrix(values: list[int]) -> np.ndarray:
    hashes = np.array(values, dtype=np.uint64)
    return np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(float)


def scores(items: list[ImageItem], embeddings: bool) -> dict[str, tuple[np.ndarray, float]]:
    """Method name -> (pairwise distance matrix, smaller = more alike; seconds per image)."""
    started = time.perf_counter()
    pictures = [load_image(item.path, _SCAN_DRAFT_SIZE) for item in items]
    decode_seconds = (time.perf_counter() - started) / len(items)
    out = {}
    started = time.perf_counter()
    prints = [image_hash.fingerprint(p) for p in pictures]
    per_image = decode_seconds + (time.perf_counter() - started) / len(items)
    flat = np.array([p is None for p in prints])
    bits = hamming_matrix([0 if p is None else p.bits for p in prints])
    colors = np.array([(0, 0, 0) if p is None else p.color for p in prints], float)
    color_gap = np.abs(colors[:, None, :] - colors[None, :, :]).max(-1)
    bits[flat, :] = bits[:, flat] = np.inf
    out["phash-grey"] = (bits, per_image)
    gated = bits.copy()
    gated[color_gap > image_hash.NEAR_DUPLICATE_COLOR] = np.inf
    out["fingerprint"] = (gated, per_image)
    started = time.perf_counter()
    dhashes = [dhash(p) for p in pictures]
    per_image = decode_seconds + (time.perf_counter() - started) / len(items)
    out["dhash"] = (hamming_matrix(dhashes), per_image)
    if embeddings:
        out["cosine"] = cosine_distances(items)
    return out


def cosine_distances(items: list[ImageItem]) -> tuple[np.ndarray, float]:
    import threading

    import torch

    from tl_core.config import DEFAULT_BACKBONE
    from tl_core.features import Tracker, backbone_features, file_digest
    from tl_core.models import Preprocessing, create_model

    model, source = create_model(DEFAULT_BACKBONE, 2, pretrained=True)
    preprocessing = Preprocessing.for_model(model, None)
    digests = [file_digest(item.path) for item in items]
    tracker = Tracker(len(items), None, threading.Event(), RuntimeError)
    started = time.perf_counter()
    computed = backbone_features(
        DEFAULT_BACKBONE, model, source, preprocessing, items, digests,
        torch.device("cpu"), None, tracker,
    )  # fmt: skip
    per_image = (time.perf_counter() - started) / len(items)
    features = computed.matrix(digests).double().numpy()
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return 1 - features @ features.T, per_image


def evaluate(distance: np.ndarray, sources: np.ndarray, kinds: list[str], threshold: float):
    """(recall of original-copy pairs per kind, false pairs of different images)."""
    if threshold is None:
        return dict.fromkeys(COPIES, 0.0), 0
    kinds_array = np.array(kinds)
    recall = {}
    originals = {
        s: i for i, (s, k) in enumerate(zip(sources, kinds, strict=True)) if k == "original"
    }
    for kind in COPIES:
        copies = np.flatnonzero(kinds_array == kind)
        found = [distance[originals[sources[c]], c] <= threshold for c in copies]
        recall[kind] = float(np.mean(found))
    different = sources[:, None] != sources[None, :]
    upper = np.triu(np.ones_like(different), 1)
    false = (distance <= threshold) & different & upper
    return recall, int(false.sum())


def false_pairs_by_family(distance, sources, families, threshold) -> str:
    """Where the false pairs come from: ``digit: 12, lfw: 3``."""
    rows, cols = np.nonzero(np.triu(distance <= threshold, 1) & (sources[:, None] != sources))
    counts: dict[str, int] = {}
    for i, j in zip(rows, cols, strict=True):
        key = families[i] if families[i] == families[j] else f"{families[i]}/{families[j]}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-embeddings", action="store_true", help="skip the backbone")
    args = parser.parse_args()
    images = real_images()
    with tempfile.TemporaryDirectory() as tmp:
        items, sources, kinds = write_files(Path(tmp), images)
        print(
            f"{len(images)} real images, {sum(k != 'original' for k in kinds)} copies, "
            f"{len(items)} files\n"
        )
        results = scores(items, not args.no_embeddings)
        families = [item.label for item in items]
        app_thresholds = {
            "fingerprint": image_hash.NEAR_DUPLICATE_BITS,
            "phash-grey": image_hash.NEAR_DUPLICATE_BITS,
            "dhash": image_hash.NEAR_DUPLICATE_BITS,
            "cosine": None,
        }
        header = f"{'method':12} {'threshold':>9} {'recall':>7} {'false pairs':>11}  per kind"
        print(header)
        for name, (distance, per_image) in results.items():
            candidates = sorted(set(np.round(distance[np.isfinite(distance)], 4).ravel()))
            # The best threshold: the most recall with no false pair.
            best = None
            for threshold in candidates[:: max(1, len(candidates) // 400)] + [0]:
                recall, false_pairs = evaluate(distance, sources, kinds, threshold)
                if false_pairs == 0 and (best is None or threshold > best):
                    best = threshold
            shown = [("best", best)]
            if app_thresholds.get(name) is not None:
                shown.insert(0, ("app", app_thresholds[name]))
            for label, threshold in shown:
                recall, false_pairs = evaluate(distance, sources, kinds, threshold)
                per_kind = " ".join(f"{k}={v:.2f}" for k, v in recall.items())
                mean = np.mean(list(recall.values()))
                if threshold is None:
                    print(f"{name:12} {'-':>9} every threshold pairs different images")
                    continue
                print(
                    f"{name:12} {threshold:>9.4g} {mean:>7.3f} {false_pairs:>11}  "
                    f"({label}) {per_kind}"
                )
                if false_pairs:
                    print(
                        f"{'':12} false pairs: "
                        + false_pairs_by_family(distance, sources, families, threshold)
                    )
            print(f"{'':12} cost {1000 * per_image:.2f} ms per image")


if __name__ == "__main__":
    main()
