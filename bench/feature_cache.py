"""Feature extraction with a frozen backbone: does 10 epochs cost little more than 1?

Trains the default backbone, fully frozen and without augmentation (features computed once),
for 1 and then 10 epochs on the same data in this process, and reports the time ratio. As a
baseline it also times 1 and 10 epochs with augmentation on, where every epoch must run the
backbone again.

    .venv/bin/python bench/feature_cache.py [--data DIR] [--backbone NAME] [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tl_core.config import DEFAULT_BACKBONE, TrainConfig
from tl_core.data import sample_dataset_path
from tl_core.training import train


def timed_run(config: TrainConfig) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        train(config, Path(tmp) / "run")
        return time.perf_counter() - started


def best_of(configs: dict, repeats: int) -> dict:
    """The fastest of ``repeats`` runs of each config, interleaved so load spikes hit all alike."""
    times: dict = {key: [] for key in configs}
    for _ in range(repeats):
        for key, config in configs.items():
            times[key].append(timed_run(config))
    return {key: min(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(sample_dataset_path()))
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    base = TrainConfig(
        data=args.data,
        backbone=args.backbone,
        image_size=args.image_size,
        freeze="all",
        early_stopping_patience=0,  # all 10 epochs must run
        device=args.device,
    )
    timed_run(base.replace(epochs=1))  # warm-up: imports, allocator, file cache
    configs = {
        (augment, epochs): base.replace(augment=augment, epochs=epochs)
        for augment in ("none", "light")
        for epochs in (1, 10)
    }
    results = best_of(configs, args.repeats)
    threads = torch.get_num_threads()
    print(
        f"backbone {args.backbone}, data {args.data}, torch threads {threads}, "
        f"best of {args.repeats}"
    )
    for augment, label in (("none", "cached features"), ("light", "augmented, no cache")):
        one, ten = results[augment, 1], results[augment, 10]
        print(f"{label:>22}: 1 epoch {one:6.2f} s   10 epochs {ten:6.2f} s   ratio {ten / one:.2f}")
    speedup = results["light", 10] / results["none", 10]
    print(f"10 epochs: cached features are {speedup:.1f}x faster than re-running the backbone")


if __name__ == "__main__":
    main()
