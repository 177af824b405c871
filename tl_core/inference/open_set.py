"""Open-set rejection ("not one of my classes") of images unlike every training image.

A closed-set classifier gives every input one of its classes, a wall photo "brick 99 %". A run
therefore also keeps what its training images look like to the backbone: the unit-length
pooled features of its labelled images (the *bank*), and rejects an image whose k-th nearest
bank feature is far (``knn`` in :mod:`tl_core.inference.open_set_scores`; the measurements
that chose it are in ``bench/open_set.py``).

The threshold is chosen so that a share (95 %) of new images of the known classes is accepted.
It is measured on held-out scores: each labelled image (training and validation) scored against
the bank without itself, since a threshold set on images the bank contains would accept
almost anything. The held-out scores are kept, so a page can show what moving the threshold
costs. Everything is stored as plain tensors in ``open_set.safetensors`` in the run folder;
a run without that file rejects nothing, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from tl_core.common import plural
from tl_core.inference.open_set_scores import (
    knn_heldout_scores,
    kth_neighbour_distance,
    normalized,
)
from tl_core.runs import OPEN_SET_FILE, save_weights

SCORE = "knn"
# The neighbour whose distance counts: k > 1 keeps one stray training image (a mislabelled or
# odd one) from vouching alone for everything that resembles it. Measured in bench/open_set.py.
DEFAULT_K = 5
DEFAULT_ACCEPTANCE = 0.95
# Fewer labelled images than this give a threshold that means little.
MIN_OPEN_SET_IMAGES = 10
# The bank keeps at most this many features (a seeded sample beyond): exports carry it, and
# Sun et al. (2022) show a sample of the training set rejects nearly as well as all of it.
MAX_BANK_ROWS = 4096
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class RejectionCost:
    """What a threshold costs: the labelled images it would reject, scored as held out."""

    rejected: int
    total: int

    @property
    def share(self) -> float:
        return self.rejected / self.total if self.total else 0.0

    @property
    def text(self) -> str:
        """The cost in words: "Rejects 4 of 80 labelled images (5.0%) of the known classes"."""
        return (
            f"Rejects {self.rejected} of {plural(self.total, 'labelled image')} "
            f"({self.share:.1%}) of the known classes"
        )


@dataclass(frozen=True)
class OpenSetModel:
    """What a run rejects images against.

    Attributes:
        bank: (M, D) unit-length pooled features of labelled images.
        k: The neighbour whose distance is the score.
        threshold: Images scoring above it are "not one of my classes".
        acceptance: The share of held-out known images the threshold was chosen to accept.
        heldout_scores: (N,) the score of each labelled image against the bank without itself.
        heldout_is_validation: (N,) which of them are validation images.
        score: The score's name (only "knn" so far).
    """

    bank: torch.Tensor
    k: int
    threshold: float
    acceptance: float
    heldout_scores: torch.Tensor
    heldout_is_validation: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=bool))
    score: str = SCORE

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """How unlike the bank each row of (N, D) features is: higher is more unlike."""
        return kth_neighbour_distance(normalized(features), self.bank, self.k)

    def is_unknown(self, scores: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        return scores > (self.threshold if threshold is None else threshold)

    def cost(self, threshold: float | None = None, validation_only: bool = False) -> RejectionCost:
        """How many held-out labelled images ``threshold`` (default: the run's) rejects: all of
        them, or only the validation images."""
        scores = self.heldout_scores
        if validation_only:
            scores = scores[self.heldout_is_validation]
        rejected = self.is_unknown(scores, threshold)
        return RejectionCost(int(rejected.sum()), len(scores))

    def threshold_for(self, acceptance: float) -> float:
        """The threshold that accepts ``acceptance`` (0-1) of the held-out labelled images."""
        return choose_threshold(self.heldout_scores, acceptance)

    def slider_range(self) -> tuple[float, float]:
        """Thresholds worth offering: from rejecting about half the labelled images to none."""
        low = self.threshold_for(0.5)
        high = float(self.heldout_scores.max()) if len(self.heldout_scores) else self.threshold
        return low, max(high * 1.25, self.threshold)


def choose_threshold(heldout_scores: torch.Tensor, acceptance: float) -> float:
    """The ``acceptance`` quantile of held-out scores of known images (accepts that share)."""
    if not len(heldout_scores):
        return float("inf")
    if acceptance >= 1.0:
        return float(heldout_scores.max())
    return float(torch.quantile(heldout_scores.double(), acceptance, interpolation="higher"))


def bank_rows(count: int, seed: int = 0) -> torch.Tensor:
    """Which of ``count`` labelled images the bank keeps: all, or a seeded sample."""
    if count <= MAX_BANK_ROWS:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:MAX_BANK_ROWS].sort().values


def fit_open_set(
    features: torch.Tensor,
    is_validation: torch.Tensor | None = None,
    *,
    k: int = DEFAULT_K,
    acceptance: float = DEFAULT_ACCEPTANCE,
    seed: int = 0,
) -> OpenSetModel | str:
    """Builds the bank from labelled images' features and chooses the threshold.

    Args:
        features: (N, D) pooled features of every training and validation image.
        is_validation: (N,) which rows are validation images (kept with the held-out scores).
        k: The neighbour whose distance counts (lowered for small datasets).
        acceptance: The share of known images to accept.
        seed: Chooses the bank's sample when there are more than ``MAX_BANK_ROWS`` images.

    Returns:
        The fitted model, or why none could be fitted, in words.
    """
    count = len(features)
    if count < MIN_OPEN_SET_IMAGES:
        return (
            f"only {plural(count, 'labelled image')}, and at least {MIN_OPEN_SET_IMAGES} are "
            "needed to tell what is unlike them: no image is rejected."
        )
    # Leave-one-out needs k other rows; small sets use a nearer neighbour.
    k = max(1, min(k, count // 5))
    rows = bank_rows(count, seed)
    heldout = knn_heldout_scores(features, rows, k)
    if is_validation is None:
        is_validation = torch.zeros(count, dtype=torch.bool)
    return OpenSetModel(
        bank=normalized(features[rows]).contiguous(),
        k=k,
        threshold=choose_threshold(heldout, acceptance),
        acceptance=acceptance,
        heldout_scores=heldout,
        heldout_is_validation=is_validation.bool(),
    )


def write_open_set(run_dir: str | Path, model: OpenSetModel) -> None:
    """Writes ``open_set.safetensors`` into a run folder, atomically."""
    save_weights(
        Path(run_dir) / OPEN_SET_FILE,
        {
            "bank": model.bank,
            "heldout_scores": model.heldout_scores.float(),
            "heldout_is_validation": model.heldout_is_validation.to(torch.uint8),
        },
        {
            "format": FORMAT_VERSION,
            "score": model.score,
            "k": str(model.k),
            "threshold": repr(float(model.threshold)),
            "acceptance": repr(float(model.acceptance)),
        },
    )


def read_open_set(run_dir: str | Path) -> OpenSetModel | None:
    """A run's open-set model, or None when the run has none (older runs) or it is unreadable."""
    path = Path(run_dir) / OPEN_SET_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as stored:
            meta = stored.metadata() or {}
            tensors = {name: stored.get_tensor(name) for name in stored.keys()}  # noqa: SIM118
        if meta.get("score") != SCORE:
            return None
        return OpenSetModel(
            bank=tensors["bank"].float(),
            k=int(meta["k"]),
            threshold=float(meta["threshold"]),
            acceptance=float(meta["acceptance"]),
            heldout_scores=tensors["heldout_scores"].float(),
            heldout_is_validation=tensors["heldout_is_validation"].bool(),
        )
    except (SafetensorError, OSError, KeyError, ValueError):
        return None


NO_OPEN_SET_NOTE = (
    'This run was trained before TL Studio learned to say "not one of my classes": every '
    "image gets one of its classes. Train again to have unfamiliar images rejected."
)
