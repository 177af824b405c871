"""How well does ``tl-studio check --label-issues`` find wrong labels in real images?

Real labelled images that ship with installed packages (the datasets of ``bench/advisor.py``:
scikit-learn's digits, textures cut from scikit-image's photographs, scikit-image's faces) are
written as class folders, then a share of the images is moved into another class folder at
random: their labels are now wrong, and we know which. ``tl_core.analysis.label_issues`` (default
backbone, features on the CPU, 5-fold probe, cleanlab's confident learning) must find them:

- precision: the share of flagged images that really were flipped;
- recall: the share of flipped images that were flagged;
- precision at k: of the k most suspicious, how many were flipped (k = number flipped);
- seconds, with the feature pass (one pass over every image) counted apart from the rest.

    .venv/bin/python bench/label_issues.py [--per-class N] [--flip 0.05] [--image-size PX]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from advisor import DATASETS  # noqa: E402  (bench/advisor.py: the real datasets)

from tl_core.analysis import find_label_issues
from tl_core.data import scan_dataset


def flip_labels(root: Path, share: float, rng: np.random.Generator) -> set[Path]:
    """Moves ``share`` of the images into another, random class folder; returns their paths."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(root.rglob("*.png"))
    picked = rng.choice(len(files), max(1, round(share * len(files))), replace=False)
    flipped = set()
    for index in picked:
        path = files[index]
        other = rng.choice([c for c in classes if c != path.parent.name])
        target = root / other / f"flipped_from_{path.parent.name}_{path.name}"
        shutil.move(path, target)
        flipped.add(target.resolve())
    return flipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--per-class", type=int, default=60, help="images per class")
    parser.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--image-size", type=int, default=None, help="input side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"{'dataset':9} {'images':>6} {'flipped':>7} {'flagged':>7} {'precision':>9} "
          f"{'recall':>6} {'prec@k':>6} {'features s':>10} {'rest s':>6}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            rng = np.random.default_rng(args.seed)
            data = Path(tmp) / dataset
            DATASETS[dataset](data, args.per_class, rng)
            flipped = flip_labels(data, args.flip, rng)
            report = scan_dataset(data)
            stages: dict[str, float] = {}

            def progress(done, total, message, stages=stages):
                # The probe starts when the features are ready: time the two stages apart.
                if message == "checking the labels":
                    stages["probe"] = time.perf_counter()

            started = time.perf_counter()
            issues = find_label_issues(
                report,
                cache_dir=Path(tmp) / "cache",
                progress=progress,
                image_size=args.image_size,
                device="cpu",
                seed=args.seed,
            )
            ended = time.perf_counter()
            flagged = {issue.path.resolve() for issue in issues}
            hits = len(flagged & flipped)
            top = {issue.path.resolve() for issue in issues[: len(flipped)]}
            precision = hits / len(flagged) if flagged else float("nan")
            print(
                f"{dataset:9} {report.num_images:>6} {len(flipped):>7} {len(flagged):>7} "
                f"{precision:>9.2f} {hits / len(flipped):>6.2f} "
                f"{len(top & flipped) / len(flipped):>6.2f} "
                f"{stages['probe'] - started:>10.1f} {ended - stages['probe']:>6.1f}"
            )


if __name__ == "__main__":
    main()
