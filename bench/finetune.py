"""Partial fine-tuning speed (issue 11): tl_core's trainer against the plain loop from the docs.

The plain loop is what a user writes from timm's and PyTorch's documentation: ``ImageFolder``
with ``timm.data.create_transform``, the first K layer groups frozen (the same groups as the
Model page's slider), AdamW, every batch through the whole model, no caching. The trainer runs
``tl_core.training.train`` with the same backbone, image size, batch size, K, epochs and
augmentation off. Runs alternate (plain, trainer, trainer, plain, ...) so that other load on
the machine hits both alike, and each K prints the ratio of training images per second:

- steady: training steps only (validation excluded), the epochs' own rate;
- overall: the same, with the trainer's one-off pass (backbone features or the frozen
  layers' output, validation images included) charged to its epochs.

It also measures the time from calling ``train`` to the first batch loss reported to the
observer, in a fresh process, split into imports, data check, model creation, weight loading
and the first batch; and from starting ``tl-studio train`` to its first batch loss.

    .venv/bin/python bench/finetune.py [--data DIR] [--images 48] [--epochs 3] [--repeats 2]
        [--batch-size 16] [--backbone tf_efficientnet_lite0] [--skip-first-loss | --first-loss-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import timm  # noqa: E402
import torch  # noqa: E402
from timm.data import create_transform, resolve_data_config  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

from tl_core.common import PHASE_FEATURES, PHASE_TRAINING, TrainingObserver  # noqa: E402
from tl_core.config import DEFAULT_BACKBONE, TrainConfig  # noqa: E402
from tl_core.data import sample_dataset_path  # noqa: E402
from tl_core.jobs import EVENT_PREFIX  # noqa: E402
from tl_core.models import layer_groups  # noqa: E402
from tl_core.training import train  # noqa: E402


@dataclass
class Rates:
    steady: float  # training images per second over the epochs' training steps
    overall: float  # the same, with one-off work charged to the epochs


def subset_folder(source: Path, images: int, target: Path) -> Path:
    """Copies about ``images`` images, the same share of every class, into ``target``."""
    classes = sorted(p for p in source.iterdir() if p.is_dir())
    per_class = max(2, images // len(classes))
    for folder in classes:
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class]:
            shutil.copy(path, target / folder.name / path.name)
    return target


def plain_loop(data: Path, args: argparse.Namespace, frozen: int) -> Rates:
    """The loop from the docs; ``frozen`` leading layer groups get requires_grad=False."""
    torch.manual_seed(0)
    dataset_classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    model = timm.create_model(args.backbone, pretrained=False, num_classes=len(dataset_classes))
    config = resolve_data_config({}, model=model)
    dataset = ImageFolder(str(data), transform=create_transform(**config))  # augmentation off
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(len(order) * 0.8)
    train_set, val_set = Subset(dataset, order[:cut]), Subset(dataset, order[cut:])
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=args.batch_size)
    frozen_names = {n for g in layer_groups(model)[:frozen] for n in g.param_names}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    images = seconds = 0.0
    for _ in range(args.epochs):
        model.train()
        started = time.perf_counter()
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(targets)
        seconds += time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            for inputs, _ in val_loader:
                model(inputs)
    return Rates(images / seconds, images / seconds)


class OneOffTimer(TrainingObserver):
    """Times the trainer's one-off pass: from its announcement to the first epoch."""

    def __init__(self):
        self.started: float | None = None
        self.seconds = 0.0

    def on_phase(self, message: str, phase: str | None = None) -> None:
        if phase == PHASE_FEATURES:
            self.started = time.perf_counter()
        elif phase == PHASE_TRAINING and self.started is not None and not self.seconds:
            self.seconds = time.perf_counter() - self.started


def trainer_run(data: Path, args: argparse.Namespace, freeze: str) -> Rates:
    config = TrainConfig(
        data=str(data),
        backbone=args.backbone,
        pretrained=False,  # the same speed as pretrained weights, and never a feature store
        freeze=freeze,
        epochs=args.epochs,
        batch_size=args.batch_size,
        augment="none",
        early_stopping_patience=0,
        device="cpu",
        num_workers=0,
    )
    timer = OneOffTimer()
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", timer)
        history = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["history"]
        split = json.loads((Path(tmp) / "run" / "split.json").read_text())
    images = len(split["train"]) * len(history)
    seconds = sum(len(split["train"]) / row["train_images_per_second"] for row in history)
    return Rates(images / seconds, images / (seconds + timer.seconds))


FIRST_LOSS_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
import torch, timm  # noqa
from tl_core.training.training_run import train  # noqa: E402
from tl_core.config.train_config import TrainConfig  # noqa: E402
from tl_core.common.control import JobControl, TrainingObserver  # noqa: E402
imported = time.perf_counter()
marks = {}
control = JobControl()
class Watch(TrainingObserver):
    def on_phase(self, message, phase=None):
        marks.setdefault(message.split(" ")[0] + " " + message.split(" ")[1], time.perf_counter())
    def on_batch(self, stats):
        marks.setdefault("first loss", time.perf_counter())
        control.stop()
