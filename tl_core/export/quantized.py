"""The smaller web page's model: the run's ONNX model with dynamically quantised int8 weights
(``onnxruntime.quantization.quantize_dynamic``), and how often it changes the full model's
answer on the run's validation images.

Dynamic quantisation stores each convolution's and matrix product's weights as 8-bit integers
(about a quarter of float32) and quantises activations on the fly, so it needs no calibration
images; it does move probabilities, and on a close call it can move the top-1 answer. So the
agreement with the full model is measured on the validation images and shown before a person
picks the smaller page, and the page is refused when it changes more than
:data:`MAX_CHANGED_SHARE` of the answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tl_core.common import format_size, plural
from tl_core.data import load_image
from tl_core.export.web_check import page_pixels

# At most 2 % of the top-1 answers may change: below the width of the accuracy interval on any
# validation set of a few hundred images, so the smaller page keeps the run's measured accuracy
# in meaning. On small validation sets one change can already be over it: then the full page it is.
MAX_CHANGED_SHARE = 0.02
# Enough images to see a 2 % change; more only make the measurement slower.
AGREEMENT_IMAGES = 500


@dataclass(frozen=True)
class QuantizedAgreement:
    """The int8 model against the full one on the run's validation images.

    Attributes:
        num_images: Images compared.
        images_from: What they are, in words ("validation image").
        changed: Images whose top-1 answer the int8 model changes.
        max_probability_difference: The largest change of any class's probability.
        full_model_bytes: Size of the float32 model.
        quantized_model_bytes: Size of the int8 model.
        max_changed_share: The largest share of changed answers accepted.
    """

    num_images: int
    images_from: str
    changed: int
    max_probability_difference: float
    full_model_bytes: int
    quantized_model_bytes: int
    max_changed_share: float = MAX_CHANGED_SHARE

    @property
    def changed_share(self) -> float:
        return self.changed / self.num_images if self.num_images else 0.0

    @property
    def acceptable(self) -> bool:
        return self.num_images > 0 and self.changed_share <= self.max_changed_share

    @property
    def text(self) -> str:
        """In words: same top-1 answer as the full model on 96 of 97 validation images (...)."""
        same = self.num_images - self.changed
        verdict = (
            "within"
            if self.acceptable
            else "over"
            if self.num_images
            else "no images to measure, so refused; under"
        )
        return (
            f"same top-1 answer as the full model on {same} of "
            f"{plural(self.num_images, self.images_from)} ({self.changed_share:.1%} changed, "
            f"{verdict} the {self.max_changed_share:.0%} allowed); probabilities move by up to "
            f"{self.max_probability_difference:.3f}; model "
            f"{format_size(self.quantized_model_bytes)} instead of "
            f"{format_size(self.full_model_bytes)}"
        )


def quantize_model(full_model: Path, out: Path) -> None:
    """Writes ``full_model`` with int8 (unsigned) weights to ``out``, depthwise convolutions
    left in float32.

    Unsigned weights: ONNX Runtime's ConvInteger kernel takes uint8 on every build, the
    WebAssembly one included. Depthwise convolutions (``group`` > 1) have few weights each and
    suffer most from one scale per tensor: quantising them changed 2 of 18 validation answers
    of an EfficientNet-Lite0 run (probabilities by up to 0.16), keeping them changed none (up
    to 0.11), for 4.0 MB instead of 3.4 MB of a 13 MB model.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    depthwise = [
        node.name
        for node in onnx.load(str(full_model)).graph.node
        if node.op_type == "Conv"
        and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)
    ]
    # The quantiser logs advice about pre-processing at WARNING for every model; it is not for
    # the person exporting.
    quiet = logging.getLogger("root"), logging.getLogger()
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        quantize_dynamic(
            str(full_model), str(out), weight_type=QuantType.QUInt8, nodes_to_exclude=depthwise
        )
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def _probabilities(session, config: dict, pixels: np.ndarray) -> np.ndarray:
    # The calibrated probabilities the page shows (the model's reliable head computes them).
    names = [config["probabilities_name"]]
    return session.run(names, {config["input_name"]: pixels})[0].astype(np.float64)


def measure_agreement(
    full_model: Path, quantized_model: Path, config: dict, images: list[Path], images_from: str
) -> QuantizedAgreement:
    """Both models in onnxruntime on ``images``, prepared as the page prepares them."""
    import onnxruntime  # deferred: only exports need it

    sessions = [
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (full_model, quantized_model)
    ]
    changed, worst = 0, 0.0
    for start in range(0, len(images), 16):
        pixels = np.stack([page_pixels(config, load_image(p)) for p in images[start : start + 16]])
        full, quantized = (_probabilities(s, config, pixels) for s in sessions)
        changed += int((full.argmax(axis=1) != quantized.argmax(axis=1)).sum())
        worst = max(worst, float(np.abs(full - quantized).max()))
    return QuantizedAgreement(
        num_images=len(images),
        images_from=images_from,
        changed=changed,
        max_probability_difference=worst,
        full_model_bytes=full_model.stat().st_size,
        quantized_model_bytes=quantized_model.stat().st_size,
    )
