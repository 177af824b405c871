"""Calibrated probabilities: temperature scaling, the expected calibration error, reliability bins.

A network trained with cross-entropy tends to be overconfident: among the images it calls
"99 %", fewer than 99 % are right. Temperature scaling (Guo et al., 2017) divides the logits by
one number T, fitted after training on the validation images by minimising their negative
log-likelihood. The predicted class never changes (dividing by T > 0 keeps the order); the
probabilities then mean what they say as far as the validation images can tell. The
temperature is kept in the run folder (``calibration.json``); a run without that file, or with
too few validation images to fit it, uses T = 1 and says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from tl_core.common import write_json
from tl_core.runs import CALIBRATION_FILE

# Below this many validation images one number fitted to them is more noise than signal.
MIN_CALIBRATION_IMAGES = 20
# Equal-width confidence bins for the ECE (Guo et al. use 15) and for the reliability diagram.
ECE_BINS = 15
DIAGRAM_BINS = 10
# The temperature stays within these bounds: beyond them a few images decide alone.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def _nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, targets))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature T that minimises the mean negative log-likelihood of ``logits / T``.

    Optimised over log T with L-BFGS, so T stays positive; clamped to a sane range. The targets
    are smoothed by 1 / (N + 2), Laplace's rule of succession: when every one of N validation
    images is right, the plain likelihood grows without bound as T shrinks, and would promise
    100 % on the next image; N right out of N supports about (N + 1) / (N + 2). With hundreds
    of images the smoothing changes nothing that matters.

    Args:
        logits: (N, C) raw logits of labelled images the model did not train on.
        targets: (N,) their class indices.
    """
    logits, targets = logits.detach().float(), targets.long()
    smoothing = 1.0 / (len(targets) + 2)
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            logits / log_t.exp(), targets, label_smoothing=smoothing
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)


