"""Predictions in words and rows: each image's answer ("Not one of my classes (closest: brick,
31 %)"), the batch's domain-shift summary, unknown images first, and the rows of
``tl-studio predict --json`` and of the Predict page's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tl_core.common import plural
from tl_core.inference.open_set import NO_OPEN_SET_NOTE
from tl_core.inference.predict import NO_TAG, ImagePrediction, predictions_frame

NOT_MINE = "Not one of my classes"


def percent(probability: float) -> str:
    """A probability as people read it: "31 %" (whole percents; "<1 %" for tiny ones)."""
    value = round(probability * 100)
    return "<1 %" if value == 0 and probability > 0 else f"{value} %"


def answer_text(prediction: ImagePrediction) -> str:
    """The answer for one image: "brick (87 %)", or for an image unlike the training images
    "Not one of my classes (closest: brick, 31 %)", never a confident class for it."""
    if prediction.error:
        return f"Could not be read: {prediction.error}"
    if not prediction.predictions:
        return "No prediction"
    label, probability = prediction.predictions[0]
    if prediction.unknown:
        return f"{NOT_MINE} (closest: {label}, {percent(probability)})"
    if prediction.tags is not None:  # a multi-label run: every tag above its threshold
        if not prediction.tags:
            return NO_TAG
        return ", ".join(f"{tag} ({percent(p)})" for tag, p in prediction.tags)
    return f"{label} ({percent(probability)})"


def unknown_first(predictions: Sequence[ImagePrediction]) -> list[ImagePrediction]:
    """The images unlike the training images first; each group in its original order."""
    return [p for p in predictions if p.unknown] + [p for p in predictions if not p.unknown]


@dataclass(frozen=True)
class DomainShiftSummary:
    """How many images of a batch look unlike the training images.

    Attributes:
        unknown: Images flagged "not one of my classes".
        total: Images that could be read and scored.
        checked: Whether the run can tell at all (False: a run without an open-set model).
    """

    unknown: int
    total: int
    checked: bool = True

    @property
    def share(self) -> float:
        return self.unknown / self.total if self.total else 0.0

    @property
    def text(self) -> str:
        """The summary in words: "41 of 50 images look unlike what this model was trained on:
        predictions for them are unreliable", or that all look familiar, or that the run
        cannot tell."""
        if not self.checked:
            return NO_OPEN_SET_NOTE
        if not self.total:
            return "No image could be read."
        if not self.unknown:
            every = "The image looks" if self.total == 1 else f"All {self.total} images look"
            return f"{every} like what this model was trained on."
        if self.unknown == 1:
            verb, answers = "looks", "the prediction for it is"
        else:
            verb, answers = "look", "predictions for them are"
        return (
            f"{self.unknown} of {plural(self.total, 'image')} {verb} unlike what this model was "
            f"trained on: {answers} unreliable."
        )


def domain_shift_summary(
    predictions: Sequence[ImagePrediction], checked: bool = True
) -> DomainShiftSummary:
    """The batch summary of ``predictions`` (``checked``: the run has an open-set model)."""
    readable = [p for p in predictions if not p.error]
    return DomainShiftSummary(sum(p.unknown for p in readable), len(readable), checked)


def prediction_rows(predictions: Sequence[ImagePrediction]) -> list[dict]:
    """One JSON-ready dict per image, for ``tl-studio predict --json``: the image, the top
    classes with calibrated probabilities, ``unknown``, ``ood_score`` (None for a run without
    an open-set model), the answer in words, and the error for an unreadable file. A
    multi-label run's rows also carry ``tags``: the tags at or above their thresholds with
    their probabilities (an empty list: no tag)."""
    return [
        {
            "image": p.image,
            "predictions": [{"label": label, "probability": prob} for label, prob in p.predictions],
            "unknown": bool(p.unknown),
            "ood_score": p.ood_score,
            "answer": answer_text(p),
            **(
                {"tags": [{"label": tag, "probability": prob} for tag, prob in p.tags]}
                if p.tags is not None
                else {}
            ),
            **({"error": p.error} if p.error else {}),
        }
        for p in predictions
    ]


def open_set_frame(predictions: Sequence[ImagePrediction]) -> pd.DataFrame:
    """The table of :func:`predictions_frame` with the answer, ``unknown`` and ``ood_score``,
    unknown images first (for the Predict page's table and CSV)."""
    ordered = unknown_first(predictions)
    frame = predictions_frame(ordered)
    frame.insert(1, "answer", [answer_text(p) for p in ordered])
    frame["unknown"] = [bool(p.unknown) for p in ordered]
    frame["ood_score"] = [p.ood_score for p in ordered]
    return frame
