"""After training: fit the temperature that calibrates the probabilities, and the open-set model
that says "not one of my classes", and keep both in the run folder.

Runs once, on the best weights, when the trainer saves its validation predictions. The
temperature is fitted on the validation logits (:mod:`tl_core.inference.calibration`); the
open-set bank holds the pooled features of every training and validation image
(:mod:`tl_core.inference.open_set`). A head-only run already holds those features (they are
what its head trained on); any other run passes its images through the trained network once
more, in evaluation mode.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset

from tl_core.common import PHASE_SAVING
from tl_core.features import BatchFeatures, extract_features
from tl_core.inference import (
    NOT_CALIBRATED,
    Calibration,
    fit_calibration,
    fit_open_set,
    write_calibration,
    write_open_set,
)
from tl_core.training import distributed
from tl_core.training.loaders import image_loader

logger = logging.getLogger(__name__)


def fit_reliability(trainer, val_logits: torch.Tensor) -> Calibration:
    """Fits and writes ``calibration.json`` and ``open_set.safetensors`` for a trained run.

    Args:
        trainer: The ``Trainer`` that has just trained, with its best weights loaded.
        val_logits: The best weights' raw logits on the validation images, in item order.

    Returns:
        The calibration (temperature 1 when there were too few validation images).
    """
    plan = trainer.plan
    if plan.multi_label:
        # A temperature calibrates a softmax over classes; a multi-label run's tags are read
        # through their own sigmoids and thresholds (thresholds.json) instead.
        calibration = NOT_CALIBRATED
    else:
        targets = torch.tensor([plan.class_names.index(item.label) for item in plan.val_items])
        calibration = fit_calibration(val_logits, targets)
    if not distributed.is_main():
        return calibration  # rank 0 writes the files; the others only need the temperature
    trainer.observer.on_phase("Measuring what the training images look like", PHASE_SAVING)
    if not plan.multi_label:
        write_calibration(trainer.writer.path, calibration)
    train_features, val_features = _labelled_features(trainer)
    features = torch.cat([part for part in (train_features, val_features) if part.numel()])
    is_validation = torch.arange(len(features)) >= len(train_features)
    open_set = fit_open_set(features, is_validation, seed=plan.config.seed)
    if isinstance(open_set, str):
        logger.info("No open-set model for this run: %s", open_set)
    else:
        write_open_set(trainer.writer.path, open_set)
    return calibration


def _labelled_features(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled features of the training and of the validation images, in item order."""
    plan = trainer.plan
    if plan.caches_features:  # the rows the head trained on, in item order
        return _rows(trainer.train_loader.dataset), _rows(trainer.val_loader.dataset)
    compute = BatchFeatures(trainer.model.eval(), plan.device, trainer.autocast)
    transform = plan.preprocessing.eval_transform()
    return tuple(
        _rows(extract_features(compute, image_loader(plan, items, transform, shuffle=False)))
        for items in (plan.train_items, plan.val_items)
    )


def _rows(dataset: Dataset) -> torch.Tensor:
    """Every row's features (the first element of each item), in dataset order."""
    loader = DataLoader(dataset, batch_size=1024, shuffle=False)
    chunks = [batch[0].float() for batch in loader]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)
