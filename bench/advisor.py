"""Honest check of the backbone advisor: does its ranking match real head-only training?

On real labelled images that ship with installed packages (no generated data):

- ``digits``: scikit-learn's scanned handwritten digits, 10 classes;
- ``textures``: patches cut from scikit-image's photographs of brick, grass, gravel, the moon's
  surface, coins and a printed page, 6 classes;
- ``faces``: scikit-image's LFW subset, faces against non-faces (2 classes),

every candidate backbone with weights on this computer is trained with the project's own
recipe (``tl_core.training.train``: head only, default settings) for several seeds, and the
advisor's ranking is compared with the mean real accuracy: Kendall tau and weighted tau
(``scipy.stats.weightedtau``, as in the SFDA benchmark), top-1 regret (best real accuracy minus
that of the recommended backbone), and band coverage (how often a run's best validation
accuracy lies inside the advisor's fold range). The data-free prior (ImageNet top-1 order) and
LogME alone are scored the same way. Finally the advisor's cost is put against one feature pass
of the default backbone over the same images.

    .venv/bin/python bench/advisor.py [--per-class N] [--seeds N] [--image-size PX]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import kendalltau, weightedtau

from tl_core.analysis import advise
from tl_core.config import DEFAULT_BACKBONE, TrainConfig
from tl_core.models import list_backbones
from tl_core.training import train

TEXTURES = ("brick", "grass", "gravel", "moon", "coins", "page")
PATCH = 40


def write_digits(root: Path, per_class: int, rng: np.random.Generator) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True)
        picked = rng.choice(np.flatnonzero(digits.target == digit), per_class, replace=False)
        for index in picked:
            ink = (digits.images[index] / 16 * 255).astype(np.uint8)
            image = Image.fromarray(255 - ink).resize((64, 64), Image.Resampling.BICUBIC)
            image.save(folder / f"{index}.png")


def write_textures(root: Path, per_class: int, rng: np.random.Generator) -> None:
    import skimage.data

    for name in TEXTURES:
        photo = np.asarray(getattr(skimage.data, name)())
        if photo.ndim == 3:
            photo = (photo[..., :3] @ [0.299, 0.587, 0.114]).astype(np.uint8)
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            y = rng.integers(0, photo.shape[0] - PATCH)
            x = rng.integers(0, photo.shape[1] - PATCH)
            patch = np.rot90(photo[y : y + PATCH, x : x + PATCH], k=rng.integers(4))
            Image.fromarray(np.ascontiguousarray(patch)).save(folder / f"{i}.png")


def write_faces(root: Path, per_class: int, rng: np.random.Generator) -> None:
    import skimage.data

    images = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces, 25 x 25, in [0, 1]
    for label, offset in (("face", 0), ("not_face", 100)):
        folder = root / label
        folder.mkdir(parents=True)
        for index in rng.choice(100, min(per_class, 100), replace=False):
            pixels = (images[offset + index] * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((64, 64), Image.Resampling.BICUBIC).save(
                folder / f"{index}.png"
            )


DATASETS = {"digits": write_digits, "textures": write_textures, "faces": write_faces}


def train_head_only(data: Path, backbone: str, seed: int, image_size: int, work: Path) -> dict:
    """One run of the project's recipe (head only, its defaults); best val accuracy and time."""
    config = TrainConfig(
        data=str(data),
        backbone=backbone,
        freeze="all",
        image_size=image_size,
        seed=seed,
        device="cpu",
    )
    run = work / f"{backbone}-{seed}"
    started = time.perf_counter()
    train(config, run)
    seconds = time.perf_counter() - started
    metrics = json.loads((run / "metrics.json").read_text())
    return {"accuracy": metrics["best_val_accuracy"], "seconds": seconds}


