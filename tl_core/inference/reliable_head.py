"""The run's answer beyond the logits, as one torch module: calibrated probabilities, the open-set
score and the "not one of my classes" flag.

The Predictor runs it after the network, and the ONNX and torch.export files carry it inside
their graph (``tl_core.export.formats``), so the app and every export reject the same images.
"""

from __future__ import annotations

import torch

from tl_core.features import classify_features, pooled_features
from tl_core.inference.calibration import Calibration
from tl_core.inference.open_set import OpenSetModel
from tl_core.inference.open_set_scores import kth_neighbour_distance

# The outputs of an exported model, in order (the first is what older exports returned).
OUTPUT_NAMES = ("logits", "probabilities", "ood_score", "unknown")


class ReliableHead(torch.nn.Module):
    """(pooled features, logits) -> (calibrated probabilities, open-set score, unknown flag).

    Args:
        calibration: The run's temperature.
        open_set: The run's bank and threshold; None (an older run): score 0, nothing unknown.
    """

    def __init__(self, calibration: Calibration, open_set: OpenSetModel | None = None):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(calibration.temperature)))
        self.k = open_set.k if open_set is not None else 0
        bank = open_set.bank if open_set is not None else torch.zeros(0, 1)
        threshold = open_set.threshold if open_set is not None else float("inf")
        self.register_buffer("bank", bank.float().contiguous())
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        # What an export says about its outputs (tl_core.export.formats: open_set.json).
        self.description = {
            "outputs": list(OUTPUT_NAMES),
            "temperature": float(calibration.temperature),
            "calibration": calibration.text,
            "score": open_set.score if open_set is not None else None,
            "k": self.k or None,
            "threshold": open_set.threshold if open_set is not None else None,
            "acceptance": open_set.acceptance if open_set is not None else None,
            "bank_size": len(bank) if open_set is not None else 0,
            "ood_score": (
                "1 - cosine similarity of the L2-normalised pooled features to the k-th "
                "nearest of the bank's; unknown = ood_score > threshold"
                if open_set is not None
                else "0: this run has no open-set model, so nothing is flagged unknown"
            ),
        }

    def forward(
        self, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probabilities = (logits / self.temperature).softmax(dim=1)
        if self.k == 0:
            scores = torch.zeros_like(logits[:, 0])
        else:
            queries = torch.nn.functional.normalize(features, dim=1)
            scores = kth_neighbour_distance(queries, self.bank, self.k)
        return probabilities, scores, scores > self.threshold


class NetworkWithReliableHead(torch.nn.Module):
    """A timm network followed by its :class:`ReliableHead`: images -> the four outputs of
    ``OUTPUT_NAMES``, logits first."""

    def __init__(self, network: torch.nn.Module, head: ReliableHead):
        super().__init__()
        self.network = network
        self.head = head

    def describe(self) -> dict:
        """The head's outputs, temperature and threshold, as JSON-ready values."""
        return dict(self.head.description)

    def forward(self, images: torch.Tensor):
        features = pooled_features(self.network, images)
        logits = classify_features(self.network, features)
        return (logits, *self.head(features, logits))
