"""The four training modes side by side: validation accuracy and time at equal epochs.

On real images that ship with installed packages (no generated data):

- ``digits``: scikit-learn's scanned handwritten digits, 10 classes, upscaled to 64 pixels: a
  domain far from ImageNet's photographs;
- ``textures``: patches of scikit-image's photographs of brick, grass, gravel, the moon's
  surface, coins and a printed page, 6 classes: closer to ImageNet.

Each mode trains the default backbone (pretrained, offline weights) with the project's own
recipe (``tl_core.training.train``) and the same data, split, seed and epochs; fine-tune
freezes
half of the backbone's groups. Early stopping is off, so every mode trains every epoch. The
table gives the best validation accuracy with its 95 % Wilson interval, and the wall time.

    .venv/bin/python bench/modes.py [--epochs N] [--per-class N] [--image-size PX] [--device D]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
# bench/advisor.py writes the real datasets that every bench trains on.
from advisor import write_digits, write_textures  # noqa: E402

from tl_core.common import format_accuracy
from tl_core.config import DEFAULT_BACKBONE, FINE_TUNE, MODES, TrainConfig
from tl_core.models import create_model, layer_groups
from tl_core.training import train

DATASETS = {"digits": write_digits, "textures": write_textures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,textures")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    model, _ = create_model(args.backbone, None, pretrained=False)
    half = (len(layer_groups(model)) - 1) // 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            data = Path(tmp) / name
            DATASETS[name](data, args.per_class, np.random.default_rng(0))
            for mode in MODES:
                config = TrainConfig(
                    data=str(data),
                    backbone=args.backbone,
                    mode=mode,
                    freeze=str(half) if mode == FINE_TUNE else None,
                    epochs=args.epochs,
                    image_size=args.image_size,
                    early_stopping_patience=0,
                    device=args.device,
                )
                run = Path(tmp) / f"{name}-{mode}"
                started = time.perf_counter()
                train(config, run)
                seconds = time.perf_counter() - started
                metrics = json.loads((run / "metrics.json").read_text())
                val = len(json.loads((run / "split.json").read_text())["val"])
                best = max(row["val_accuracy"] for row in metrics["history"])
                rows.append(
                    dict(
                        dataset=name,
                        mode=mode if mode != FINE_TUNE else f"{mode} (freeze {half})",
                        accuracy=best,
                        accuracy_text=format_accuracy(best, val),
                        seconds=seconds,
                    )
                )
                print(f"{name} {mode}: {rows[-1]['accuracy_text']} in {seconds:.1f} s", flush=True)
    print(
        f"\n{args.backbone}, {args.epochs} epochs, {args.per_class} images per class, device "
        f"{args.device}\n"
    )
    print("| dataset | mode | best validation accuracy | seconds |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dataset']} | {row['mode']} | {row['accuracy_text']} | {row['seconds']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
