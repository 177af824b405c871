"""The training loop: fit, train one epoch, evaluate, keep the best weights.

Small methods that each do one thing, checking the stop/pause flags every batch. The loop never
touches a user interface: it reports through a ``TrainingObserver``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tl_core import __version__
from tl_core.backbones import set_train_mode
from tl_core.config import TrainConfig
from tl_core.control import BatchStats, JobControl, TrainingObserver, TrainingStopped
from tl_core.datasets import ImageFolderDataset
from tl_core.devices import release_memory
from tl_core.errors import RunError
from tl_core.evaluation import build_evaluation
from tl_core.features import classify_features, extract_features
from tl_core.optim import build_optimizer, warmup_cosine_schedule
from tl_core.plan import TrainingPlan, prepare_training
from tl_core.runs import (
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    WEIGHTS_FILE,
    save_weights,
    write_frame_csv,
    write_json,
)

SAVE_INTERVAL_SECONDS = 10.0


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bfloat16 where supported, else float16), none on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def default_num_workers(device: torch.device) -> int:
    # On the CPU the model itself needs the cores; on a GPU, decoding must keep up with it.
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class Trainer:
    """Trains a prepared plan, writing the run folder as it goes.

    Args:
        plan: Data, model and settings from ``prepare_training``.
        run_dir: The run folder to write.
        observer: Receives progress events.
        control: Pause/resume/stop flags, checked every batch.
    """

    def __init__(
        self,
        plan: TrainingPlan,
        run_dir: Path,
        observer: TrainingObserver | None = None,
        control: JobControl | None = None,
    ):
        self.plan = plan
        self.config = plan.config
        self.run_dir = Path(run_dir)
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
        # more than the training. The best weights wait in memory for a few seconds instead.
        self.best_state: dict[str, torch.Tensor] | None = None
        self._best_on_disk = True
        self._last_save = float("-inf")
        self.step = 0
        self.total_steps = 0
        self.active_seconds = 0.0

    # ---- data -------------------------------------------------------------------------------

    def _image_loader(self, items, transform, shuffle: bool) -> DataLoader:
        workers = self.config.num_workers
        if workers < 0:
            workers = default_num_workers(self.device)
        dataset = ImageFolderDataset(items, self.plan.class_names, transform)
        generator = torch.Generator().manual_seed(self.config.seed)
        batch_size = self.config.batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=generator,
            # A lone image in the last batch breaks BatchNorm layers that are training.
            drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > batch_size,
        )

    def _feature_loaders(self) -> tuple[DataLoader, DataLoader]:
        eval_transform = self.plan.preprocessing.eval_transform()
        image_loaders = [
            self._image_loader(self.plan.train_items, eval_transform, shuffle=False),
            self._image_loader(self.plan.val_items, eval_transform, shuffle=False),
        ]
        self.model.eval()
        total = len(self.plan.train_items) + len(self.plan.val_items)
        done = 0

        def on_batch(count: int) -> None:
            nonlocal done
            done += count
            self.step += 1
            self.observer.on_phase(f"Computing backbone features: {done}/{total} images")
            self.observer.on_progress(self.step, self.total_steps)
            self._checkpoint()

        train_set, val_set = (
            extract_features(self.model, loader, self.device, self.autocast, on_batch)
            for loader in image_loaders
        )
        generator = torch.Generator().manual_seed(self.config.seed)
        train = DataLoader(
            train_set, batch_size=self.config.batch_size, shuffle=True, generator=generator
        )
        val = DataLoader(val_set, batch_size=max(256, self.config.batch_size))
        return train, val

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.plan.caches_features:
            return classify_features(self.model, inputs)
        return self.model(inputs)

    def _to_device(self, inputs: torch.Tensor, targets: torch.Tensor):
        inputs = inputs.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, targets.to(self.device, non_blocking=True)

    # ---- loop -------------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        paused = self.control.checkpoint(self.observer.on_pause)
        # Paused time is not training time: leave it out of throughput and ETA.
        self._step_started += paused

    def fit(self) -> None:
        """Trains for the configured epochs, with early stopping, keeping the best weights."""
        config = self.config
        self._step_started = time.monotonic()
        feature_steps = 0
        if self.plan.caches_features:
            feature_steps = sum(
                -(-len(items) // config.batch_size)
                for items in (self.plan.train_items, self.plan.val_items)
            )
        # An estimate, so the progress bar moves while features are computed; corrected below
        # from the real loader (which may drop a lone last image).
        steps_per_epoch = -(-len(self.plan.train_items) // config.batch_size)
        self.total_steps = feature_steps + config.epochs * steps_per_epoch
        if self.plan.caches_features:
            train_loader, val_loader = self._feature_loaders()
        else:
            prep = self.plan.preprocessing
            train_loader = self._image_loader(
                self.plan.train_items, prep.train_transform(self.plan.augment), shuffle=True
            )
            val_loader = self._image_loader(self.plan.val_items, prep.eval_transform(), False)
        self.val_loader = val_loader
        steps_per_epoch = len(train_loader)
        self.total_steps = self.step + config.epochs * steps_per_epoch

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
            self.observer.on_phase(f"Epoch {epoch + 1}/{config.epochs}")
            started = time.monotonic()
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
                "seconds": round(time.monotonic() - started, 3),
            }
            self.history.append(row)
            improved = self._keep_if_best(row)
            self.write_metrics("running")
            self.observer.on_epoch(row, improved)
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
            self._report_batch(
                epoch + (index + 1) / steps, loss.item(), batch, optimizer.param_groups[-1]["lr"]
            )
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def _report_batch(self, epoch: float, loss: float, batch: int, lr: float) -> None:
        now = time.monotonic()
        elapsed = max(now - self._step_started, 1e-9)
        self._step_started = now
        self.active_seconds += elapsed
        self.step += 1
        per_step = self.active_seconds / self.step
        self.observer.on_batch(
            BatchStats(
                epoch=epoch,
                loss=loss,
                lr=lr,
                step=self.step,
                total_steps=self.total_steps,
                images_per_second=batch / elapsed,
                eta_seconds=per_step * (self.total_steps - self.step),
            )
        )

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
        self._best_on_disk = False
        if time.monotonic() - self._last_save >= SAVE_INTERVAL_SECONDS:
            self.save_best()
        return True

    def save_best(self) -> None:
        """Writes the best weights to the run folder, unless the file already holds them."""
        if self.best_state is None or self._best_on_disk:
            return
        save_weights(self.run_dir / WEIGHTS_FILE, self.best_state)
        self._best_on_disk = True
        self._last_save = time.monotonic()

    def _stagnated(self) -> bool:
        patience = self.config.early_stopping_patience
        if patience <= 0 or len(self.history) <= patience:
            return False
        best_loss = min(row["val_loss"] for row in self.history[:-patience])
        return all(row["val_loss"] >= best_loss for row in self.history[-patience:])

    def write_description(self) -> None:
        """config.json, labels.json and split.json: written before the first epoch."""
        plan = self.plan
        write_json(
            self.run_dir / CONFIG_FILE,
            {
                "train": self.config.to_dict(),
                "model": {
                    "backbone": self.config.backbone,
                    "num_classes": len(plan.class_names),
                    "weights_source": plan.weights_source,
                    "preprocessing": plan.preprocessing.to_dict(),
                    "augment": plan.augment,
                    "feature_cache": plan.caches_features,
                    "freeze": {
                        "frozen_groups": plan.freeze.frozen_count,
                        "groups": [g.name for g in plan.freeze.groups],
                        "trainable_params": plan.freeze.trainable_params,
                        "frozen_params": plan.freeze.frozen_params,
                    },
                },
                "device": str(self.device),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "tl_studio_version": __version__,
            },
        )
        write_json(self.run_dir / LABELS_FILE, plan.class_names)
        write_json(
            self.run_dir / SPLIT_FILE,
            {
                "train": [[str(i.path), i.label] for i in plan.train_items],
                "val": [[str(i.path), i.label] for i in plan.val_items],
            },
        )

    def write_metrics(self, status: str, error: str | None = None) -> None:
        if status != "running":
            self.save_best()  # a finished, stopped or failed run keeps its best weights
        best = self.history[self.best_epoch - 1]["val_accuracy"] if self.best_epoch else None
        write_json(
            self.run_dir / METRICS_FILE,
            {
                "history": self.history,
                "best_val_accuracy": best,
                "best_epoch": self.best_epoch,
                "status": status,
                "error": error,
            },
        )

    def write_val_predictions(self) -> None:
        """The best model's predictions on the validation images, for the Evaluate page."""
        if self.best_epoch is None:
            return
        self.observer.on_phase("Saving validation predictions")
        self.model.load_state_dict(self.best_state)
        _, _, logits = self.evaluate(self.val_loader)
        evaluation = build_evaluation(
            self.plan.class_names,
            [str(i.path) for i in self.plan.val_items],
            [self.plan.class_names.index(i.label) for i in self.plan.val_items],
            logits,
        )
        write_frame_csv(self.run_dir / PREDICTIONS_FILE, evaluation.predictions)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    observer: TrainingObserver | None = None,
    control: JobControl | None = None,
) -> str:
    """Prepares and runs a whole training run, leaving a complete run folder.

    Returns:
        "completed" or "stopped". Errors propagate after metrics.json records them.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(
            f"The run folder {run_dir} already exists and is not empty.",
            "Choose a new folder name, so no earlier run is overwritten.",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    observer = observer or TrainingObserver()
    control = control or JobControl()
    plan = trainer = None
    try:
        plan = prepare_training(config, run_dir, observer)
        observer.on_plan(plan)
        trainer = Trainer(plan, run_dir, observer, control)
        trainer.write_description()
        trainer.fit()
        trainer.write_val_predictions()
        trainer.write_metrics("completed")
        return "completed"
    except TrainingStopped:
        if trainer:
            trainer.write_metrics("stopped")
        return "stopped"
    except BaseException as exc:
        if trainer:
            trainer.write_metrics("failed", error=str(exc))
        else:
            # Nothing worth keeping was written (the data or model could not be prepared).
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        device = plan.device if plan else None
        # Drop every reference to the model before handing its GPU memory back.
        plan = trainer = None
        if device is not None:
            release_memory(device)
