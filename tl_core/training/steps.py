"""The training step: one optimisation step on one batch, as a run takes it.

The trainer's epochs and the learning-rate finder's sweep both step through
:meth:`TrainingSteps.step`, as fastai's ``LRFinder`` callback runs inside the real fit loop:
the finder's curve is then measured in the precision the run trains in (its autocast), with
its loss (class weights, label smoothing), its gradient scaling (fp16) and the train/eval
modes its epochs set (frozen normalisation layers stay in eval mode).
"""

from __future__ import annotations

import torch

from tl_core.common import autocast_for, in_preferred_layout
from tl_core.features import classify_features
from tl_core.models import apply_freeze, set_train_mode
from tl_core.training import distributed
from tl_core.training.optim import build_optimizer
from tl_core.training.plan import TrainingPlan
from tl_core.training.recipes import Stage


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler of a run on ``device``: enabled for float16 autocast only."""
    # fp16 needs loss scaling to avoid underflowing gradients; bfloat16 does not.
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=use_scaler)


def backward_and_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, scaler: torch.amp.GradScaler
) -> None:
    """Back-propagates ``loss`` through ``scaler`` and steps ``optimizer``.

    A disabled scaler passes the loss and the step through unchanged (plain float32 steps).
    An enabled one scales the loss before backward, skips the step when the gradients
    overflowed, and adapts its scale.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


class TrainingSteps:
    """A plan's model on its device, with everything that decides how it takes a step.

    Args:
        plan: Data, model and settings from ``prepare_training``.

    Attributes:
        device: Where the model trains.
        model: The plan's model, on ``device`` in the memory layout the device runs fastest.
        autocast: Returns the mixed-precision context of the device (a no-op on the CPU).
        criterion: The plan's training loss (class weights and label smoothing included).
        scaler: Scales the loss under float16 autocast; disabled otherwise.
        forward_inputs: How a batch becomes logits: the whole model on images, the head on
            cached features, or the layers after a frozen prefix (set by whoever builds the
            loaders).
        train_forward: ``forward_inputs`` as a training step calls it (under torchrun,
            wrapped to average the gradients); set by :meth:`stage_optimizer`.
    """

    def __init__(self, plan: TrainingPlan):
        self.plan = plan
        self.device = plan.device
        self.model = in_preferred_layout(plan.model.to(self.device), self.device)
        self.autocast = autocast_for(self.device)
        self.criterion = plan.loss_function()
        self.scaler = grad_scaler(self.device)
        self.forward_inputs = (
            self._classify_features if plan.caches_features else self.model.__call__
        )
        self.train_forward = self.forward_inputs

    def _classify_features(self, features: torch.Tensor) -> torch.Tensor:
        return classify_features(self.model, features)

    def _to_device(self, inputs: torch.Tensor, targets: torch.Tensor):
        # Moving a batch already there, in its layout, returns the same tensors: no copy.
        inputs = in_preferred_layout(inputs.to(self.device, non_blocking=True), self.device)
        return inputs, targets.to(self.device, non_blocking=True)

    def stage_optimizer(self, stage: Stage) -> torch.optim.Optimizer:
        """Freezes the stage's groups and returns a fresh optimiser for what trains in it.

        A new optimiser also starts without the previous stage's Adam moments, as fastai's
        ``freeze_to`` clears the optimiser's state.
        """
        config = self.plan.config
        apply_freeze(self.model, stage.frozen_groups, train_bn=stage.train_bn)
        optimizer = build_optimizer(
            self.model,
            self.plan.freeze.groups,
            stage.frozen_groups,
            config.lr,
            config.backbone_lr_scale,
            config.weight_decay,
        )
        # Under torchrun, DistributedDataParallel averages the gradients of what trains in
        # this stage (so it is built again when a stage unfreezes more).
        self.train_forward = distributed.data_parallel(self.model, self.forward_inputs)
        return optimizer

    def set_train_modes(self) -> None:
        """The modes training steps run in: on cached features only the head trains (the
        backbone that computed them stays in eval mode); on images the whole model, frozen
        normalisation layers excepted."""
        if self.plan.caches_features:
            self.model.get_classifier().train()
        else:
            set_train_mode(self.model)

    def step(
        self, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch: forward and loss under the run's autocast, then
        backward through the loss scaler and the optimiser's step.

        Args:
            optimizer: From :meth:`stage_optimizer`.
            inputs: A batch, on any device: moved to the model's, images in the layout the
                device runs fastest.
            targets: The batch's class indices.

        Returns:
            The batch's loss and logits, on the device.
        """
        inputs, targets = self._to_device(inputs, targets)
        with self.autocast():
            logits = self.train_forward(inputs)
            loss = self.criterion(logits.float(), targets)
        backward_and_step(optimizer, loss, self.scaler)
        return loss, logits
