"""Several labels per image: per-tag F1 and mean average precision of the project's recipe
against a plain timm + BCE loop at equal settings, on real images with known tags.

The images are composites of scikit-learn's handwritten digits (real scans, 8x8 upscaled): a 2x2
grid whose cells each hold a digit from 0 to 5 or stay blank, so an image carries 0 to 4 tags
(the digits it shows). Training composites use the first 60 % of the scans of each digit, test
composites the rest, so no scan is both trained and tested on.

- **TL Studio**: ``tl_core.training.train`` on the folder with its ``labels.csv`` (head only on
  the default backbone's features computed once; BCE with per-tag positive weights where tags
  are imbalanced; its warm-up and cosine schedule); per-tag thresholds chosen on its validation
  split; scored on the test composites with ``evaluate_run``.
- **Plain loop**: the same backbone and pretrained weights, image size, training images (the
  run's own training split), epochs, batch size, learning rate and AdamW weight decay; a
  linear layer trained with ``BCEWithLogitsLoss`` on the pooled features at a constant rate,
  read at 0.5, as a short hand-written timm script would.

Both read the same test composites. Prints per-tag F1, macro F1 and mAP for each seed, and the
mean over seeds.

    .venv/bin/python bench/multilabel.py [--train 600] [--test 300] [--epochs 15] [--seeds 2]

Measured (defaults, tf_efficientnet_lite0 offline weights, CPU, 2 seeds of 300 test composites):
TL Studio macro F1 0.785, mAP 0.854; plain loop macro F1 0.787, mAP 0.870. Per seed the macro
F1s are within 0.01 of each other either way; the plain loop's mAP was higher by 0.012 and
0.019 (its constant rate keeps learning to the last epoch, where the run keeps its best epoch by
validation F1 and decays its rate).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tl_core.config import DEFAULT_BACKBONE, TrainConfig
from tl_core.data import item_targets, scan_dataset
from tl_core.inference import (
    average_precisions,
    build_multi_label_evaluation,
    evaluate_run,
)
from tl_core.models import Preprocessing, create_model
from tl_core.training import train

TAGS = tuple(str(d) for d in range(6))
CELL = 48  # pixels per grid cell: 2x2 cells make a 96-pixel image


def digit_scans(fraction_for_training: float = 0.6) -> tuple[dict, dict]:
    """The scans of each digit 0-5 as 48-pixel ink-on-white images, split train/test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = {}, {}
    for tag in TAGS:
        indices = np.flatnonzero(digits.target == int(tag))
        cut = int(len(indices) * fraction_for_training)
        images = [
            Image.fromarray(255 - (digits.images[i] / 16 * 255).astype(np.uint8)).resize(
                (CELL, CELL), Image.Resampling.BICUBIC
            )
            for i in indices
        ]
        train[tag], test[tag] = images[:cut], images[cut:]
    return train, test


def write_composites(folder: Path, scans: dict, count: int, rng: np.random.Generator) -> Path:
    """``count`` composites and their labels.csv; each cell holds a digit with probability
    0.45 (a digit at most once per image)."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for n in range(count):
        canvas = Image.new("L", (2 * CELL, 2 * CELL), 255)
        shown = rng.permutation(len(TAGS))[:4]
        tags = set()
        for cell, tag_index in enumerate(shown):
            if rng.random() < 0.45:
                tag = TAGS[tag_index]
                scan = scans[tag][rng.integers(len(scans[tag]))]
                canvas.paste(scan, ((cell % 2) * CELL, (cell // 2) * CELL))
                tags.add(tag)
        name = f"images/{n:05d}.png"
        canvas.convert("RGB").save(folder / name)
        rows.append((name, ";".join(sorted(tags))))
    with open(folder / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "labels"])
        writer.writerows(rows)
    return folder


@torch.no_grad()
def pooled(model: torch.nn.Module, transform, paths: list[Path]) -> torch.Tensor:
    rows = []
    for start in range(0, len(paths), 64):
        batch = torch.stack(
            [transform(Image.open(p).convert("RGB")) for p in paths[start : start + 64]]
        )
        rows.append(model.forward_head(model.forward_features(batch), pre_logits=True))
    return torch.cat(rows)


def plain_loop(config: TrainConfig, run: Path, test: Path) -> tuple[np.ndarray, np.ndarray]:
    """The plain timm + BCE baseline on the run's own training images; the test set's
    sigmoid probabilities and targets."""
    split = json.loads((run / "split.json").read_text())
    train_paths = [Path(p) for p, _ in split["train"]]
    train_targets = torch.tensor(
        [[float(t in tags.split(";")) for t in TAGS] for _, tags in split["train"]]
    )
    model, _ = create_model(config.backbone, len(TAGS), pretrained=True)
    model.eval()
    transform = Preprocessing.for_model(model, config.image_size).eval_transform()
    features = pooled(model, transform, train_paths)
    report = scan_dataset(test)
    test_features = pooled(model, transform, [i.path for i in report.items])
    test_targets = item_targets(report.items, list(TAGS)).numpy()
    torch.manual_seed(config.seed)
    head = torch.nn.Linear(features.shape[1], len(TAGS))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_function = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = loss_function(head(features[rows]), train_targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return head(test_features).sigmoid().numpy(), test_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600, help="training composites")
    parser.add_argument("--test", type=int, default=300, help="test composites")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    args = parser.parse_args()
    train_scans, test_scans = digit_scans()
    results = {"TL Studio": [], "plain timm + BCE": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            data = write_composites(root / f"train{seed}", train_scans, args.train, rng)
            test = write_composites(root / f"test{seed}", test_scans, args.test, rng)
            config = TrainConfig(
                data=str(data), backbone=args.backbone, freeze="all", image_size=96,
                epochs=args.epochs, seed=seed, device="cpu",
            )  # fmt: skip
            run = root / f"run{seed}"
            started = time.perf_counter()
            train(config, run)
            ours = evaluate_run(run, test, device="cpu")
            ours_seconds = time.perf_counter() - started
            started = time.perf_counter()
            probabilities, targets = plain_loop(config, run, test)
            plain = build_multi_label_evaluation(
                TAGS, ours.images, targets, probabilities, [0.5] * len(TAGS)
            )
            plain_seconds = time.perf_counter() - started
            for name, evaluation, seconds in (
                ("TL Studio", ours, ours_seconds),
                ("plain timm + BCE", plain, plain_seconds),
            ):
                f1 = evaluation.per_tag.set_index("tag").f1
                mean_ap = float(
                    np.nanmean(average_precisions(evaluation.probabilities, evaluation.targets))
                )
                results[name].append((f1, evaluation.macro_f1, mean_ap))
                per_tag = " ".join(f"{tag}:{value:.3f}" for tag, value in f1.items())
                print(
                    f"seed {seed} {name:17s} macro F1 {evaluation.macro_f1:.3f}  mAP "
                    f"{mean_ap:.3f}  per-tag F1 {per_tag}  ({seconds:.0f} s, "
                    f"{evaluation.num_images} test images)",
                    flush=True,
                )
    print()
    for name, rows in results.items():
        f1s = np.mean([list(r[0].values) for r in rows], axis=0)
        print(
            f"{name:17s} mean over {len(rows)} seeds: macro F1 {np.mean([r[1] for r in rows]):.3f}"
            f"  mAP {np.mean([r[2] for r in rows]):.3f}  per-tag F1 "
            + " ".join(f"{t}:{v:.3f}" for t, v in zip(TAGS, f1s, strict=True))
        )


if __name__ == "__main__":
    main()
