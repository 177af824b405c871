"""What the trainer measures over an epoch's batches: accuracy for one class per image, and for
a multi-label run macro F1 at a threshold of 0.5 (the per-tag thresholds are chosen after
training, on the best epoch's validation outputs; see ``tl_core.inference.thresholds``).

Both are kept as counts, so that under torchrun the processes' counts add up before the score
is taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tl_core.inference import f1_from_counts


class EpochScore:
    """Counts over an epoch's batches from which its score is taken.

    Args:
        multi_label: One sigmoid output per tag (multi-hot targets) rather than one class.
        num_outputs: The model's outputs (classes or tags).
    """

    def __init__(self, multi_label: bool, num_outputs: int):
        self.multi_label = multi_label
        self.num_outputs = num_outputs
        # One class: (correct, seen); several tags: true positives, false positives, false
        # negatives per tag, then seen.
        self.counts = torch.zeros(3 * num_outputs + 1 if multi_label else 2, dtype=torch.float64)

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Counts one batch's outputs against its targets."""
        if self.multi_label:
            predicted = logits.detach() >= 0  # sigmoid(logit) >= 0.5
            truth = targets >= 0.5
            batch = torch.cat(
                [
                    (predicted & truth).sum(0),
                    (predicted & ~truth).sum(0),
                    (~predicted & truth).sum(0),
                    torch.tensor([len(targets)], device=logits.device),
                ]
            )
        else:
            correct = (logits.argmax(1) == targets).sum()
            batch = torch.stack([correct, torch.tensor(len(targets), device=logits.device)])
        self.counts += batch.double().cpu()

    def value(self, counts: Sequence[float] | None = None) -> float:
        """The score of ``counts`` (default: this process's): accuracy, or macro F1."""
        counts = torch.as_tensor(self.counts if counts is None else counts, dtype=torch.float64)
        seen = float(counts[-1])
        if not self.multi_label:
            return float(counts[0]) / max(seen, 1)
        tp, fp, fn = counts[:-1].reshape(3, self.num_outputs).numpy()
        return float(f1_from_counts(tp, fp, fn).mean()) if self.num_outputs else 0.0


def summed_loss(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> float:
    """The unweighted loss summed over a batch's images: cross-entropy, or for several tags the
    binary cross-entropy averaged over the tags of each image."""
    if multi_label:
        per_output = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets.float(), reduction="sum"
        )
        return per_output.item() / max(logits.shape[1], 1)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
