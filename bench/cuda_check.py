"""The CUDA path, checked and timed on a machine with an NVIDIA GPU.

What runs only on a GPU cannot be covered by the CPU test suite, so this script checks it by
hand on a machine that has one:

- training runs on CUDA under mixed precision (bfloat16 where supported, else float16 with
  loss scaling), for head-only (cached features) and fine-tuning runs alike;
- a background job gives its GPU memory back when it ends, also when it is stopped: the model
  is no longer reachable, and allocated GPU memory does not grow from one job to the next.
  (cuBLAS keeps a workspace of about 32 MiB per handle a training thread used; it is reused by
  the next job, so it is reported, not counted as a leak.);
- training throughput in images/s for head-only and full fine-tuning, beside the CPU's on the
  same data in the same process, so the figures are ratios measured together.

    python bench/cuda_check.py [--images 512] [--size 224] [--epochs 2] [--batch-size 64]

Exits 1 if a check fails. Needs no download: the default backbone's weights ship in a package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tl_core.config import DEFAULT_BACKBONE, TrainConfig
from tl_core.jobs import TrainingJob
from tl_core.training import plan as plan
from tl_core.training import steps as engine

CLASS_COLORS = ((220, 40, 40), (40, 200, 60), (40, 80, 230), (230, 200, 30))


def make_dataset(root: Path, images: int, size: int) -> Path:
    """Noisy colour images in four classes, written as JPEGs like a user's photos."""
    rng = np.random.default_rng(0)
    for index in range(images):
        label = index % len(CLASS_COLORS)
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(rng.normal(CLASS_COLORS[label], 40, (size, size, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.jpg", quality=90)
    return root


class AutocastProbe:
    """Wraps the engine's autocast factory and records what it really enabled on the device."""

    def __init__(self):
        self.seen: set[tuple[bool, torch.dtype]] = set()
        self._original = engine.autocast_for

    def __enter__(self):
        original = self._original

        def probing_autocast_for(device):
            factory = original(device)

            @contextlib.contextmanager
            def probed():
                with factory():
                    self.seen.add(
                        (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
                    )
                    yield

            return probed

        engine.autocast_for = probing_autocast_for
        return self

    def __exit__(self, *exc):
        engine.autocast_for = self._original


class ModelProbe:
    """Keeps weak references to every model the engine creates, to check that none outlives
    its job."""

    def __init__(self):
        self.models: list[weakref.ref] = []
        self._original = plan.create_model

    def __enter__(self):
        def recording_create_model(*args, **kwargs):
            model, source = self._original(*args, **kwargs)
            self.models.append(weakref.ref(model))
            return model, source

        plan.create_model = recording_create_model
        return self

    def __exit__(self, *exc):
        plan.create_model = self._original

    @property
    def alive(self) -> int:
        return sum(ref() is not None for ref in self.models)


def warm_up_cuda() -> None:
    """Creates the pooled cuBLAS handle (and its workspace) that job threads will reuse."""

    def work():
        a = torch.randn(256, 256, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            (a @ a).sum().item()
        (a @ a).sum().item()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    torch.cuda.synchronize()


def run_job(config: TrainConfig, run_dir: Path, stop_after_first_epoch: bool = False):
    """Trains in a background job, as the app does; returns (snapshot, seconds)."""
    job = TrainingJob(config, run_dir)
    started = time.perf_counter()
    job.start()
    if stop_after_first_epoch:
        while job.is_active and not job.snapshot().history:
            job.wait(0.2)
        job.stop()
    snapshot = job.wait()
    return snapshot, time.perf_counter() - started


def epoch_images_per_second(snapshot) -> float:
    """Training images per second of a median epoch (its validation pass included), read from
    the run folder's split and the job's per-epoch history."""
    split = json.loads((Path(snapshot.run_dir) / "split.json").read_text())
    seconds = float(np.median([row["seconds"] for row in snapshot.history]))
    return len(split["train"]) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: nothing to check here.")
        return 1
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", args.images, args.size)
        base = TrainConfig(
            data=str(data),
            backbone=DEFAULT_BACKBONE,
            epochs=args.epochs,
            batch_size=args.batch_size,
            image_size=args.size,
            augment="none",
            early_stopping_patience=0,
            device="cuda",
        )
        warm_up_cuda()
        baseline = torch.cuda.memory_allocated()
        print(f"baseline: {baseline / 2**20:.1f} MiB allocated after the warm-up thread")

        after_first_job: list[int] = []

        def check_released(what: str, probe: ModelProbe) -> None:
            torch.cuda.synchronize()
            allocated = torch.cuda.memory_allocated()
            after_first_job[:] = after_first_job or [allocated]
            check(probe.alive == 0, f"{what}: no model outlives the job ({probe.alive} alive)")
            check(
                allocated <= after_first_job[0],
                f"{what}: GPU memory does not grow from job to job ({allocated / 2**20:.1f} MiB "
                f"allocated; {after_first_job[0] / 2**20:.1f} after the first job, "
                f"{baseline / 2**20:.1f} before any)",
            )

        rows = []
        for name, freeze in (("head only (cached features)", "all"), ("full fine-tune", "none")):
            for device in ("cuda", "cpu"):
                config = base.replace(freeze=freeze, device=device)
                with AutocastProbe() as autocast, ModelProbe() as models:
                    snap, seconds = run_job(config, tmp / f"run-{freeze}-{device}")
                check(snap.status == "completed", f"{name} on {device}: {snap.status} {snap.error}")
                if device == "cuda":
                    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                    check(
                        autocast.seen == {(True, expected)},
                        f"{name}: autocast on CUDA with {expected} (saw {autocast.seen})",
                    )
                    check_released(name, models)
                rows.append((name, device, seconds, epoch_images_per_second(snap), snap))
        with ModelProbe() as models:
            snap, _ = run_job(
                base.replace(freeze="none", epochs=50),
                tmp / "run-stopped",
                stop_after_first_epoch=True,
            )
        check(snap.status == "stopped", f"a stopped job ends as 'stopped' ({snap.status})")
        check_released("stopped job", models)

    settings = f"batch {args.batch_size}, {args.epochs} epochs"
    print(f"\n{args.images} images of {args.size} px, {settings}")
    print(f"{'mode':30} {'device':6} {'run s':>7} {'epoch img/s':>12} {'best val':>9}")
    for name, device, seconds, ips, snap in rows:
        best = snap.best_val_accuracy or 0.0
        print(f"{name:30} {device:6} {seconds:7.1f} {ips:12.1f} {best:9.1%}")
    by_key = {(name, device): seconds for name, device, seconds, _, _ in rows}
    for name in ("head only (cached features)", "full fine-tune"):
        gpu, cpu = by_key[(name, "cuda")], by_key[(name, "cpu")]
        print(f"{name}: whole run, CPU seconds / GPU seconds = {cpu / gpu:.1f}x")
    print("\nall checks passed" if not failures else f"\n{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
