"""Predictions from a trained run on new images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from tl_core.common import DatasetError, TLStudioError, in_preferred_layout, resolve_device
from tl_core.data import IMAGE_SUFFIXES, load_image, walk_visible_files
from tl_core.features import classify_features, pooled_features
from tl_core.inference.calibration import NOT_RECORDED, Calibration, read_calibration
from tl_core.inference.open_set import OpenSetModel, read_open_set
from tl_core.inference.reliable_head import ReliableHead
from tl_core.inference.saliency import explain_image
from tl_core.inference.thresholds import NOT_CALIBRATED, read_thresholds
from tl_core.models import folded_copy
from tl_core.runs import Run, as_run

Ranking = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ImagePrediction:
    """The top classes for one image, or why it could not be read.

    Attributes:
        image: The file (or the name it was given).
        predictions: (label, calibrated probability) pairs, most probable first.
        error: Why the file could not be read (then ``predictions`` is empty).
        unknown: The image looks unlike every training image: "not one of my classes".
        ood_score: How unlike the training images it is (higher: more unlike; None: the run
            has no open-set model, or the file could not be read).
        tags: For a multi-label run, the (tag, probability) pairs at or above their tag's
            threshold, most probable first (empty: no tag); None for one class per image.
            ``predictions`` then ranks every tag by its own sigmoid probability.
    """

    image: str
    predictions: Ranking
    error: str | None = None
    unknown: bool = False
    ood_score: float | None = None
    tags: Ranking | None = None


@dataclass(frozen=True)
class BatchOutputs:
    """Everything the model says about a batch of images, as tensors on the CPU."""

    logits: torch.Tensor  # (N, C), raw
    probabilities: torch.Tensor  # (N, C), calibrated (multi-label: each tag's sigmoid)
    ood_scores: torch.Tensor  # (N,), zeros for a run without an open-set model
    unknown: torch.Tensor  # (N,) bool, at the run's threshold
    tags: torch.Tensor | None = None  # (N, C) bool, multi-label: at or above the thresholds


class Predictor:
    """A run's model and preprocessing, ready to classify images.

    Predictions run on a copy of the model with its batch norms folded into its convolutions
    (``tl_core.models.batchnorm_folding``, made on the first batch), in the layout the device
    prefers;
    saliency maps need the model's own layers and use ``model``. Probabilities are calibrated
    with the run's temperature, and images unlike every training image are flagged unknown
    (see :mod:`tl_core.inference.open_set`); a run from before either exists uses temperature
    1 and flags nothing.

    Args:
        model: The run's network, in eval mode, on ``device``.
        labels: Class names in output order.
        transform: The run's evaluation transform.
        device: Where the network runs.
        calibration: The run's temperature (default: 1).
        open_set: The run's open-set model (default: none, nothing is rejected).
        thresholds: A multi-label run's threshold of each tag (default: None, one class per
            image); its probabilities are then each tag's sigmoid.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        labels: list[str],
        transform,
        device: torch.device,
        calibration: Calibration = NOT_RECORDED,
        open_set: OpenSetModel | None = None,
        thresholds: Sequence[float] | None = None,
    ):
        self.model = model
        self.labels = labels
        self.transform = transform
        self.device = device
        self.calibration = calibration
        self.open_set = open_set
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.head = ReliableHead(calibration, open_set, self.thresholds)
        self._inference_model: torch.nn.Module | None = None

    @classmethod
    def from_run(cls, run: Run | str | Path, device: str = "auto") -> Predictor:
        run = as_run(run)
        torch_device = resolve_device(device)
        model = in_preferred_layout(run.build_model(torch_device), torch_device)
        return cls(
            model,
            run.labels,
            run.preprocessing.eval_transform(),
            torch_device,
            NOT_CALIBRATED if run.multi_label else read_calibration(run.path),
            read_open_set(run.path),
            read_thresholds(run) if run.multi_label else None,
        )

    @property
    def multi_label(self) -> bool:
        """Whether the run gives each image a set of tags (one sigmoid output per tag)."""
        return self.thresholds is not None

    @torch.no_grad()
    def features_and_logits(
        self, images: Sequence[Image.Image]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled backbone features and the raw logits of a batch, on the CPU."""
        batch = torch.stack([self.transform(image.convert("RGB")) for image in images])
        batch = in_preferred_layout(batch.to(self.device), self.device)
        if self._inference_model is None:
            self._inference_model = folded_copy(self.model, batch[:1], pooled_features)
        features = pooled_features(self._inference_model, batch)
        logits = classify_features(self._inference_model, features)
        return features.float().cpu(), logits.float().cpu()

    def logits(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The raw (uncalibrated) logits of a batch, on the CPU."""
        return self.features_and_logits(images)[1]

    @torch.no_grad()
    def outputs(self, images: Sequence[Image.Image]) -> BatchOutputs:
        """Raw logits, calibrated probabilities, open-set scores and unknown flags of a batch."""
        features, logits = self.features_and_logits(images)
        probabilities, scores, unknown, *tags = self.head(features, logits)
        return BatchOutputs(logits, probabilities, scores, unknown, tags[0] if tags else None)

    def rank(self, logits: torch.Tensor, top_k: int) -> list[Ranking]:
        """Top-k (label, calibrated probability) pairs for each row of raw logits (for a
        multi-label run, the tags by their sigmoid probability)."""
        if self.multi_label:
            return self._ranked(logits.float().sigmoid(), top_k)
        return self._ranked(self.calibration.probabilities(logits), top_k)

    def _tag_sets(self, out: BatchOutputs) -> list[Ranking | None]:
        """Each image's tags at or above their thresholds, most probable first (multi-label
        runs; None per image otherwise)."""
        if out.tags is None:
            return [None] * len(out.probabilities)
        return [
            tuple(
                sorted(
                    (
                        (self.labels[i], float(p))
                        for i, (p, on) in enumerate(zip(row, flags, strict=True))
                        if on
                    ),
                    key=lambda pair: -pair[1],
                )
            )
            for row, flags in zip(out.probabilities.tolist(), out.tags.tolist(), strict=True)
        ]

    def _ranked(self, probabilities: torch.Tensor, top_k: int) -> list[Ranking]:
        k = max(1, min(top_k, len(self.labels)))
        values, indices = probabilities.topk(k, dim=1)
        return [
            tuple((self.labels[i], float(v)) for v, i in zip(row_v, row_i, strict=True))
            for row_v, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def predict_images(self, images: Sequence[Image.Image], top_k: int = 5) -> list[Ranking]:
        """Top-k (label, calibrated probability) pairs for each image, most probable first."""
        if not images:
            return []
        return self.rank(self.logits(images), top_k)

    def classify(
        self,
        images: Sequence[Image.Image],
        names: Sequence[str] | None = None,
        top_k: int = 5,
        threshold: float | None = None,
    ) -> list[ImagePrediction]:
        """Each image's top classes, open-set score and whether it is "not one of my classes".

        Args:
            images: Any size and mode.
            names: What to call each image in the results (default: "").
            top_k: Classes per image.
            threshold: Rejects images scoring above it (default: the run's own threshold).
        """
        if not images:
            return []
        names = list(names) if names is not None else [""] * len(images)
        out = self.outputs(images)
        unknown = out.unknown
        if self.open_set is not None and threshold is not None:
            unknown = self.open_set.is_unknown(out.ood_scores, threshold)
        scored = self.open_set is not None
        return [
            ImagePrediction(
                name,
                ranking,
                unknown=bool(flag),
                ood_score=float(score) if scored else None,
                tags=tags,
            )
            for name, ranking, flag, score, tags in zip(
                names,
                self._ranked(out.probabilities, top_k),
                unknown.tolist(),
                out.ood_scores.tolist(),
                self._tag_sets(out),
                strict=True,
            )
        ]

    def explain(
        self, image: Image.Image, target_label: str | None = None
    ) -> tuple[Image.Image, str, float]:
        """A saliency overlay (Grad-CAM) showing which part of the image drove a class's score.

        The overlay is drawn on the model's own view of the image: resized on its short side and
        centre-cropped exactly as for prediction, at the model's input size. The heat therefore
        lines up with what is shown, and the edges a non-square image loses to the crop are
        missing from the overlay too, as they are from the prediction.

        Args:
            image: The image to explain, any size and mode.
            target_label: The class to explain; None explains the predicted class.

        Returns:
            The overlay on the cropped view, the label explained and its probability.

        Raises:
            TLStudioError: ``target_label`` is not one of the run's classes, or the backbone
                gives no spatial features to map.
        """
        target = None
        if target_label is not None:
            if target_label not in self.labels:
                raise TLStudioError(
                    f"{target_label!r} is not one of this model's classes.",
                    "Choose one of: " + ", ".join(self.labels) + ".",
                )
            target = self.labels.index(target_label)
        view, index, probability = explain_image(self.model, self.transform, image, target)
        if self.multi_label:  # the tag's own sigmoid, as the predictions show it
            probability = float(self.logits([image])[0, index].sigmoid())
        elif self.calibration.fitted:  # the probability the predictions show
            probability = float(self.calibration.probabilities(self.logits([image]))[0, index])
        return view, self.labels[index], probability

    def logits_for_paths(
        self,
        paths: Sequence[Path],
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Logits for image files that are known to be readable (e.g. a checked dataset)."""
        chunks = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            chunks.append(self.logits([load_image(p) for p in chunk]))
            if progress:
                progress(start + len(chunk), len(paths))
        if not chunks:
            return torch.empty(0, len(self.labels))
        return torch.cat(chunks)

    def predict_paths(
        self,
        paths: Sequence[str | Path],
        top_k: int = 5,
        batch_size: int = 32,
        threshold: float | None = None,
    ) -> list[ImagePrediction]:
        """Predicts every file; an unreadable one gets an error instead of stopping the rest.

        ``threshold`` moves the open-set threshold (default: the run's); see :meth:`classify`.
        """
        results: dict[int, ImagePrediction] = {}
        readable: list[tuple[int, Image.Image]] = []
        for index, path in enumerate(paths):
            try:
                readable.append((index, load_image(path)))
            except TLStudioError as exc:
                results[index] = ImagePrediction(str(path), (), error=exc.message)
            if len(readable) == batch_size or index == len(paths) - 1:
                names = [str(paths[i]) for i, _ in readable]
                images = [image for _, image in readable]
                for (i, _), result in zip(
                    readable, self.classify(images, names, top_k, threshold), strict=True
                ):
                    results[i] = result
                readable = []
        return [results[i] for i in range(len(paths))]


def collect_image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, plus the image files found (recursively) in folders, sorted."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(
                sorted(p for p in walk_visible_files(item) if p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif item.is_file():
            found.append(item)
        else:
            raise DatasetError(f"{item} does not exist.", "Check the path and try again.")
    return found


def predictions_frame(predictions: Sequence[ImagePrediction]) -> pd.DataFrame:
    """One row per image, for a table or a CSV download; a multi-label run's also has a
    ``tags`` column (the tags above their thresholds, "no tag" when none is)."""
    frame = pd.DataFrame(
        [
            {
                "image": p.image,
                "predicted_label": p.predictions[0][0] if p.predictions else None,
                "confidence": p.predictions[0][1] if p.predictions else None,
                "top_k": "; ".join(f"{label} {prob:.1%}" for label, prob in p.predictions),
                "error": p.error,
            }
            for p in predictions
        ],
        columns=["image", "predicted_label", "confidence", "top_k", "error"],
    )
    if any(p.tags is not None for p in predictions):
        frame.insert(
            1, "tags", [tags_text(p.tags) if p.tags is not None else None for p in predictions]
        )
    return frame


NO_TAG = "no tag"


def tags_text(tags: Ranking) -> str:
    """A multi-label prediction in words: "circle 91%; square 62%", or "no tag"."""
    return "; ".join(f"{label} {prob:.0%}" for label, prob in tags) or NO_TAG