called = time.perf_counter()
train(TrainConfig(data=sys.argv[1], freeze=sys.argv[3], augment="none", device="cpu"),
      sys.argv[2], Watch(), control)
print(json.dumps({"imports": imported - started, "called": called, "marks": marks}))
"""


def first_loss(data: Path, freeze: str) -> dict[str, float]:
    """Seconds from a fresh process to the first batch loss, by step."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", FIRST_LOSS_SCRIPT, str(data), str(Path(tmp) / "run"), freeze],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    marks, called = result["marks"], result["called"]
    check, load = marks["Checking the"], marks["Loading the"]
    after_load = min(t for t in marks.values() if t > load)
    return {
        "imports": result["imports"],
        "data check": load - check,
        "model + weights": after_load - load,
        "until first loss": marks["first loss"] - after_load,
        "train() to first loss": marks["first loss"] - called,
    }


def command_line_first_loss(data: Path) -> float:
    """Seconds from starting ``tl-studio train`` (the app's defaults, no feature kept from an
    earlier run) to the first batch loss among the events it writes on stdout."""
    command = [str(Path(sys.executable).parent / "tl-studio"), "train", str(data)]
    with tempfile.TemporaryDirectory() as tmp:
        command += ["--out", str(Path(tmp) / "run"), "--events", "--epochs", "1"]
        command += ["--no-feature-cache", "--device", "cpu", "--quiet"]
        started = time.perf_counter()
        with subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as process:
            try:
                for line in process.stdout:
                    if line.startswith(EVENT_PREFIX) and '"event": "batch"' in line:
                        return time.perf_counter() - started
            finally:
                process.kill()
    raise RuntimeError("tl-studio train ended without a batch loss")


def model_creation_split(backbone: str) -> dict[str, float]:
    """Architecture build against weight loading, in this (warm) process."""
    from tl_core.models import load_pretrained_model

    started = time.perf_counter()
    timm.create_model(backbone, pretrained=False)
    built = time.perf_counter()
    load_pretrained_model(backbone)
    return {"build": built - started, "build + weights": time.perf_counter() - built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="labelled folder (default: the sample)")
    parser.add_argument("--images", type=int, default=48, help="images to use, all classes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--skip-first-loss", action="store_true")
    parser.add_argument("--first-loss-only", action="store_true", help="skip the ratios")
    args = parser.parse_args()

    groups = len(layer_groups(timm.create_model(args.backbone, pretrained=False))) - 1
    depths = {"K=0": (0, "none"), f"K={groups // 2}": (groups // 2, str(groups // 2)),
              f"K={groups} (head only)": (groups, "all")}  # fmt: skip
    print(f"torch threads: {torch.get_num_threads()}; {args.backbone}, {groups} groups, "
          f"batch {args.batch_size}, {args.epochs} epochs, augmentation off")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data = subset_folder(args.data or sample_dataset_path(), args.images, Path(tmp) / "data")
        print(f"{sum(1 for _ in data.rglob('*.*'))} images from {args.data or 'the sample'}")
        for label, (k, freeze) in depths.items() if not args.first_loss_only else ():
            plain, ours = [], []
            for repeat in range(args.repeats):
                order = [("plain", plain_loop, k), ("ours", trainer_run, freeze)]
                for name, run, setting in order if repeat % 2 == 0 else order[::-1]:
                    (plain if name == "plain" else ours).append(run(data, args, setting))
            p_rate = statistics.median(r.steady for r in plain)
            steady = statistics.median(r.steady for r in ours)
            overall = statistics.median(r.overall for r in ours)
            print(
                f"{label:>18}: plain {p_rate:7.1f} img/s | tl_core steady {steady:8.1f} img/s "
                f"({steady / p_rate:5.2f}x), overall {overall:8.1f} img/s "
                f"({overall / p_rate:5.2f}x)"
            )
        if not args.skip_first_loss:
            cases = {
                f"K=half, the {args.images} images above": (data, str(groups // 2)),
                # What Start does in the app with its defaults: the whole sample, head only,
                # every backbone feature computed first (none kept from an earlier run).
                "head only (the app's default), the whole sample": (sample_dataset_path(), "all"),
            }
            for case, (folder, freeze) in cases.items():
                print(f"Time to the first batch loss (fresh process, default backbone, {case}):")
                for step, seconds in first_loss(folder, freeze).items():
                    print(f"  {step:>22}: {seconds:6.2f} s")
            for step, seconds in model_creation_split(args.backbone).items():
                print(f"  {step:>22}: {seconds:6.2f} s (warm process)")
            runs = [command_line_first_loss(sample_dataset_path()) for _ in range(args.repeats)]
            listed = ", ".join(f"{t:.2f}" for t in runs)
            print(
                f"`tl-studio train` to its first batch loss (the app's defaults, the whole "
                f"sample): {statistics.median(runs):.2f} s (median of {len(runs)}: {listed})"
            )


if __name__ == "__main__":
    main()
