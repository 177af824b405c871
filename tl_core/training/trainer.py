"""The training loop: fit, train one epoch, evaluate, keep the best weights.

Small methods that each do one thing, checking the stop/pause flags every batch. The loop never
touches a user interface: it reports through a ``TrainingObserver``. Each batch is one
``TrainingSteps.step`` (``tl_core.training.steps``), the step the learning-rate finder takes
too. It receives its data loaders (``tl_core.training.training_run`` builds them) and writes
the run folder through a ``RunWriter``.
"""

from __future__ import annotations

import logging
import time

import torch
from torch.utils.data import DataLoader

from tl_core.common import (
    PHASE_FEATURES,
    PHASE_SAVING,
    PHASE_TRAINING,
    BatchStats,
    JobControl,
    ProgressMeter,
    TrainingObserver,
)
from tl_core.data import item_targets
from tl_core.inference import build_evaluation, mean_average_precision
from tl_core.runs import RunWriter
from tl_core.training import distributed
from tl_core.training.epoch_scores import EpochScore, summed_loss
from tl_core.training.feature_loaders import FeatureSources
from tl_core.training.multilabel_results import save_multi_label_predictions
from tl_core.training.optim import warmup_cosine_schedule, warmup_steps
from tl_core.training.plan import TrainingPlan
from tl_core.training.recipes import Stage, training_stages
from tl_core.training.reliability import fit_reliability
from tl_core.training.steps import TrainingSteps

SAVE_INTERVAL_SECONDS = 10.0

logger = logging.getLogger(__name__)


def epoch_message(epoch: int, epochs: int) -> str:
    """The words for the epoch under way; finished epochs are counted as "epochs done"."""
    return f"Epoch {epoch} of {epochs} in progress"


