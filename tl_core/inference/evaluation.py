"""How well a run does on labelled images: confusion matrix, per-class scores, worst images."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tl_core.common import DatasetError, RunError, format_accuracy, wilson_interval
from tl_core.data import DatasetReport, scan_dataset, scanned_dataset
from tl_core.inference.calibration import (
    NOT_RECORDED,
    Calibration,
    CalibrationReport,
    calibration_report,
)
from tl_core.inference.multilabel_evaluation import (
    MultiLabelEvaluation,
    build_multi_label_evaluation,
    multi_hot,
    tagged_images,
)
from tl_core.runs import (
    PREDICTIONS_FILE,
    SPLIT_FILE,
    Run,
    as_run,
    check_validation_split,
    read_json,
)


@dataclass(frozen=True)
class Evaluation:
    """A model's results on a labelled set of images, as DataFrames ready to display.

    Confidences and losses are those of the calibrated probabilities; ``calibration`` says how
    well raw and calibrated probabilities match the images (ECE, reliability-diagram bins).
    """

    labels: list[str]
    predictions: pd.DataFrame  # image, true_label, predicted_label, confidence, loss, correct
    confusion: pd.DataFrame  # index: true label, columns: predicted label
    per_class: pd.DataFrame  # label, precision, recall, f1, support
    accuracy: float
    calibration: CalibrationReport | None = None

    @property
    def num_images(self) -> int:
        return len(self.predictions)

    @property
    def num_wrong(self) -> int:
        return int((~self.predictions.correct.astype(bool)).sum())

    @property
    def interval(self) -> tuple[float, float]:
        """The accuracy's 95 % Wilson interval: how far the true accuracy may be from it."""
        return wilson_interval(self.num_images - self.num_wrong, self.num_images)

    @property
    def accuracy_text(self) -> str:
        """``"94.4% (95 % CI 74%–99%, 18 images)"``: the accuracy and how sure it is."""
        return format_accuracy(self.accuracy, self.num_images)

    def default_cell(self) -> tuple[str, str]:
        """The confusion cell to show first: the most confused pair, or, when nothing is
        wrong, the correct cell of the class with the most images."""
        confused = self.most_confused()
        if len(confused):
            return str(confused.true_label[0]), str(confused.predicted_label[0])
        counts = self.predictions.true_label.value_counts()
        label = str(counts.index[0]) if len(counts) else self.labels[0]
        return label, label

    def cell_images(self, true_label: str, predicted_label: str) -> pd.DataFrame:
        """The images behind one confusion-matrix cell, most confident first."""
        rows = self.predictions[
            (self.predictions.true_label == true_label)
            & (self.predictions.predicted_label == predicted_label)
        ]
        return rows.sort_values("confidence", ascending=False)

    def top_losses(self, n: int = 12) -> pd.DataFrame:
        """The images with the highest loss, right or wrong, highest first."""
        return self.predictions.sort_values("loss", ascending=False).head(n)

    def most_wrong(self, n: int = 12) -> pd.DataFrame:
        """The wrongly predicted images, highest loss first (empty when none is wrong)."""
        wrong = self.predictions[~self.predictions.correct.astype(bool)]
        return wrong.sort_values("loss", ascending=False).head(n)

    def least_confident_correct(self, n: int = 12) -> pd.DataFrame:
        """The correctly predicted images the model was least sure of, least sure first."""
        right = self.predictions[self.predictions.correct.astype(bool)]
        return right.sort_values("confidence").head(n)

    def most_confused(self, min_count: int = 1) -> pd.DataFrame:
        """Off-diagonal (true, predicted) pairs by count, largest first."""
        pairs = self.confusion.stack().rename("count").reset_index()
        pairs.columns = ["true_label", "predicted_label", "count"]
        wrong = pairs[(pairs.true_label != pairs.predicted_label) & (pairs["count"] >= min_count)]
        return wrong.sort_values("count", ascending=False).reset_index(drop=True)


def build_evaluation(
    labels: Sequence[str],
    images: Sequence[str],
    targets: Sequence[int],
    logits: torch.Tensor,
    calibration: Calibration = NOT_RECORDED,
) -> Evaluation:
    """Builds every table from the model's raw logits for a list of labelled images, with
    the probabilities calibrated by ``calibration`` (default: temperature 1)."""
    labels = list(labels)
    targets_t = torch.as_tensor(list(targets), dtype=torch.long)
    report = calibration_report(logits, targets_t, calibration) if len(targets_t) else None
    logits = calibration.apply(logits.float())
    probabilities = logits.softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    losses = torch.nn.functional.cross_entropy(logits, targets_t, reduction="none")
    true_names = [labels[i] for i in targets_t.tolist()]
    predicted_names = [labels[i] for i in predicted.tolist()]
    predictions = pd.DataFrame(
        {
            "image": list(images),
            "true_label": true_names,
            "predicted_label": predicted_names,
            "confidence": confidence.numpy().astype(float),
            "loss": losses.numpy().astype(float),
            "correct": (predicted == targets_t).numpy(),
        }
    )
    confusion = pd.crosstab(
        pd.Categorical(true_names, categories=labels),
        pd.Categorical(predicted_names, categories=labels),
        dropna=False,
    )
    confusion.index.name, confusion.columns.name = "true", "predicted"
    return Evaluation(
        labels=labels,
        predictions=predictions,
        confusion=confusion,
        per_class=per_class_scores(confusion),
        accuracy=float(predictions.correct.mean()) if len(predictions) else 0.0,
        calibration=report,
    )