def reliability_bins(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = DIAGRAM_BINS
) -> pd.DataFrame:
    """Images grouped by their top probability into equal-width bins.

    Returns:
        One row per bin (empty ones included): ``lower``, ``upper``, ``images``,
        ``confidence`` (mean top probability, NaN when empty) and ``accuracy`` (share right).
    """
    confidence, predicted = probabilities.float().max(dim=1)
    correct = (predicted == targets.long()).float()
    # A confidence of exactly 1.0 belongs to the last bin.
    index = (confidence * bins).long().clamp(max=bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        rows.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "images": count,
                "confidence": float(confidence[mask].mean()) if count else float("nan"),
                "accuracy": float(correct[mask].mean()) if count else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """The ECE: the gap between confidence and accuracy per bin, weighted by the bin's images."""
    table = reliability_bins(probabilities, targets, bins)
    filled = table[table.images > 0]
    if filled.empty:
        return 0.0
    gaps = (filled.confidence - filled.accuracy).abs() * filled.images
    return float(gaps.sum() / filled.images.sum())


@dataclass(frozen=True)
class Calibration:
    """A run's temperature and how it was fitted.

    Attributes:
        temperature: Logits are divided by it before the softmax (1: unchanged).
        num_images: The validation images it was fitted on (0: not fitted).
        fitted: Whether it was fitted (False: too few images, or a run older than calibration).
        note: Why it was not fitted, in words ("" when it was).
        nll_before, nll_after: Mean negative log-likelihood on those images, before and after.
        ece_before, ece_after: Expected calibration error on those images, before and after.
    """

    temperature: float = 1.0
    num_images: int = 0
    fitted: bool = False
    note: str = ""
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The calibrated logits: softmax of them gives the calibrated probabilities."""
        return logits / self.temperature

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.apply(logits.float()).softmax(dim=1)

    @property
    def text(self) -> str:
        """The calibration in one sentence, for the pages and the command line."""
        if not self.fitted:
            return f"Probabilities are not calibrated: {self.note}"
        if self.ece_before is None or self.ece_after is None:
            return f"Probabilities calibrated (temperature {self.temperature:.2f})."
        return (
            f"Probabilities calibrated on {self.num_images} validation images (temperature "
            f"{self.temperature:.2f}): calibration error {self.ece_before:.1%} before, "
            f"{self.ece_after:.1%} after."
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        calibration = cls(**known)
        if not (isinstance(calibration.temperature, int | float) and calibration.temperature > 0):
            return NOT_RECORDED
        return calibration


NOT_RECORDED = Calibration(
    note="this run was trained before TL Studio calibrated its probabilities (temperature 1)."
)


def fit_calibration(logits: torch.Tensor, targets: torch.Tensor) -> Calibration:
    """Fits the temperature on validation logits, or keeps 1 when there are too few of them."""
    logits, targets = logits.float(), torch.as_tensor(targets).long()
    count = len(targets)
    if count < MIN_CALIBRATION_IMAGES:
        return Calibration(
            num_images=count,
            note=(
                f"only {count} validation images, and at least {MIN_CALIBRATION_IMAGES} are "
                "needed to fit a temperature (kept at 1)."
            ),
        )
    temperature = fit_temperature(logits, targets)
    return Calibration(
        temperature=temperature,
        num_images=count,
        fitted=True,
        nll_before=_nll(logits, targets),
        nll_after=_nll(logits, targets, temperature),
        ece_before=expected_calibration_error(logits.softmax(dim=1), targets),
        ece_after=expected_calibration_error((logits / temperature).softmax(dim=1), targets),
    )


def write_calibration(run_dir: str | Path, calibration: Calibration) -> None:
    """Writes ``calibration.json`` into a run folder, atomically."""
    write_json(Path(run_dir) / CALIBRATION_FILE, calibration.to_dict())


def read_calibration(run_dir: str | Path) -> Calibration:
    """A run's calibration; T = 1 with a plain note for runs without (or with a damaged) file."""
    try:
        data = json.loads((Path(run_dir) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return NOT_RECORDED
    return Calibration.from_dict(data) if isinstance(data, dict) else NOT_RECORDED


@dataclass(frozen=True)
class CalibrationReport:
    """How well the probabilities match reality on a set of labelled images, before and after
    the run's temperature: for the Evaluate page's reliability diagram and ``evaluate --json``.

    Attributes:
        calibration: The run's temperature and how it was fitted.
        num_images: The labelled images measured here.
        ece_before, ece_after: Expected calibration error of raw and calibrated probabilities.
        bins_before, bins_after: Reliability-diagram bins (see :func:`reliability_bins`).
    """

    calibration: Calibration
    num_images: int
    ece_before: float
    ece_after: float
    bins_before: pd.DataFrame
    bins_after: pd.DataFrame

    @property
    def text(self) -> str:
        """The errors in words: "Calibration error on 40 images: 8.1% before calibration, 2.3%
        after (temperature 1.70)", or, for an uncalibrated run, the error and why."""
        if not self.calibration.fitted:
            return (
                f"Calibration error on {self.num_images} images: {self.ece_before:.1%}. "
                f"{self.calibration.text}"
            )
        return (
            f"Calibration error on {self.num_images} images: {self.ece_before:.1%} before "
            f"calibration, {self.ece_after:.1%} after (temperature "
            f"{self.calibration.temperature:.2f})."
        )

    def to_dict(self) -> dict:
        """JSON-ready: the temperature, both errors, and both diagrams' bins."""

        def bins(frame: pd.DataFrame) -> list[dict]:
            return [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")
            ]

        return {
            "temperature": self.calibration.temperature,
            "fitted": self.calibration.fitted,
            "note": self.calibration.note,
            "num_images": self.num_images,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "reliability_before": bins(self.bins_before),
            "reliability_after": bins(self.bins_after),
        }


def calibration_report(
    logits: torch.Tensor, targets: torch.Tensor, calibration: Calibration = NOT_RECORDED
) -> CalibrationReport:
    """Measures raw and calibrated probabilities of ``logits`` against ``targets``."""
    logits, targets = logits.float(), torch.as_tensor(targets).long()
    before, after = logits.softmax(dim=1), calibration.probabilities(logits)
    return CalibrationReport(
        calibration=calibration,
        num_images=len(targets),
        ece_before=expected_calibration_error(before, targets),
        ece_after=expected_calibration_error(after, targets),
        bins_before=reliability_bins(before, targets),
        bins_after=reliability_bins(after, targets),
    )
