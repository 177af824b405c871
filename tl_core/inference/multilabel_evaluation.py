"""How well a multi-label run does on images with known tags: per-tag precision, recall, F1 and
average precision with their counts, which tags were missed or added (with the images behind
each), which tags are predicted together with which, and the most wrong images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tl_core.common import DatasetError
from tl_core.data import TAG_SEPARATOR, DatasetReport, split_tags
from tl_core.inference.multilabel_scores import (
    METRIC_NAME,
    average_precisions,
    f1_from_counts,
    tag_counts,
)
from tl_core.runs import SPLIT_FILE, Run, damaged, read_json


@dataclass(frozen=True)
class MultiLabelEvaluation:
    """A multi-label run's results on images with known tags.

    Attributes:
        tags: The run's tags, in output order.
        images: The images, in order.
        probabilities: Sigmoid probabilities, (images, tags).
        targets: The true tags, multi-hot bool, (images, tags).
        thresholds: The threshold of each tag the predictions are read at.
    """

    tags: list[str]
    images: list[str]
    probabilities: np.ndarray
    targets: np.ndarray
    thresholds: list[float]

    multi_label = True
    metric_name = METRIC_NAME

    @property
    def predicted(self) -> np.ndarray:
        """Which tags each image gets: bool, (images, tags)."""
        return self.probabilities >= np.asarray(self.thresholds)[None, :]

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def per_tag(self) -> pd.DataFrame:
        """One row per tag: threshold, precision, recall, F1, average precision, support
        (images with the tag), predicted (images given it), and the true positives, false
        positives ("added") and false negatives ("missed")."""
        tp, fp, fn = tag_counts(self.probabilities, self.targets, self.thresholds)
        predicted, support = tp + fp, tp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
            recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        return pd.DataFrame(
            {
                "tag": self.tags,
                "threshold": self.thresholds,
                "precision": precision,
                "recall": recall,
                "f1": f1_from_counts(tp, fp, fn),
                "average_precision": average_precisions(self.probabilities, self.targets),
                "support": support.astype(int),
                "predicted": predicted.astype(int),
                "true_positives": tp.astype(int),
                "added": fp.astype(int),
                "missed": fn.astype(int),
            }
        )

    @property
    def macro_f1(self) -> float:
        """The mean of the tags' F1 at their thresholds."""
        return float(self.per_tag.f1.mean()) if self.tags else 0.0

    @property
    def mean_average_precision(self) -> float:
        """The mean of the tags' average precision (tags without a positive image left out);
        NaN when no tag has one."""
        values = self.per_tag.average_precision.dropna()
        return float(values.mean()) if len(values) else float("nan")

    @property
    def exact_match(self) -> float:
        """Share of images whose whole set of tags is right."""
        if not self.num_images:
            return 0.0
        return float((self.predicted == self.targets).all(axis=1).mean())

    @property
    def predictions(self) -> pd.DataFrame:
        """One row per image: its true and predicted tags, the tags missed and added, the
        mean binary cross-entropy over its tags (``loss``), and whether all its tags are right
        (``correct``); then each tag's probability in a ``p:<tag>`` column."""
        predicted, truth = self.predicted, self.targets
        p = np.clip(self.probabilities, 1e-7, 1 - 1e-7)
        losses = -(truth * np.log(p) + (~truth) * np.log(1 - p)).mean(axis=1)

        def names(mask: np.ndarray) -> list[str]:
            return [
                TAG_SEPARATOR.join(t for t, on in zip(self.tags, row, strict=True) if on)
                for row in mask
            ]

        frame = pd.DataFrame(
            {
                "image": self.images,
                "true_tags": names(truth),
                "predicted_tags": names(predicted),
                "missed": names(truth & ~predicted),
                "added": names(predicted & ~truth),
                "loss": losses.astype(float),
                "correct": (predicted == truth).all(axis=1),
            }
        )
        for index, tag in enumerate(self.tags):
            frame[f"p:{tag}"] = self.probabilities[:, index].astype(float)
        return frame

    def missed_images(self, tag: str) -> pd.DataFrame:
        """The images that carry ``tag`` but were not given it, most confidently wrong first."""
        return self._tag_errors(tag, missed=True)

    def added_images(self, tag: str) -> pd.DataFrame:
        """The images given ``tag`` that do not carry it, most confidently wrong first."""
        return self._tag_errors(tag, missed=False)

    def _tag_errors(self, tag: str, missed: bool) -> pd.DataFrame:
        index = self.tags.index(tag)
        truth, predicted = self.targets[:, index], self.predicted[:, index]
        rows = np.flatnonzero(truth & ~predicted if missed else predicted & ~truth)
        frame = self.predictions.iloc[rows][["image", "true_tags", "predicted_tags"]].copy()
        frame["probability"] = self.probabilities[rows, index].astype(float)
        return frame.sort_values("probability", ascending=missed).reset_index(drop=True)

    def tag_confusion(self) -> pd.DataFrame:
        """Rows: a true tag; columns: a predicted tag; cells: images that carry the row's tag
        and were given the column's (the diagonal counts the tags found). A large cell off the
        diagonal is a pair of tags the model predicts together with each other."""
        counts = self.targets.astype(int).T @ self.predicted.astype(int)
        frame = pd.DataFrame(counts, index=self.tags, columns=self.tags)
        frame.index.name, frame.columns.name = "true", "predicted"
        return frame

    def images_for(self, true_tag: str, predicted_tag: str) -> pd.DataFrame:
        """The images behind one cell of :meth:`tag_confusion`."""
        rows = np.flatnonzero(
            self.targets[:, self.tags.index(true_tag)]
            & self.predicted[:, self.tags.index(predicted_tag)]
        )
        return self.predictions.iloc[rows].reset_index(drop=True)

    def most_wrong(self, n: int = 12) -> pd.DataFrame:
        """The ``n`` images with a wrong tag and the highest loss."""
        frame = self.predictions
        return frame[~frame.correct].sort_values("loss", ascending=False).head(n)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary: the scores, per-tag rows, missed/added images by tag,
        the tag confusion, and the most wrong images."""
        per_tag = self.per_tag.replace({np.nan: None}).to_dict(orient="records")
        for row in per_tag:
            row["missed_images"] = self.missed_images(row["tag"]).image.tolist()
            row["added_images"] = self.added_images(row["tag"]).image.tolist()
        mean_ap = self.mean_average_precision
        return {
            "multi_label": True,
            "metric": self.metric_name,
            "num_images": self.num_images,
            "macro_f1": self.macro_f1,
            "mean_average_precision": None if np.isnan(mean_ap) else mean_ap,
            "exact_match": self.exact_match,
            "thresholds": dict(zip(self.tags, self.thresholds, strict=True)),
            "per_tag": per_tag,
            "tag_confusion": self.tag_confusion().to_dict(orient="index"),
            "most_wrong": self.most_wrong()[
                ["image", "true_tags", "predicted_tags", "missed", "added", "loss"]
            ].to_dict(orient="records"),
        }


def build_multi_label_evaluation(
    tags: Sequence[str],
    images: Sequence[str],
    targets,
    probabilities,
    thresholds: Sequence[float],
) -> MultiLabelEvaluation:
    """The evaluation of sigmoid ``probabilities`` against multi-hot ``targets``."""
    return MultiLabelEvaluation(
        tags=list(tags),
        images=list(images),
        probabilities=np.asarray(probabilities, dtype=np.float64).reshape(len(images), len(tags)),
        targets=np.asarray(targets, dtype=bool).reshape(len(images), len(tags)),
        thresholds=[float(t) for t in thresholds],
    )


def multi_hot(tag_sets: Sequence[Sequence[str]], tags: Sequence[str]) -> np.ndarray:
    """Multi-hot bool rows, one per image, for ``tags`` in output order."""
    index = {tag: i for i, tag in enumerate(tags)}
    rows = np.zeros((len(tag_sets), len(tags)), dtype=bool)
    for row, tag_set in enumerate(tag_sets):
        rows[row, [index[t] for t in tag_set]] = True
    return rows


def tagged_validation_images(run: Run) -> list[tuple[Path, tuple[str, ...]]]:
    """The validation images of a multi-label run's split.json, with their tags."""
    pairs = read_json(run.path / SPLIT_FILE).get("val")
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in pairs
    ):
        raise damaged("split.json should list the validation images as [path, tags] pairs")
    images = [(Path(path), split_tags(cell)) for path, cell in pairs]
    unknown = sorted({t for _, tags in images for t in tags} - set(run.labels))
    if unknown:
        raise damaged(f"split.json names the tag {unknown[0]!r}, which labels.json lacks")
    return images


