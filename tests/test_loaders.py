"""Data loading lives outside the trainer: loaders are built, then handed to ``fit``."""

from __future__ import annotations

import json

import torch
from torch.utils.data import DataLoader

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import Progress, TrainingObserver
from tl_core.features import BatchFeatures
from tl_core.runs import RunWriter
from tl_core.training import (
    Trainer,
    cached_feature_loaders,
    feature_source_loaders,
    features_on_first_pass,
    prepare_training,
    training_loaders,
)


def test_training_loaders_serve_every_image_and_keep_validation_in_order(tiny_dataset, tmp_path):
    plan = prepare_training(tiny_config(tiny_dataset, batch_size=4), tmp_path)
    loaders = training_loaders(plan)
    assert loaders.num_images == sum(TINY_CLASSES.values())
    images, labels = next(iter(loaders.train))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64
    val_targets = [label for _, batch in loaders.val for label in batch.tolist()]
    assert val_targets == [plan.class_names.index(i.label) for i in plan.val_items]


def test_cached_feature_loaders_report_every_batch(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", batch_size=4)
    plan = prepare_training(config, tmp_path)
    sources = feature_source_loaders(plan)
    counts: list[int] = []
    loaders = cached_feature_loaders(plan, plan.model, sources, torch.no_grad, counts.append)
    assert counts and sum(counts) == sources.num_images
    assert len(counts) == sources.num_batches
    features, _ = next(iter(loaders.train))
    assert features.ndim == 2 and features.shape[1] == plan.model.num_features


def test_fit_trains_on_the_loaders_it_is_given(tiny_dataset, tmp_path):
    class Steps(TrainingObserver):
        last: Progress | None = None

        def on_progress(self, progress: Progress) -> None:
            self.last = progress

    writer = RunWriter.create(tmp_path / "run")
    plan = prepare_training(tiny_config(tiny_dataset, epochs=2), writer.path)
    loaders = training_loaders(plan)
    # One fixed batch of four training images stands in for the whole training set.
    subset = next(iter(loaders.train))
    observer = Steps()
    trainer = Trainer(plan, writer, observer)
    trainer.fit([(subset[0][:4], subset[1][:4])], loaders.val)
    assert observer.last.step == observer.last.total_steps == 2  # 2 epochs x 1 batch
    assert [row["epoch"] for row in trainer.history] == [1, 2]
    metrics = json.loads((writer.path / "metrics.json").read_text())
    assert metrics["status"] == "running" and len(metrics["history"]) == 2
    assert isinstance(loaders.train, DataLoader)


def test_features_computed_on_the_first_pass_give_every_epoch_the_same_batches(
    tiny_dataset, tmp_path
):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", batch_size=4)
    plan = prepare_training(config, tmp_path)
    model = plan.model.eval()
    sources = feature_source_loaders(plan)
    first_computed = cached_feature_loaders(plan, model, sources, torch.no_grad)
    counts: list[int] = []
    completed: list[bool] = []
    compute = BatchFeatures(model, plan.device, torch.no_grad)
    train, val = features_on_first_pass(
        plan, sources, compute, counts.append, lambda: completed.append(True)
    )
    assert counts == [] and not train.complete  # nothing computed before the first batch
    first = iter(train)
    head = next(first)
    assert counts == [4]  # one batch of images went through the backbone, not all of them
    for epoch in range(3):  # the first computes as it goes; the others only read
        batches = [head, *first] if epoch == 0 else list(train)
        expected = list(first_computed.train)
        for (features, labels), (want_features, want_labels) in zip(batches, expected, strict=True):
            assert torch.equal(labels, want_labels)
            torch.testing.assert_close(features, want_features)
    assert train.complete and completed == []  # validation's rows are still to come
    for (features, labels), (want_features, want_labels) in zip(
        val, first_computed.val, strict=True
    ):
        assert torch.equal(labels, want_labels)
        torch.testing.assert_close(features, want_features)
    assert completed == [True] and sum(counts) == sources.num_images
    assert len(counts) == sources.num_batches
    assert set(train.computed_rows()) | set(val.computed_rows()) == set(
        sources.train_digests + sources.val_digests
    )
