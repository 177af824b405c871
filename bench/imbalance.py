"""What does weighting the loss by class buy, and from which imbalance on?

Real labelled images (a dataset of ``bench/advisor.py``, scikit-learn's digits by default) are
split into a balanced validation folder and a pool of training images. For each imbalance
ratio r, half of the classes keep every training image and the other half keep 1/r of them;
the project's own recipe (``tl_core.training.train``: default backbone, head only, backbone
features computed once and kept in a feature store) then trains with the loss weighted by class
and without, for several seeds. On the balanced validation images it prints:

- balanced accuracy (mean recall over classes), which counts a small class as much as a big one;
- the mean recall of the shrunken classes, where imbalance hurts;
- plain accuracy, which a balanced validation set makes equal to balanced accuracy up to rounding.

The ratio at which weighting starts to pay is what ``class_weighting="auto"`` should use
(``tl_core.config.train_config.AUTO_CLASS_WEIGHTING_RATIO``).

    .venv/bin/python bench/imbalance.py [--dataset digits] [--ratios 1,2,3,5,10] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from advisor import DATASETS  # noqa: E402  (bench/advisor.py: the real datasets)

from tl_core.config import TrainConfig
from tl_core.runs import PREDICTIONS_FILE
from tl_core.training import train


def split_pool(root: Path, val_per_class: int, rng: np.random.Generator) -> tuple[Path, Path]:
    """Moves ``val_per_class`` images of every class of ``root`` into a validation folder."""
    train_pool, val = root.parent / "pool", root.parent / "val"
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        picked = set(rng.choice(len(files), val_per_class, replace=False).tolist())
        for index, path in enumerate(files):
            target = (val if index in picked else train_pool) / folder.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    return train_pool, val


def imbalanced_copy(pool: Path, ratio: float, target: Path) -> list[str]:
    """Links the pool into ``target``, keeping 1/ratio of the images of every other class.

    Returns:
        The shrunken classes.
    """
    classes = sorted(p.name for p in pool.iterdir() if p.is_dir())
    small = classes[1::2]
    for name in classes:
        files = sorted((pool / name).iterdir())
        keep = files if name not in small else files[: max(2, round(len(files) / ratio))]
        (target / name).mkdir(parents=True)
        for path in keep:
            os.link(path, target / name / path.name)
    return small


def recalls(run: Path) -> pd.Series:
    """Recall per class of the best epoch on the validation images."""
    predictions = pd.read_csv(run / PREDICTIONS_FILE, dtype={"true_label": str})
    predictions["predicted_label"] = predictions.predicted_label.astype(str)
    hits = predictions.true_label == predictions.predicted_label
    return hits.groupby(predictions.true_label).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    parser.add_argument("--per-class", type=int, default=100, help="images per class in all")
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--ratios", default="1,2,3,5,10")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=None, help="input side")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        DATASETS[args.dataset](work / "all", args.per_class, rng)
        pool, val = split_pool(work / "all", args.val_per_class, rng)
        for ratio in (float(r) for r in args.ratios.split(",")):
            data = work / f"ratio-{ratio:g}"
            small = imbalanced_copy(pool, ratio, data)
            for weighting in ("off", "on"):
                for seed in range(args.seeds):
                    run = work / "runs" / f"{data.name}-{weighting}-{seed}"
                    config = TrainConfig(
                        data=str(data),
                        val_data=str(val),
                        freeze="all",
                        epochs=args.epochs,
                        image_size=args.image_size,
                        class_weighting=weighting,
                        seed=seed,
                        device="cpu",
                    )
                    train(config, run, feature_cache=work / "features")
                    recall = recalls(run)
                    rows.append(
                        {
                            "ratio": ratio,
                            "weighting": weighting,
                            "seed": seed,
                            "balanced accuracy": recall.mean(),
                            "small classes' recall": recall[small].mean(),
                        }
                    )
                    print(rows[-1], flush=True)
    table = (
        pd.DataFrame(rows)
        .groupby(["ratio", "weighting"])[["balanced accuracy", "small classes' recall"]]
        .agg(["mean", "std"])
    )
    print(f"\n{args.dataset}, {args.seeds} seeds, {args.val_per_class} validation images per class")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