def per_class_scores(confusion: pd.DataFrame) -> pd.DataFrame:
    matrix = confusion.to_numpy().astype(float)
    true_positives = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    # A class never predicted (or never present) scores 0 rather than NaN.
    precision = np.divide(
        true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0
    )
    recall = np.divide(true_positives, support, out=np.zeros_like(support), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return pd.DataFrame(
        {
            "label": list(confusion.index),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support.astype(int),
        }
    )


def _labelled_images(run: Run, report: DatasetReport | None) -> tuple[list[Path], list[int]]:
    """(paths, label indices) of the run's validation split, or of a scanned labelled set."""
    if report is None:
        pairs = check_validation_split(read_json(run.path / SPLIT_FILE), run.labels)
    else:
        if not report.items:
            raise DatasetError(
                f"No labelled images were found in {report.source.name}.",
                "Put each class's images in a folder named after the class, as for training.",
            )
        unknown = sorted({item.label for item in report.items} - set(run.labels))
        if unknown:
            raise DatasetError(
                f"These classes are not known to the model: {', '.join(unknown)}.",
                f"The model knows: {', '.join(run.labels)}. Rename or remove the other folders.",
            )
        pairs = [(item.path, item.label) for item in report.items]
    missing = [str(p) for p, _ in pairs if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} evaluation images are no longer on disk (first: {missing[0]}).",
            "Restore the dataset folder, or evaluate on another labelled folder.",
        )
    return [p for p, _ in pairs], [run.labels.index(label) for _, label in pairs]


def evaluate_run(
    run: Run | str | Path,
    data: str | Path | None = None,
    *,
    device: str = "auto",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    workdir: Path | None = None,
) -> Evaluation | MultiLabelEvaluation:
    """Evaluates a run on its validation images, or on another labelled folder or zip.

    A multi-label run gets a :class:`MultiLabelEvaluation` instead: per-tag scores at its
    thresholds (``thresholds.json``), on its validation images or a tagged dataset.

    Args:
        run: A loaded run or its folder.
        data: None for the run's own validation split; else a labelled folder or .zip whose
            classes the model knows (it may lack some of them).
        device: "auto", "cpu" or "cuda".
        batch_size: Images per forward pass.
        progress: Called with (images done, total).
        workdir: Where a zip is unpacked and kept; None unpacks it into a temporary folder,
            deleted once the images are evaluated.

    Raises:
        DatasetError: ``data`` holds no labelled images, or classes the model does not know.
    """
    from tl_core.inference.predict import Predictor

    run = as_run(run)
    with contextlib.ExitStack() as stack:
        report = None
        if data is not None and workdir is None:
            report = stack.enter_context(scanned_dataset(data))
        elif data is not None:
            report = scan_dataset(data, extract_to=workdir)
        # The model first: when labels.json was edited, its weights tell the clearest story.
        predictor = Predictor.from_run(run, device=device)
        if run.multi_label:
            paths, targets = tagged_images(run, report)
        else:
            paths, targets = _labelled_images(run, report)
        logits = predictor.logits_for_paths(paths, batch_size=batch_size, progress=progress)
    if run.multi_label:
        return build_multi_label_evaluation(
            run.labels,
            [str(p) for p in paths],
            multi_hot(targets, run.labels),
            logits.sigmoid().numpy(),
            predictor.thresholds,
        )
    return build_evaluation(
        run.labels, [str(p) for p in paths], targets, logits, predictor.calibration
    )


def split_counts(run: Run) -> tuple[Counter, Counter] | None:
    """Images per class in the training and the validation split, or None if not recorded."""
    try:
        split = read_json(run.path / SPLIT_FILE)
        return tuple(Counter(label for _, label in split[part]) for part in ("train", "val"))
    except (RunError, KeyError, TypeError, ValueError):
        return None


def recorded_validation_scores(run: Run) -> pd.DataFrame | None:
    """Precision, recall, F1 and support per class on the validation images, from the best
    epoch's recorded predictions (val_predictions.csv), or None if they were not recorded."""
    try:
        predictions = pd.read_csv(run.path / PREDICTIONS_FILE)
        confusion = pd.crosstab(
            pd.Categorical(predictions.true_label.astype(str), categories=run.labels),
            pd.Categorical(predictions.predicted_label.astype(str), categories=run.labels),
            dropna=False,
        )
    except (OSError, ValueError, AttributeError, pd.errors.ParserError):
        return None
    return per_class_scores(confusion) if len(predictions) else None


def class_summary(run: Run | str | Path) -> pd.DataFrame | None:
    """Per class: training and validation images, and the best epoch's recall and precision
    on the validation images; None when the run recorded no predictions.

    Recall per class is where imbalance shows: a model can score well overall while missing
    most of a small class. A run whose loss was weighted by class also has a "loss weight"
    column.
    """
    run = as_run(run)
    scores = recorded_validation_scores(run)
    if scores is None:
        return None
    counts = split_counts(run)
    train_counts = counts[0] if counts else Counter()
    table = pd.DataFrame(
        {
            "class": scores.label,
            "training images": [train_counts[label] for label in scores.label],
            "validation images": scores.support,
            "recall": scores.recall,
            "precision": scores.precision,
        }
    )
    weights = run.model_info.get("class_weights")
    if isinstance(weights, dict):  # the loss was weighted by class (tl_core.training.class_weights)
        table["loss weight"] = [weights.get(label) for label in scores.label]
    return table
