"""The frozen backbone's feature pass with its batch norms folded, against the model as it is.

Every pass that only runs a frozen backbone (head-only features, the frozen prefix's output, the
advisor's comparison) runs on a copy with each batch norm folded into the convolution before it
(``tl_core.models.batchnorm_folding``). This bench times that pass both ways in one process on the
sample's real images, decoded once beforehand so that only the backbone is timed: batches of
32 at the backbone's own input size, in the layout the app uses on this device (channels-last
on a CUDA GPU or an x86 CPU), in inference as the feature pass runs it. The two alternate
(unfolded, folded, folded, unfolded, ...) so that other load hits both alike; each prints its
median images per second, the ratio, how many norms were folded, and the largest difference
between the two's pooled features as a share of the largest feature.

The default backbone loads its real pretrained weights; the others are built with random
weights (their speed is the same), their norms given running statistics so the fold has work.

    .venv/bin/python bench/batchnorm_folding.py [--images 64] [--repeats 3] [--device auto]
        [--backbones tf_efficientnet_lite0 mobilenetv3_large_100 efficientnet_b0 resnet50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import timm  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from tl_core.common import in_preferred_layout, resolve_device  # noqa: E402
from tl_core.config import DEFAULT_BACKBONE  # noqa: E402
from tl_core.data import load_image, sample_dataset_path  # noqa: E402
from tl_core.features import pooled_features  # noqa: E402
from tl_core.models import FOLDABLE_NORMS, Preprocessing, folded_copy, load_pretrained_model  # noqa: E402

BATCH = 32
BACKBONES = [DEFAULT_BACKBONE, "mobilenetv3_large_100", "efficientnet_b0", "resnet50"]


def backbone(name: str, device: torch.device) -> nn.Module:
    if name == DEFAULT_BACKBONE:
        model, _ = load_pretrained_model(name)
    else:
        model = timm.create_model(name, pretrained=False)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for norm in (m for m in model.modules() if type(m) in FOLDABLE_NORMS):
                norm.running_mean.normal_(0, 0.3, generator=generator)
                norm.running_var.uniform_(0.5, 1.5, generator=generator)
    return in_preferred_layout(model.to(device).eval(), device)


def decoded_images(count: int, preprocessing: Preprocessing) -> torch.Tensor:
    paths = sorted(p for p in sample_dataset_path().rglob("*") if p.is_file())
    transform = preprocessing.eval_transform()
    return torch.stack([transform(load_image(path)) for path in paths[:count]])


@torch.inference_mode()
def images_per_second(model: nn.Module, images: torch.Tensor, device: torch.device) -> float:
    batches = [in_preferred_layout(b.to(device), device) for b in images.split(BATCH)]
    pooled_features(model, batches[0])  # kernels chosen and memory allocated: not timed
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for batch in batches:
        pooled_features(model, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(images) / (time.perf_counter() - started)


def compare(name: str, count: int, repeats: int, device: torch.device) -> str:
    model = backbone(name, device)
    images = decoded_images(count, Preprocessing.for_model(model, None))
    probe = in_preferred_layout(images[:1].to(device), device)
    folded = folded_copy(model, probe, pooled_features)
    norms = sum(type(m) in FOLDABLE_NORMS for m in model.modules())
    left = sum(type(m) in FOLDABLE_NORMS for m in folded.modules())
    with torch.inference_mode():
        head = in_preferred_layout(images[:BATCH].to(device), device)
        expected = pooled_features(model, head)
        difference = (expected - pooled_features(folded, head)).abs().max() / expected.abs().max()
    plain, fast = [], []
    for repeat in range(repeats):
        order = [(plain, model), (fast, folded)]
        for rates, which in order if repeat % 2 == 0 else order[::-1]:
            rates.append(images_per_second(which, images, device))
    p, f = statistics.median(plain), statistics.median(fast)
    return (
        f"{name:>24}: {p:7.1f} img/s as it is | {f:7.1f} img/s folded ({f / p:4.2f}x); "
        f"{norms - left}/{norms} norms folded, features differ by {difference:.0e} of their largest"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {args.images} sample "
        f"images in batches of {BATCH}, median of {args.repeats}"
    )
    for name in args.backbones:
        print(compare(name, args.images, args.repeats, device), flush=True)


if __name__ == "__main__":
    main()
