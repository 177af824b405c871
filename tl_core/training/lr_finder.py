"""The learning-rate finder: Smith's exponential sweep (2015), as fastai's ``lr_find`` runs it.

The rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` batches while the
loss is recorded, smoothed (an exponential moving average, debiased), and the sweep stops once
the smoothed loss exceeds four times its best (it diverged). The suggested rate follows
fastai's ``valley`` rule: about the middle of the longest stretch over which the loss keeps
falling. The model's weights, buffers and train/eval modes, and the optimiser's state, are
restored afterwards: the sweep only looks.

A recipe's sweep (:func:`find_learning_rate`) takes each batch with the trainer's own step
(``TrainingSteps.step``), as fastai's ``LRFinder`` runs as a callback inside the real fit
loop: the curve is measured in the precision the run will train in (autocast, loss scaling
under float16), with its loss (class weights, label smoothing) and its train/eval modes.

Differences from fastai, on purpose: every parameter group keeps its ratio to the head's rate
(the layer-wise spread of the recipe), so the swept rate and the suggestion are the head's,
which is exactly the ``lr`` setting the suggestion fills in.
"""

from __future__ import annotations

import copy
import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tl_core.common import TLStudioError
from tl_core.config import LR_FINDER_STEPS, TrainConfig
from tl_core.training.feature_loaders import cached_feature_loaders, feature_source_loaders
from tl_core.training.loaders import training_loaders
from tl_core.training.plan import prepare_training
from tl_core.training.recipes import training_stages
from tl_core.training.steps import TrainingSteps, backward_and_step, grad_scaler

START_LR = 1e-7
END_LR = 10.0
SMOOTHING = 0.98  # fastai's AvgSmoothLoss beta
DIVERGENCE_FACTOR = 4.0

Progress = Callable[[int, int], None]
"""Called as ``progress(batches done, batches planned)`` after every batch of the sweep."""


class LRFinderStopped(TLStudioError):
    """The sweep was stopped before it finished."""

    def __init__(self):
        super().__init__("The learning-rate finder was stopped.", "Run it again when ready.")


@dataclass(frozen=True)
class LRFinderResult:
    """The curve a sweep traced and the rate it suggests.

    Attributes:
        lrs: The head's learning rate at each batch.
        losses: The smoothed training loss after each batch.
        suggestion: The suggested learning rate for the head (fastai's ``valley``), or None
            when the curve is too short to read (the loss diverged at once).
        suggestion_index: Where the suggestion lies in ``lrs``, or None.
        diverged: Whether the sweep stopped because the loss blew up.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    suggestion: float | None
    suggestion_index: int | None
    diverged: bool

    def to_dict(self) -> dict:
        return asdict(self)


def valley(losses: list[float]) -> int:
    """The index fastai's ``valley`` rule picks in a loss curve.

    Finds the longest decreasing subsequence of the losses (O(n²) dynamic programming, as
    fastai does), and returns the point a third plus a sixth of the way along it from its
    start: well inside the descent, before the loss flattens toward its minimum.
    """
    n = len(losses)
    longest = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[max_end] < longest[i]:
                max_end = i
                max_start = max_end - longest[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def suggest(lrs: list[float], losses: list[float], num_it: int) -> int | None:
    """The index of the suggested rate, read as fastai reads it: ignoring the first tenth of
    the sweep and its last five points, and everything from the first NaN on."""
    start = num_it // 10
    window = list(losses[start:-5])
    for cut, loss in enumerate(window):
        if math.isnan(loss):
            window = window[:cut]
            break
    if len(window) < 2:
        return None
    return start + valley(window)


def _cycle(loader: DataLoader) -> Iterator:
    # The sweep may need more batches than one pass gives: start the loader again.
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise TLStudioError("There are no training images to run the finder on.")


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""One optimisation step on a batch ``(inputs, targets)`` as its loader gives it; returns the
batch's loss."""