class Trainer(TrainingSteps):
    """Trains a prepared plan on the loaders it is given, writing the run folder as it goes.

    Its model, precision, loss and loss scaling, and its step, are those of ``TrainingSteps``,
    which the learning-rate finder builds for its sweep.

    Args:
        plan: Data, model and settings from ``prepare_training``.
        writer: Writes the run folder.
        observer: Receives progress events.
        control: Pause/resume/stop flags, checked every batch.
    """

    def __init__(
        self,
        plan: TrainingPlan,
        writer: RunWriter,
        observer: TrainingObserver | None = None,
        control: JobControl | None = None,
    ):
        super().__init__(plan)
        self.config = plan.config
        self.writer = writer
        self.observer = observer or TrainingObserver()
        self.control = control or JobControl()
        self.history: list[dict] = []
        self.best_key: tuple[float, float] | None = None
        self.best_epoch: int | None = None
        # Epochs on cached features take milliseconds: writing every improvement would cost
        # more than the training. The best weights wait in memory for a few seconds instead,
        # and metrics.json names the epoch on disk (saved_epoch), never the one in memory.
        self.best_state: dict[str, torch.Tensor] | None = None
        self.saved_epoch: int | None = None
        self._last_save = float("-inf")
        self.meter = ProgressMeter(self.config.epochs)
        self.train_loader: DataLoader | None = None
        self.val_loader: DataLoader | None = None
        self.features_found = 0  # images whose backbone features came from the store
        self.epoch_message: str | None = None  # the epoch under way, in words
        # What the computed inputs are, in progress messages (see build_loaders).
        self.features_label = "backbone features"

    # ---- progress ---------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        # Paused time is not training time: leave it out of throughput and ETA. Under
        # torchrun, a stop asked of any process stops them all before the same batch.
        self.meter.exclude(distributed.checkpoint(self.control, self.observer.on_pause))

    def _report_progress(self) -> None:
        self.observer.on_progress(self.meter.progress())

    def _features_message(self) -> str:
        meter = self.meter
        if self.features_found and not meter.feature_images:
            return f"Backbone features: all {self.features_found} images found in the cache"
        text = (
            f"Computing {self.features_label}: "
            f"{meter.feature_images_done}/{meter.feature_images} images"
        )
        if self.features_found:
            text += f" ({self.features_found} found in the cache)"
        if self.epoch_message is not None:  # the first epoch computes them as it trains
            text = f"{self.epoch_message}; {text[0].lower()}{text[1:]}"
        return text

    def begin_features(self, sources: FeatureSources, head_only: bool = True) -> None:
        """Announces the feature pass before its first batch, with the whole run's step count.

        The first batch can take long (workers starting, a cold backbone): the phase and a
        bar with its total show at once, and a pause or stop asked for meanwhile is honoured
        before the batch starts. Only the images really computed are counted; those whose
        features were found in the store are named in the message.
        """
        self.features_found = sources.found
        self.meter.expect_features(
            sources.num_images, sources.num_batches, sources.steps_per_epoch, head_only
        )
        self.observer.on_phase(self._features_message(), PHASE_FEATURES)
        self._report_progress()
        self._checkpoint()

    def feature_batch_done(self, images: int) -> None:
        """One batch of backbone features is ready: report it, then honour pause/stop."""
        self.meter.feature_batch(images)
        self.observer.on_phase(self._features_message())
        self._report_progress()
        self._checkpoint()

    # ---- loop -------------------------------------------------------------------------------

    def fit(self, train_loader: DataLoader, val_loader: DataLoader) -> None:
        """Trains for the configured epochs, stage by stage, keeping the best weights.

        A fixed mode is one stage; gradual unfreezing unfreezes more groups each stage (see
        ``tl_core.training.recipes``). Early stopping only ends the last stage: an earlier one is a
        step of the recipe, not the end of it.

        Args:
            train_loader: Shuffled training batches (images, or cached features).
            val_loader: Validation batches in a fixed order.
        """
        config = self.config
        self.train_loader, self.val_loader = train_loader, val_loader
        steps_per_epoch = len(train_loader)
        self.meter.expect_epochs(steps_per_epoch)
        stages = training_stages(config, self.plan.freeze.num_backbone_groups)
        epoch = 0
        for stage in stages:
            optimizer, scheduler = self._start_stage(stage, steps_per_epoch)
            stage_start = len(self.history)
            for _ in range(stage.epochs):
                self.meter.start_epoch()
                message = epoch_message(epoch + 1, config.epochs)
                if len(stages) > 1:
                    message = f"Stage {stage.number} of {len(stages)}: {message}"
                self.epoch_message = message
                if self.meter.features_pending:  # this epoch computes them between its steps
                    self.observer.on_phase(self._features_message(), PHASE_FEATURES)
                else:
                    self.observer.on_phase(message, PHASE_TRAINING)
                self._report_progress()  # the bar's total is known before the first batch
                distributed.set_epoch(train_loader, epoch)
                train_loss, train_accuracy = self.train_one_epoch(
                    epoch, train_loader, optimizer, scheduler
                )
                train_rate = self.meter.epoch_train_rate()  # before validation starts
                # Every process validates on every image; rank 0's numbers are taken, so all
                # processes make the same best-epoch and early-stopping decisions even where
                # GPU arithmetic differs in the last bits.
                val_loss, val_accuracy, val_logits = self.evaluate(val_loader)
                val_loss, val_accuracy, val_extra = distributed.broadcast_from_main(
                    (val_loss, val_accuracy, self._extra_scores(val_logits))
                )
                epoch += 1
                row = {
                    "epoch": epoch,
                    "stage": stage.number,
                    "train_loss": train_loss,
                    "train_accuracy": train_accuracy,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "lr": optimizer.param_groups[-1]["lr"],
                    "seconds": round(self.meter.end_epoch(), 3),
                    "train_images_per_second": _rounded(train_rate, 2),
                    **val_extra,
                }
                self.history.append(row)
                improved = self._keep_if_best(row)
                self.record("running")
                self.observer.on_epoch(row, improved)
                self._report_progress()
                if stage is stages[-1] and self._stagnated(self.history[stage_start:]):
                    self.observer.on_phase(
                        f"Stopped early: validation loss has not improved for "
                        f"{config.early_stopping_patience} epochs"
                    )
                    return

    def _start_stage(self, stage: Stage, steps_per_epoch: int):
        """Freezes the stage's groups; returns a fresh optimiser and a schedule for the stage."""
        optimizer = self.stage_optimizer(stage)
        total = stage.epochs * steps_per_epoch
        warmup = warmup_steps(self.config.warmup_epochs, steps_per_epoch, total)
        return optimizer, warmup_cosine_schedule(optimizer, warmup, total)

    def train_one_epoch(self, epoch: int, loader: DataLoader, optimizer, scheduler):
        self.set_train_modes()
        total_loss = seen = 0
        score = EpochScore(self.plan.multi_label, len(self.plan.class_names))
        steps = len(loader)
        for index, (inputs, targets) in enumerate(loader):
            self._checkpoint()
            # Moved here (the step then finds them in place): accuracy needs the targets there.
            inputs, targets = self._to_device(inputs, targets)
            loss, logits = self.step(optimizer, inputs, targets)
            scheduler.step()

            batch = len(targets)
            total_loss += loss.item() * batch
            score.add(logits, targets)
            seen += batch
            self.meter.train_batch(batch)
            self.observer.on_batch(
                BatchStats(
                    epoch=epoch + (index + 1) / steps,
                    loss=loss.item(),
                    lr=optimizer.param_groups[-1]["lr"],
                )
            )
            self._report_progress()
        total_loss, seen, *counts = distributed.sum_across(
            (total_loss, seen, *score.counts.tolist())
        )
        return total_loss / max(seen, 1), score.value(counts)

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> tuple[float, float, torch.Tensor]:
        """Mean loss, accuracy (macro F1 at 0.5 for a multi-label run) and the logits (in
        loader order) over a loader."""
        self.model.eval()
        total_loss = seen = 0
        score = EpochScore(self.plan.multi_label, len(self.plan.class_names))
        all_logits = []
        for inputs, targets in loader:
            self._checkpoint()
            inputs, targets = self._to_device(inputs, targets)
            with self.autocast():
                logits = self.forward_inputs(inputs).float()
            total_loss += summed_loss(logits, targets, self.plan.multi_label)
            score.add(logits, targets)
            seen += len(targets)
            all_logits.append(logits.cpu())
        return total_loss / max(seen, 1), score.value(), torch.cat(all_logits)

    def _extra_scores(self, val_logits: torch.Tensor) -> dict[str, float]:
        """What a history row holds beyond loss and accuracy: for a multi-label run, the mean
        average precision on the validation images (``val_map``); nothing otherwise."""
        if not self.plan.multi_label:
            return {}
        targets = item_targets(self.plan.val_items, self.plan.class_names)
        value = mean_average_precision(val_logits.sigmoid().numpy(), targets.numpy())
        return {"val_map": None if value != value else round(value, 6)}  # NaN: no positive

    # ---- bookkeeping ------------------------------------------------------------------------

    def _keep_if_best(self, row: dict) -> bool:
        # Best by validation accuracy; among equals, the lower validation loss.
        key = (row["val_accuracy"], -row["val_loss"])
        if self.best_key is not None and key <= self.best_key:
            return False
        self.best_key = key
        self.best_epoch = row["epoch"]
        self.best_state = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        if time.monotonic() - self._last_save >= SAVE_INTERVAL_SECONDS:
            self.save_best()
        return True

    def save_best(self) -> None:
        """Writes the best weights to the run folder, unless the file already holds them.

        Two files cannot change at once, so the order keeps metrics.json true at every moment
        (a kill -9 can strike between any two writes): first it stops naming the old epoch,
        then the weights are replaced, then it names the new one (in :meth:`record`).
        """
        if self.best_state is None or self.saved_epoch == self.best_epoch:
            return
        if self.saved_epoch is not None:
            self.writer.write_metrics(self.history, None, "running")
        self.writer.write_weights(self.best_state, epoch=self.best_epoch)
        self.saved_epoch = self.best_epoch
        self._last_save = time.monotonic()

    def _stagnated(self, rows: list[dict]) -> bool:
        """Whether the last ``patience`` of ``rows`` (this stage's epochs) all failed to
        beat the best validation loss before them."""
        patience = self.config.early_stopping_patience
        if patience <= 0 or len(rows) <= patience:
            return False
        best_loss = min(row["val_loss"] for row in rows[:-patience])
        return all(row["val_loss"] >= best_loss for row in rows[-patience:])

    def record(self, status: str) -> None:
        """Writes metrics.json with ``status``; a run that ended also keeps its best weights."""
        if status != "running":
            self.save_best()
        self.writer.write_metrics(self.history, self.saved_epoch, status)

    def record_failure(self, error: str) -> None:
        """Records a failure as well as the disk allows; never raises.

        The best weights are saved if possible, and metrics.json says "failed" with the reason
        and the epoch whose weights are really on disk. When the disk refuses even that (it
        is full), the caller still reports the original error.
        """
        # One line each (tl_core.common.logs): the caller reports the failure itself.
        try:
            self.save_best()
        except Exception:
            kept = f"the weights of epoch {self.saved_epoch}" if self.saved_epoch else "no weights"
            logger.warning(
                "The best weights (epoch %s) could not be saved; the run folder keeps %s",
                self.best_epoch,
                kept,
                exc_info=True,
            )
        try:
            self.writer.write_metrics(self.history, self.saved_epoch, "failed", error)
        except Exception:
            logger.warning(
                "The failure could not be recorded in the run's metrics.json", exc_info=True
            )

    def save_val_predictions(self) -> None:
        """The best model's predictions on the validation images, for the Evaluate page."""
        if self.best_epoch is None:
            return
        self.observer.on_phase("Saving validation predictions", PHASE_SAVING)
        self.save_best()  # the predictions then describe the weights on disk, even after a crash
        self.model.load_state_dict(self.best_state)
        _, _, logits = self.evaluate(self.val_loader)
        calibration = fit_reliability(self, logits)
        if self.plan.multi_label:  # thresholds.json, then the predictions at its thresholds
            save_multi_label_predictions(self.plan, self.writer, logits)
            return  # calibration.json, open_set.safetensors
        evaluation = build_evaluation(
            self.plan.class_names,
            [str(i.path) for i in self.plan.val_items],
            [self.plan.class_names.index(i.label) for i in self.plan.val_items],
            logits,
            calibration,
        )
        self.writer.write_val_predictions(evaluation.predictions)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
