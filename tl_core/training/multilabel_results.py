"""What a multi-label run keeps after training: each tag's threshold, chosen on the validation
images with the best weights, and the validation predictions read at those thresholds (for the
Evaluate page's per-tag views)."""

from __future__ import annotations

import torch

from tl_core.data import item_targets
from tl_core.inference import build_multi_label_evaluation, choose_thresholds
from tl_core.runs import RunWriter
from tl_core.training import distributed
from tl_core.training.plan import TrainingPlan


def save_multi_label_predictions(
    plan: TrainingPlan, writer: RunWriter, val_logits: torch.Tensor
) -> None:
    """Chooses and writes ``thresholds.json``, then ``val_predictions.csv`` at them.

    Args:
        plan: The run's plan (its tags and validation images).
        writer: Writes the run folder.
        val_logits: The best weights' logits on the validation images, in item order.
    """
    if not distributed.is_main():  # rank 0 writes the run folder
        return
    probabilities = val_logits.float().sigmoid().numpy()
    targets = item_targets(plan.val_items, plan.class_names).numpy()
    thresholds = choose_thresholds(writer.path, plan.class_names, probabilities, targets)
    evaluation = build_multi_label_evaluation(
        plan.class_names,
        [str(item.path) for item in plan.val_items],
        targets,
        probabilities,
        list(thresholds.values()),
    )
    writer.write_val_predictions(evaluation.predictions)
