"""Does memory stay bounded as a dataset grows? The health check and the feature cache at N images.

Generates N small real image files (PNG, a few classes, every picture different) once, in a
folder reused between runs and between sizes (smaller sizes are hard links into the largest),
then, for each N, runs in a fresh subprocess (so the peak RSS is that phase's own):

1. the health check, as ``tl-studio check`` runs it (scan, near-duplicate grouping, split):
   time, files per second, peak RSS;
2. head-only training for one epoch with a fresh feature cache (the frozen backbone's feature
   pass, which the epoch's head steps share, the cache write): the time of the feature pass, the
   head's own time in the epoch (``seconds`` in metrics.json), peak RSS, cache size.

Peak RSS counts the interpreter and its imports (torch alone is ~400 MB); the table also gives
the growth over the process's RSS before the phase started, which is what the data costs.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,50000] [--backbone NAME]
        [--image-size 32] [--work DIR] [--skip-features]

The default keeps the 50k feature pass to a few minutes on 2 CPU cores by running the backbone
at 32 px (the smallest size training accepts): memory, not accuracy, is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("circles", "squares", "stripes", "noise")
IMAGE_SIDE = 48
_CHILD = "--child"


# ------------------------------------------------------------------------- the images


def _draw(label_index: int, number: int):
    """A 48 x 48 picture of class ``label_index``; ``number`` seeds its content, so every
    picture (and so every file hash and perceptual fingerprint) differs."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(number * len(CLASSES) + label_index)
    background = tuple(int(c) for c in rng.integers(0, 256, 3))
    image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIDE - 8, 2))
        x1, y1 = x0 + int(rng.integers(6, 24)), y0 + int(rng.integers(6, 24))
        if label_index == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif label_index == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif label_index == 2:
            draw.line((x0, 0, x1, IMAGE_SIDE), fill=colour, width=int(rng.integers(2, 6)))
    if label_index == 3:
        noise = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        image = Image.blend(image, Image.fromarray(noise), 0.6)
    return image


