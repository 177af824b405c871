"""The training loop: fit, train one epoch, evaluate, keep the best weights.

Small methods that each do one thing, checking the stop/pause flags every batch. The loop never
touches a user interface: it reports through a ``TrainingObserver``. It receives its data
loaders (``tl_core.loaders`` builds them) and writes the run folder through a ``RunWriter``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tl_core.backbones import set_train_mode
from tl_core.config import TrainConfig
from tl_core.control import (
    PHASE_FEATURES,
    PHASE_SAVING,
    PHASE_TRAINING,
    BatchStats,
    JobControl,
    ProgressMeter,
    TrainingObserver,
    TrainingStopped,
)
from tl_core.devices import release_memory
from tl_core.evaluation import build_evaluation
from tl_core.failures import explain_failure
from tl_core.features import classify_features
from tl_core.loaders import (
    Loaders,
    cached_feature_loaders,
    feature_source_loaders,
    training_loaders,
)
from tl_core.optim import build_optimizer, warmup_cosine_schedule
from tl_core.plan import TrainingPlan, prepare_training
from tl_core.runs import RunWriter

SAVE_INTERVAL_SECONDS = 10.0

logger = logging.getLogger(__name__)


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bfloat16 where supported, else float16), none on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def epoch_message(epoch: int, epochs: int) -> str:
    """The words for the epoch under way; finished epochs are counted as "epochs done"."""
    return f"Epoch {epoch} of {epochs} in progress"


class Trainer:
    """Trains a prepared plan on the loaders it is given, writing the run folder as it goes.

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
        self.plan = plan
        self.config = plan.config
        self.writer = writer
        self.observer = observer or TrainingObserver()
        self.control = control or JobControl()
        self.device = plan.device
        self.model = plan.model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = autocast_for(self.device)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        # fp16 needs loss scaling to avoid underflowing gradients; bfloat16 does not.
        use_scaler = self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
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
        self.val_loader: DataLoader | None = None

    # ---- progress ---------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        # Paused time is not training time: leave it out of throughput and ETA.
        self.meter.exclude(self.control.checkpoint(self.observer.on_pause))

    def _report_progress(self) -> None:
        self.observer.on_progress(self.meter.progress())

    def _features_message(self) -> str:
        meter = self.meter
        return (
            f"Computing backbone features: {meter.feature_images_done}/{meter.feature_images} "
            "images"
        )

    def begin_features(self, sources: Loaders) -> None:
        """Announces the feature pass before its first batch, with the whole run's step count.

        The first batch can take long (workers starting, a cold backbone): the phase and a
        bar with its total show at once, and a pause or stop asked for meanwhile is honoured
        before the batch starts.
        """
        self.meter.expect_features(sources.num_images, sources.num_batches, len(sources.train))
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

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.plan.caches_features:
            return classify_features(self.model, inputs)
        return self.model(inputs)

    def _to_device(self, inputs: torch.Tensor, targets: torch.Tensor):
        inputs = inputs.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, targets.to(self.device, non_blocking=True)

    def fit(self, train_loader: DataLoader, val_loader: DataLoader) -> None:
        """Trains for the configured epochs, with early stopping, keeping the best weights.

        Args:
            train_loader: Shuffled training batches (images, or cached features).
            val_loader: Validation batches in a fixed order.
        """
        config = self.config
        self.val_loader = val_loader
        steps_per_epoch = len(train_loader)
        self.meter.expect_epochs(steps_per_epoch)
        optimizer = build_optimizer(
            self.model,
            self.plan.head_params,
            config.lr,
            config.backbone_lr_scale,
            config.weight_decay,
        )
        scheduler = warmup_cosine_schedule(
            optimizer,
            round(config.warmup_epochs * steps_per_epoch),
            config.epochs * steps_per_epoch,
        )
        for epoch in range(config.epochs):
            self.meter.start_epoch()
            self.observer.on_phase(epoch_message(epoch + 1, config.epochs), PHASE_TRAINING)
            self._report_progress()  # the bar's total is known before the epoch's first batch
            train_loss, train_accuracy = self.train_one_epoch(
                epoch, train_loader, optimizer, scheduler
            )
            val_loss, val_accuracy, _ = self.evaluate(val_loader)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": optimizer.param_groups[-1]["lr"],
                "seconds": round(self.meter.end_epoch(), 3),
            }
            self.history.append(row)
            improved = self._keep_if_best(row)
            self.record("running")
            self.observer.on_epoch(row, improved)
            self._report_progress()
            if self._stagnated():
                self.observer.on_phase(
                    f"Stopped early: validation loss has not improved for "
                    f"{config.early_stopping_patience} epochs"
                )
                break

    def train_one_epoch(self, epoch: int, loader: DataLoader, optimizer, scheduler):
        if self.plan.caches_features:
            self.model.get_classifier().train()
        else:
            set_train_mode(self.model)
        total_loss = correct = seen = 0
        steps = len(loader)
        for index, (inputs, targets) in enumerate(loader):
            self._checkpoint()
            inputs, targets = self._to_device(inputs, targets)
            with self.autocast():
                logits = self._forward(inputs)
                loss = self.criterion(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            scheduler.step()

            batch = len(targets)
            total_loss += loss.item() * batch
            correct += (logits.argmax(1) == targets).sum().item()
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
        return total_loss / max(seen, 1), correct / max(seen, 1)

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> tuple[float, float, torch.Tensor]:
        """Mean loss, accuracy and the logits (in loader order) over a loader."""
        self.model.eval()
        total_loss = correct = seen = 0
        all_logits = []
        for inputs, targets in loader:
            self._checkpoint()
            inputs, targets = self._to_device(inputs, targets)
            with self.autocast():
                logits = self._forward(inputs).float()
            total_loss += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            correct += (logits.argmax(1) == targets).sum().item()
            seen += len(targets)
            all_logits.append(logits.cpu())
        return total_loss / max(seen, 1), correct / max(seen, 1), torch.cat(all_logits)

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

    def _stagnated(self) -> bool:
        patience = self.config.early_stopping_patience
        if patience <= 0 or len(self.history) <= patience:
            return False
        best_loss = min(row["val_loss"] for row in self.history[:-patience])
        return all(row["val_loss"] >= best_loss for row in self.history[-patience:])

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
        try:
            self.save_best()
        except Exception:
            logger.warning("Could not save the best weights of a failed run", exc_info=True)
        try:
            self.writer.write_metrics(self.history, self.saved_epoch, "failed", error)
        except Exception:
            logger.warning("Could not record the failure in metrics.json", exc_info=True)

    def save_val_predictions(self) -> None:
        """The best model's predictions on the validation images, for the Evaluate page."""
        if self.best_epoch is None:
            return
        self.observer.on_phase("Saving validation predictions", PHASE_SAVING)
        self.save_best()  # the predictions then describe the weights on disk, even after a crash
        self.model.load_state_dict(self.best_state)
        _, _, logits = self.evaluate(self.val_loader)
        evaluation = build_evaluation(
            self.plan.class_names,
            [str(i.path) for i in self.plan.val_items],
            [self.plan.class_names.index(i.label) for i in self.plan.val_items],
            logits,
        )
        self.writer.write_val_predictions(evaluation.predictions)


def build_loaders(plan: TrainingPlan, trainer: Trainer) -> Loaders:
    """The loaders ``trainer.fit`` trains on: images, or features the backbone computes once.

    Computing features reports every batch through the trainer, which also honours pause and
    stop between batches.
    """
    if not plan.caches_features:
        return training_loaders(plan)
    sources = feature_source_loaders(plan)
    trainer.begin_features(sources)
    return cached_feature_loaders(
        plan, trainer.model, sources, trainer.autocast, trainer.feature_batch_done
    )


def train(
    config: TrainConfig,
    run_dir: str | Path | RunWriter,
    observer: TrainingObserver | None = None,
    control: JobControl | None = None,
) -> str:
    """Prepares and runs a whole training run, leaving a complete run folder.

    Args:
        config: The run's settings.
        run_dir: A new (missing or empty) run folder, or a writer that already claimed one.
        observer: Receives progress events.
        control: Pause/resume/stop flags.

    Returns:
        "completed" or "stopped". Errors propagate after metrics.json records them.

    Raises:
        RunError: ``run_dir`` already holds files, or another training owns it.
    """
    writer = run_dir if isinstance(run_dir, RunWriter) else RunWriter.create(run_dir)
    observer = observer or TrainingObserver()
    control = control or JobControl()
    plan = trainer = loaders = None
    try:
        try:
            plan = prepare_training(config, writer.path, observer)
            observer.on_plan(plan)
            trainer = Trainer(plan, writer, observer, control)
            writer.write_description(plan)
            loaders = build_loaders(plan, trainer)
            trainer.fit(loaders.train, loaders.val)
            trainer.save_val_predictions()
            status = "completed"
        except TrainingStopped:
            status = "stopped"
        if trainer:
            trainer.record(status)  # may fail too (a full disk): then recorded as a failure
        return status
    except BaseException as exc:
        if trainer:
            trainer.record_failure(explain_failure(exc)[0])
        else:
            # Nothing worth keeping was written (the data or model could not be prepared).
            writer.discard()
        raise
    finally:
        writer.close()
        device = plan.device if plan else None
        # Drop every reference to the model before handing its GPU memory back.
        plan = trainer = loaders = None
        if device is not None:
            release_memory(device)
