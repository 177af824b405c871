"""A whole training run: the plan, the loaders its trainer trains on, the fit, the run folder.

``train`` prepares the plan, builds the trainer (``tl_core.training.trainer``) and the loaders it
trains on (images, features the backbone computes once, or a frozen prefix's outputs computed
once), fits, and leaves a complete run folder whether the run completes, stops or fails.
"""

from __future__ import annotations

from pathlib import Path

from tl_core.common import (
    JobControl,
    TrainingObserver,
    TrainingStopped,
    explain_failure,
    release_memory,
)
from tl_core.config import TrainConfig
from tl_core.features import BatchFeatures, KeyedStore, compute_prefix_outputs
from tl_core.runs import RunWriter
from tl_core.training import distributed
from tl_core.training.feature_loaders import (
    compute_features,
    feature_loaders,
    feature_source_loaders,
    gather_computed,
    plan_feature_key,
)
from tl_core.training.features_first_pass import features_on_first_pass
from tl_core.training.loaders import (
    Loaders,
    frozen_prefix_split,
    prefix_output_loaders,
    training_loaders,
)
from tl_core.training.lost_processes import lost_process_error
from tl_core.training.plan import TrainingPlan, prepare_training
from tl_core.training.trainer import Trainer


def build_loaders(
    plan: TrainingPlan, trainer: Trainer, feature_cache: str | Path | None = None
) -> Loaders:
    """The loaders ``trainer.fit`` trains on: images, features the backbone computes once, or
    the outputs of a frozen prefix computed once (partial fine-tuning without augmentation).

    Computing features reports every batch through the trainer, which also honours pause and
    stop between batches. With a ``feature_cache`` folder, features already kept there (by an
    earlier run or the backbone advisor) are reused, and the new ones are added to it.
    """
    if not plan.caches_features:
        return _image_loaders(plan, trainer)
    store = None
    if feature_cache is not None:
        store = KeyedStore.open(feature_cache, plan_feature_key(plan, trainer.autocast))
    known = store.stored.rows if store else None
    if distributed.world_size() > 1:
        return _gathered_feature_loaders(plan, trainer, store, known)
    sources = feature_source_loaders(plan, known)
    trainer.begin_features(sources)
    # The backbone computes features in eval mode throughout; epochs train only the head.
    trainer.model.eval()

    def keep_features() -> None:
        if store is not None:
            computed = {**train.computed_rows(), **val.computed_rows()}
            store.add(computed, trainer.meter.steady_feature_rate())

    # The first epoch trains the head while the backbone computes the features it needs.
    compute = BatchFeatures(trainer.model, plan.device, trainer.autocast)
    train, val = features_on_first_pass(
        plan, sources, compute, trainer.feature_batch_done, keep_features
    )
    return Loaders(train=train, val=val)


def _gathered_feature_loaders(
    plan: TrainingPlan, trainer: Trainer, store: KeyedStore | None, known
) -> Loaders:
    """Under torchrun: each process computes a share of the features before the first epoch,
    and the shares are gathered, so that every process trains on every row."""
    sources = feature_source_loaders(plan, known, shared=True)
    distributed.require_same(sources.unknown, "which images' features must be computed")
    trainer.begin_features(sources)
    computed = compute_features(
        trainer.model, sources, plan.device, trainer.autocast, trainer.feature_batch_done
    )
    computed = gather_computed(sources, computed)
    if store is not None and distributed.is_main():  # the others hold the same rows
        store.add(computed, trainer.meter.steady_feature_rate())
    return feature_loaders(plan, sources, computed)


def _image_loaders(plan: TrainingPlan, trainer: Trainer) -> Loaders:
    """Loaders over images; with a frozen prefix, it runs without autograd, and once only when
    the inputs never vary (the epochs then train the rest on its stored outputs)."""
    split = frozen_prefix_split(plan)
    if split is None:
        return training_loaders(plan)
    trainer.forward_inputs = split.forward
    if plan.augment != "none":
        return training_loaders(plan)
    sources = feature_source_loaders(plan)
    trainer.features_label = "the frozen layers' output"
    trainer.begin_features(sources, head_only=False)
    outputs = [
        compute_prefix_outputs(
            split, loader, plan.device, trainer.autocast, trainer.feature_batch_done
        )
        for loader in (sources.loaders.train, sources.loaders.val)
    ]
    trainer.forward_inputs = split.suffix
    return prefix_output_loaders(plan, *outputs)


def train(
    config: TrainConfig,
    run_dir: str | Path | RunWriter,
    observer: TrainingObserver | None = None,
    control: JobControl | None = None,
    *,
    feature_cache: str | Path | None = None,
) -> str:
    """Prepares and runs a whole training run, leaving a complete run folder.

    Args:
        config: The run's settings.
        run_dir: A new (missing or empty) run folder, or a writer that already claimed one.
        observer: Receives progress events.
        control: Pause/resume/stop flags.
        feature_cache: A feature-store folder (``tl_core.features.store``) that head-only runs
            read backbone features from and add new ones to; None neither reads nor writes
            one. Runs with random weights never use it.

    Returns:
        "completed" or "stopped". Errors propagate after metrics.json records them.

    Raises:
        RunError: ``run_dir`` already holds files, or another training owns it.
    """
    writer = run_dir if isinstance(run_dir, RunWriter) else distributed.run_writer(run_dir)
    observer = observer or TrainingObserver()
    control = control or JobControl()
    plan = trainer = loaders = None
    try:
        try:
            plan = prepare_training(config, writer.path, observer)
            observer.on_plan(plan)
            trainer = Trainer(plan, writer, observer, control)
            writer.write_description(plan)
            loaders = build_loaders(plan, trainer, feature_cache)
            trainer.fit(loaders.train, loaders.val)
            trainer.save_val_predictions()
            status = "completed"
        except TrainingStopped:
            status = "stopped"
        if trainer:
            trainer.record(status)  # may fail too (a full disk): then recorded as a failure
        return status
    except BaseException as exc:
        # Another training process that died is said in words, not as a socket's error.
        lost = lost_process_error(exc, len(trainer.history) if trainer else 0)
        if trainer:
            trainer.record_failure(explain_failure(lost or exc)[0])
        else:
            # Nothing worth keeping was written (the data or model could not be prepared).
            writer.discard()
        if lost is not None:
            raise lost from exc
        raise
    finally:
        writer.close()
        device = plan.device if plan else None
        # Drop every reference to the model before handing its GPU memory back.
        plan = trainer = loaders = None
        if device is not None:
            release_memory(device)