def _write_chunk(folder: str, start: int, stop: int) -> None:
    for number in range(start, stop):
        label_index = number % len(CLASSES)
        path = Path(folder) / CLASSES[label_index] / f"{number:06d}.png"
        if not path.exists():
            _draw(label_index, number // len(CLASSES)).save(path)


def generate(folder: Path, count: int) -> Path:
    """``count`` images in ``folder``, one subfolder per class; files already there are kept."""
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    chunk = 2000
    with ProcessPoolExecutor() as pool:
        for future in [
            pool.submit(_write_chunk, str(folder), start, min(start + chunk, count))
            for start in range(0, count, chunk)
        ]:
            future.result()
    return folder


def subset(source: Path, folder: Path, count: int) -> Path:
    """The first ``count`` images of ``source`` as hard links in ``folder`` (no copies)."""
    marker = folder / ".complete"
    if marker.exists():
        return folder
    for number in range(count):
        name = CLASSES[number % len(CLASSES)]
        target = folder / name / f"{number:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(source / name / f"{number:06d}.png", target)
    marker.touch()
    return folder


# ------------------------------------------------------------------------- the measured phases


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Makes VmHWM start again from the current RSS (Linux 4.0+), so imports do not count."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def child_check(data: str) -> dict:
    from tl_core.analysis import check_health
    from tl_core.data import scanned_dataset

    _reset_peak()
    before = _rss_mb("VmRSS")
    started = time.perf_counter()
    with scanned_dataset(data) as report:
        scanned = time.perf_counter()
        health = check_health(report)
        ended = time.perf_counter()
        assert health.can_train, health.problems
        images = report.num_images
    return {
        "images": images,
        "seconds": ended - started,
        "scan_seconds": scanned - started,
        "split_seconds": ended - scanned,
        "rss_before_mb": before,
        "peak_rss_mb": _rss_mb("VmHWM"),
    }


def child_features(data: str, backbone: str, image_size: int, cache: str) -> dict:
    from tl_core.common import TrainingObserver
    from tl_core.config import TrainConfig
    from tl_core.training import train

    class PhaseClock(TrainingObserver):
        """Seconds spent in each phase the trainer announces."""

        def __init__(self):
            self.phase, self.since, self.seconds = None, time.perf_counter(), {}

        def on_phase(self, message, phase=None):
            if phase is not None and phase != self.phase:
                self._close()
                self.phase = phase

        def _close(self):
            now = time.perf_counter()
            if self.phase is not None:
                self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.since
            self.since = now

    config = TrainConfig(
        data=data,
        backbone=backbone,
        image_size=image_size,
        freeze="all",
        augment="none",
        epochs=1,
        early_stopping_patience=0,
        device="cpu",
    )
    clock = PhaseClock()
    _reset_peak()
    before = _rss_mb("VmRSS")
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        status = train(config, Path(runs) / "run", clock, feature_cache=cache)
        clock._close()
        seconds = time.perf_counter() - started
        history = json.loads((Path(runs) / "run" / "metrics.json").read_text())["history"]
    assert status == "completed", status
    cache_bytes = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
    return {
        "seconds": seconds,
        "phases": clock.seconds,
        "epoch_seconds": history[0]["seconds"],  # the head's steps and validation only
        "cache_mb": cache_bytes / 1024**2,
        "rss_before_mb": before,
        "peak_rss_mb": _rss_mb("VmHWM"),
    }


def run_child(*args: str) -> dict:
    """Runs one phase in a fresh interpreter and returns what it printed (the last line)."""
    out = subprocess.run(
        [sys.executable, __file__, _CHILD, *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
        sys.exit(f"bench child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- the table


def print_table(rows: list[dict], features: bool) -> None:
    header = ["images", "check s", "files/s", "check peak RSS MB", "check growth MB"]
    if features:
        header += ["features s", "1 epoch s", "train peak RSS MB", "train growth MB", "cache MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for row in rows:
        check = row["check"]
        cells = [
            f"{row['images']:,}",
            f"{check['seconds']:.1f}",
            f"{row['images'] / check['seconds']:,.0f}",
            f"{check['peak_rss_mb']:.0f}",
            f"{check['peak_rss_mb'] - check['rss_before_mb']:.0f}",
        ]
        if features:
            feat = row["features"]
            cells += [
                f"{feat['phases'].get('features', 0):.1f}",
                f"{feat['epoch_seconds']:.1f}",
                f"{feat['peak_rss_mb']:.0f}",
                f"{feat['peak_rss_mb'] - feat['rss_before_mb']:.0f}",
                f"{feat['cache_mb']:.1f}",
            ]
        print("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        size = last["images"] / first["images"]

        def growth(part: str) -> float:
            return max(last[part]["peak_rss_mb"] - last[part]["rss_before_mb"], 1) / max(
                first[part]["peak_rss_mb"] - first[part]["rss_before_mb"], 1
            )

        line = f"\n{size:.0f}x the images: check memory growth x{growth('check'):.1f}"
        if features:
            ratio = last["features"]["cache_mb"] / max(first["features"]["cache_mb"], 1e-9)
            line += f", training memory growth x{growth('features'):.1f}"
            line += f" (the features alone: x{ratio:.1f})"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="comma-separated N")
    parser.add_argument("--backbone", default=None, help="default: the app's default backbone")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "tl-studio-scale"))
    parser.add_argument("--skip-features", action="store_true", help="only the health check")
    args = parser.parse_args()
    if args.backbone is None:
        from tl_core.config import DEFAULT_BACKBONE

        args.backbone = DEFAULT_BACKBONE
    sizes = sorted(int(n) for n in args.sizes.split(","))
    work = Path(args.work)
    started = time.perf_counter()
    images = generate(work / "images", sizes[-1])
    print(f"{sizes[-1]:,} images in {images} ({time.perf_counter() - started:.0f} s)")
    rows = []
    for size in sizes:
        data = subset(images, work / f"first-{size}", size)
        row = {"images": size, "check": run_child("check", str(data))}
        if not args.skip_features:
            with tempfile.TemporaryDirectory(dir=work) as cache:
                row["features"] = run_child(
                    "features", str(data), args.backbone, str(args.image_size), cache
                )
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"\nbackbone {args.backbone} at {args.image_size} px, CPU, {os.cpu_count()} cores\n")
    print_table(rows, not args.skip_features)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == _CHILD:
        phase, *rest = sys.argv[2:]
        if phase == "check":
            result = child_check(*rest)
        else:
            result = child_features(rest[0], rest[1], int(rest[2]), rest[3])
        print(json.dumps(result))
    else:
        main()