def tau(truth: list[float], predicted: list[float]) -> tuple[float, float]:
    if len(set(truth)) < 2 or len(set(predicted)) < 2:
        return math.nan, math.nan  # a ranking of all-equal values says nothing
    return kendalltau(truth, predicted).statistic, weightedtau(truth, predicted).statistic


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--per-class", type=int, default=30, help="images per class")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per backbone")
    parser.add_argument("--image-size", type=int, default=96, help="input side for all")
    parser.add_argument("--max-images", type=int, default=500, help="advisor sample size")
    args = parser.parse_args()

    names = [s.name for s in list_backbones() if s.offline_weights]
    top1 = {s.name: s.info.imagenet_top1 for s in list_backbones()}
    print(f"candidates: {', '.join(names)}; {args.seeds} seeds; {args.image_size} px; CPU")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            rng = np.random.default_rng(0)
            data = Path(tmp) / dataset
            DATASETS[dataset](data, args.per_class, rng)

            started = time.perf_counter()
            result = advise(
                data,
                names,
                max_images=args.max_images,
                device="cpu",
                use_cache=False,  # the cost of a first comparison
                image_size=args.image_size,
            )
            advisor_seconds = time.perf_counter() - started

            runs = {
                name: [
                    train_head_only(data, name, seed, args.image_size, Path(tmp) / "runs" / dataset)
                    for seed in range(args.seeds)
                ]
                for name in names
            }
            truth = {n: float(np.mean([r["accuracy"] for r in runs[n]])) for n in names}
            noise = {n: float(np.std([r["accuracy"] for r in runs[n]])) for n in names}
            probe = {c.backbone: c for c in result.candidates}

            print(f"\n== {dataset}: {result.num_images} images, {result.num_classes} classes")
            print(
                f"{'backbone':<24}{'real head-only acc':>20}{'advisor band':>22}"
                f"{'LogME':>9}{'IN top-1':>10}"
            )
            for n in sorted(names, key=lambda n: -truth[n]):
                c = probe[n]
                print(
                    f"{n:<24}{truth[n]:>13.1%} ±{noise[n]:>4.1%}"
                    f"{c.probe_accuracy:>10.1%} ({c.probe_low:.0%}–{c.probe_high:.0%})"
                    f"{c.logme:>9.3f}{top1[n]:>9.1f}%"
                )
            best = max(truth.values())
            true_list = [truth[n] for n in names]
            covered = sum(
                probe[n].probe_low <= r["accuracy"] <= probe[n].probe_high
                for n in names
                for r in runs[n]
            )
            rows = {
                "advisor (probe)": (
                    [probe[n].probe_accuracy for n in names],
                    result.recommended,
                    f"{covered}/{len(names) * args.seeds}",
                ),
                "LogME alone": (
                    [probe[n].logme for n in names],
                    max(names, key=lambda n: probe[n].logme),
                    "n/a",
                ),
                "ImageNet top-1 prior": (
                    [top1[n] for n in names],
                    max(names, key=lambda n: top1[n]),
                    "n/a",
                ),
            }
            print(f"{'method':<22}{'tau':>7}{'w-tau':>7}{'regret':>8}  {'pick':<24}coverage")
            for method, (scores, pick, coverage) in rows.items():
                k, w = tau(true_list, scores)
                regret = best - truth[pick]
                print(f"{method:<22}{fmt(k):>7}{fmt(w):>7}{regret:>8.1%}  {pick:<24}{coverage}")
                summary.append((method, dataset, k, w, regret))

            default = probe.get(DEFAULT_BACKBONE) or result.candidates[0]
            feature_pass = default.feature_seconds
            train_seconds = np.mean([r["seconds"] for r in runs[default.backbone]])
            print(
                f"cost: advisor {advisor_seconds:.1f} s (features "
                f"{sum(c.feature_seconds for c in result.candidates):.1f} s, scoring "
                f"{sum(c.scoring_seconds for c in result.candidates):.1f} s) = "
                f"{advisor_seconds / feature_pass:.1f} x one {default.backbone} feature pass "
                f"({feature_pass:.1f} s), {advisor_seconds / train_seconds:.1f} x one of its "
                f"head-only trainings ({train_seconds:.1f} s)"
            )

    print("\n== mean over datasets (nan where the real accuracies all tie)")
    for method in dict.fromkeys(m for m, *_ in summary):
        values = np.array([(k, w, r) for m, _, k, w, r in summary if m == method], dtype=float)
        k, w, regret = (float(np.mean(c[~np.isnan(c)])) if (~np.isnan(c)).any() else math.nan
                        for c in values.T)  # fmt: skip
        print(f"{method:<22} tau {fmt(k)}  w-tau {fmt(w)}  regret {regret:.1%}")


if __name__ == "__main__":
    main()
