"""The run's answer beyond the logits, as one torch module: calibrated probabilities, the open-set
score and the "not one of my classes" flag.

The Predictor runs it after the network, and the ONNX and torch.export files carry it inside
their graph (``tl_core.export.formats``), so the app and every export reject the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tl_core.features import classify_features, pooled_features
from tl_core.inference.calibration import Calibration
from tl_core.inference.open_set import OpenSetModel
from tl_core.inference.open_set_scores import kth_neighbour_distance

# The outputs of an exported model, in order (the first is what older exports returned).
OUTPUT_NAMES = ("logits", "probabilities", "ood_score", "unknown")
# A multi-label run's: probabilities are each tag's sigmoid, and "tags" flags each tag whose
# probability reaches its threshold (thresholds.json), so an export decides as the app does.
MULTI_LABEL_OUTPUT_NAMES = (*OUTPUT_NAMES, "tags")


class ReliableHead(torch.nn.Module):
    """(pooled features, logits) -> (calibrated probabilities, open-set score, unknown flag);
    for a multi-label run (``thresholds`` given) -> (each tag's sigmoid probability, open-set
    score, unknown flag, the tags at or above their thresholds).

    Args:
        calibration: The run's temperature (1 for a multi-label run).
        open_set: The run's bank and threshold; None (an older run): score 0, nothing unknown.
        thresholds: A multi-label run's threshold of each tag; None for one class per image.
    """

    def __init__(
        self,
        calibration: Calibration,
        open_set: OpenSetModel | None = None,
        thresholds: Sequence[float] | None = None,
    ):
        super().__init__()
        self.multi_label = thresholds is not None
        self.register_buffer(
            "tag_thresholds", torch.tensor([float(t) for t in thresholds or ()]).float()
        )
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
        if self.multi_label:
            self.description.update(
                outputs=list(MULTI_LABEL_OUTPUT_NAMES),
                thresholds=[float(t) for t in thresholds],
                probabilities="sigmoid of each tag's logit (not a softmax: tags are independent)",
                tags="probabilities >= thresholds: the tags the image gets (none is possible)",
            )

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.k == 0:
            scores = torch.zeros_like(logits[:, 0])
        else:
            queries = torch.nn.functional.normalize(features, dim=1)
            scores = kth_neighbour_distance(queries, self.bank, self.k)
        if self.multi_label:
            probabilities = logits.sigmoid()
            tags = probabilities >= self.tag_thresholds
            return probabilities, scores, scores > self.threshold, tags
        probabilities = (logits / self.temperature).softmax(dim=1)
        return probabilities, scores, scores > self.threshold


class NetworkWithReliableHead(torch.nn.Module):
    """A timm network followed by its :class:`ReliableHead`: images -> the four outputs of
    ``OUTPUT_NAMES`` (five, ``MULTI_LABEL_OUTPUT_NAMES``, for a multi-label run), logits
    first."""

    def __init__(self, network: torch.nn.Module, head: ReliableHead):
        super().__init__()
        self.network = network
        self.head = head

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of :meth:`forward`'s outputs, in order."""
        return MULTI_LABEL_OUTPUT_NAMES if self.head.multi_label else OUTPUT_NAMES

    def describe(self) -> dict:
        """The head's outputs, temperature and threshold, as JSON-ready values."""
        return dict(self.head.description)

    def forward(self, images: torch.Tensor):
        features = pooled_features(self.network, images)
        logits = classify_features(self.network, features)
        return (logits, *self.head(features, logits))