def tagged_images(
    run: Run, report: DatasetReport | None
) -> tuple[list[Path], list[tuple[str, ...]]]:
    """The images a multi-label run is evaluated on, and their tags: its validation split
    (``report`` None), or a scanned tagged dataset.

    Raises:
        DatasetError: The dataset has no labels.csv or no images, or tags the run lacks, or
            images are no longer on disk.
    """
    if report is None:
        images = tagged_validation_images(run)
    else:
        if not report.multi_label:
            raise DatasetError(
                f"{report.source.name} has no labels.csv, but this run gives several tags "
                "per image.",
                "Evaluate it on a folder or .zip of images with a labels.csv of their tags.",
            )
        if not report.items:
            raise DatasetError(f"No tagged images were found in {report.source.name}.")
        unknown = sorted(set(report.class_names) - set(run.labels))
        if unknown:
            raise DatasetError(
                f"These tags are not known to the model: {', '.join(unknown)}.",
                f"The model knows: {', '.join(run.labels)}. Remove the others from labels.csv.",
            )
        images = [(item.path, item.tags or ()) for item in report.items]
    missing = [str(p) for p, _ in images if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} evaluation images are no longer on disk (first: {missing[0]}).",
            "Restore the dataset folder, or evaluate on another tagged folder.",
        )
    return [p for p, _ in images], [tags for _, tags in images]