def sweep_learning_rates(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    **sweep,
) -> LRFinderResult:
    """Runs the exponential sweep on a model that is ready to train, then restores it.

    Each batch is a plain float32 step on ``loss_of``; :func:`find_learning_rate` sweeps a
    recipe with the trainer's own step instead.

    Args:
        model: The model, with the train/eval modes and ``requires_grad`` it trains with.
        optimizer: Its optimiser. Each parameter group keeps its learning rate's ratio to the
            last group's (the head's), which sweeps from ``start_lr`` to ``end_lr``.
        loader: Training batches ``(inputs, targets)``; restarted when it runs out.
        loss_of: The training loss of a batch (inputs and targets on ``device``).
        device: Where the model is.
        **sweep: ``start_lr``, ``end_lr``, ``num_it``, ``stop_div``, ``progress`` and ``stop``,
            as :func:`sweep_steps` takes them.
    """
    plain = grad_scaler(torch.device("cpu"))  # disabled: steps pass through it unscaled

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = loss_of(inputs.to(device), targets.to(device))
        backward_and_step(optimizer, loss, plain)
        return loss

    return sweep_steps(model, optimizer, loader, step, **sweep)


def sweep_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    take_step: Step,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    num_it: int = LR_FINDER_STEPS,
    stop_div: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> LRFinderResult:
    """Runs the exponential sweep, each batch taken by ``take_step``, then restores the model
    and the optimiser.

    Args:
        model: The model ``take_step`` trains, with the train/eval modes and ``requires_grad``
            it trains with; its weights, buffers and modes are restored after.
        optimizer: The optimiser ``take_step`` steps. Each parameter group keeps its learning
            rate's ratio to the last group's (the head's), which sweeps from ``start_lr`` to
            ``end_lr``; its state is restored after.
        loader: Training batches ``(inputs, targets)``; restarted when it runs out.
        take_step: One optimisation step on a batch, returning its loss.
        start_lr: The head's rate at the first batch.
        end_lr: The rate the sweep would reach after ``num_it`` batches.
        num_it: Batches in the sweep, unless it diverges first.
        stop_div: Stop once the smoothed loss exceeds four times its best.
        progress: Told after each batch.
        stop: Once set, the sweep ends before the next batch (raising ``LRFinderStopped``).
    """
    head_lr = optimizer.param_groups[-1]["lr"]
    ratios = [group["lr"] / head_lr for group in optimizer.param_groups]
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_modes = [module.training for module in model.modules()]
    lrs: list[float] = []
    losses: list[float] = []
    average, best, diverged = 0.0, math.inf, False
    try:
        batches = _cycle(loader)
        for step in range(num_it):
            if stop is not None and stop.is_set():
                raise LRFinderStopped()
            lr = start_lr * (end_lr / start_lr) ** (step / num_it)
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            loss = take_step(*next(batches))
            # fastai's AvgSmoothLoss: an exponential moving average, debiased by 1 - beta^t.
            average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
            smooth = average / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            losses.append(smooth)
            if progress is not None:
                progress(step + 1, num_it)
            best = min(best, smooth)
            if not math.isfinite(smooth) or (stop_div and smooth > DIVERGENCE_FACTOR * best):
                diverged = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        for module, training in zip(model.modules(), saved_modes, strict=True):
            module.training = training
    index = suggest(lrs, losses, num_it)
    return LRFinderResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        suggestion=None if index is None else lrs[index],
        suggestion_index=index,
        diverged=diverged,
    )


def find_learning_rate(
    config: TrainConfig,
    *,
    num_it: int = LR_FINDER_STEPS,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> LRFinderResult:
    """Runs the finder for a training recipe: its data, model, first stage and spread.

    Head-only recipes sweep on backbone features computed once (seconds); others on images
    with the recipe's augmentation. Gradual unfreezing sweeps its first stage (the head,
    with normalisation layers training), the rate its schedule starts from.

    Raises:
        TLStudioError: The data or model cannot be prepared, or ``stop`` was set.
    """
    with tempfile.TemporaryDirectory(prefix="tl-studio-lr-find-") as workdir:
        plan = prepare_training(config, Path(workdir))
        stage = training_stages(config, plan.freeze.num_backbone_groups)[0]
        # The run's own model, precision, loss, loss scaling and modes (see module docstring).
        steps = TrainingSteps(plan)
        optimizer = steps.stage_optimizer(stage)
        if plan.caches_features:
            sources = feature_source_loaders(plan)
            loaders = cached_feature_loaders(plan, steps.model, sources, steps.autocast)
        else:
            loaders = training_loaders(plan)
        steps.set_train_modes()

        def step(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            loss, _ = steps.step(optimizer, inputs, targets)
            return loss

        return sweep_steps(
            steps.model,
            optimizer,
            loaders.train,
            step,
            num_it=num_it,
            progress=progress,
            stop=stop,
        )
