"""Partial fine-tuning computes the frozen layers' output once, where that is exact."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import timm
import torch

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import TrainingObserver
from tl_core.features import ActivationStore, frozen_prefix, split_frozen_prefix
from tl_core.models import apply_freeze
from tl_core.training import frozen_prefix_split, prepare_training, train
from tl_core.training import training_run as engine

TOTAL = sum(TINY_CLASSES.values())
PREFIX_MESSAGE = f"Computing the frozen layers' output: {TOTAL}/{TOTAL} images"


class Messages(TrainingObserver):
    def __init__(self):
        self.messages: list[str] = []

    def on_phase(self, message: str, phase: str | None = None) -> None:
        self.messages.append(message)


def history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())["history"]


def assert_same_losses(run: Path, reference: Path) -> None:
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    for got, expected in zip(history(run), history(reference), strict=True):
        for key in keys:
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key


@pytest.fixture
def uncached(tiny_dataset, tmp_path, monkeypatch) -> Path:
    """The partial fine-tune with the frozen layers run every batch, as a plain loop does."""
    with monkeypatch.context() as patch:
        patch.setattr(engine, "frozen_prefix_split", lambda plan: None)
        train(partial(tiny_dataset), tmp_path / "uncached")
    return tmp_path / "uncached"


def partial(data: Path, **overrides):
    return tiny_config(data, **{"freeze": "2", "epochs": 3, "batch_size": 4, **overrides})


def test_a_prefix_cached_run_trains_exactly_like_the_uncached_one(
    tiny_dataset, uncached, unfolded, tmp_path
):
    observer = Messages()
    assert train(partial(tiny_dataset), tmp_path / "cached", observer) == "completed"

    assert PREFIX_MESSAGE in observer.messages  # the prefix ran once over every image
    assert_same_losses(tmp_path / "cached", uncached)


def test_prefix_outputs_beyond_the_memory_budget_go_to_a_file_that_is_never_left_behind(
    tiny_dataset, uncached, unfolded, tmp_path, monkeypatch
):
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(frozen_prefix, "MEMORY_BUDGET_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    kept = []
    init = ActivationStore.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        kept.append(self.on_disk)

    monkeypatch.setattr(ActivationStore, "__init__", spy)

    train(partial(tiny_dataset), tmp_path / "cached")

    assert kept == [True, True]  # training and validation outputs
    assert list(spill.iterdir()) == []
    assert_same_losses(tmp_path / "cached", uncached)


def test_every_history_row_has_its_training_images_per_second(tiny_dataset, tmp_path):
    for name, overrides in {
        "images": {"freeze": "none"},
        "prefix": {},
        "head only": {"freeze": "all", "augment": "auto"},
    }.items():
        train(partial(tiny_dataset, **overrides), tmp_path / name)
        rows = history(tmp_path / name)
        assert len(rows) == 3
        assert all(row["train_images_per_second"] > 0 for row in rows), name


def test_with_augmentation_the_prefix_runs_every_batch_without_autograd(tiny_dataset, tmp_path):
    plan = prepare_training(partial(tiny_dataset, augment="light"), tmp_path)
    split = frozen_prefix_split(plan)
    images = torch.randn(2, 3, 32, 32)
    plan.model.eval()
    assert torch.allclose(split.forward(images), plan.model(images), atol=1e-6)
    assert not split.run_prefix(images).requires_grad

    observer = Messages()
    train(partial(tiny_dataset, augment="light", epochs=1), tmp_path / "run", observer)
    assert not any("frozen layers" in m for m in observer.messages)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_convnext"])
def test_sequential_architectures_split_at_the_group_boundary(name):
    model = timm.create_model(name, num_classes=3)
    freeze = apply_freeze(model, 2)
    split, reason = split_frozen_prefix(model, freeze, 32)
    assert split is not None, reason
    frozen = {n for g in freeze.groups[:2] for n in g.param_names}
    prefix_params = {id(p) for p in split.prefix.parameters()}
    assert prefix_params == {id(p) for n, p in model.named_parameters() if n in frozen}
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    assert torch.allclose(split.suffix(split.run_prefix(images)), model(images), atol=1e-5)


def test_the_whole_model_runs_where_a_split_would_not_be_exact(tiny_dataset, tmp_path):
    # A ViT adds position embeddings between its modules: no leading run of children.
    vit = timm.create_model("test_vit", num_classes=3)
    assert split_frozen_prefix(vit, apply_freeze(vit, 2), 32)[0] is None
    # Stochastic depth in a frozen block changes its output in training.
    dropping = timm.create_model("test_efficientnet", num_classes=3, drop_path_rate=0.2)
    split, reason = split_frozen_prefix(dropping, apply_freeze(dropping, 4), 32)
    assert split is None and "DropPath" in reason
    # A forward pass that is not the children in order.
    odd = timm.create_model("test_efficientnet", num_classes=3)
    plain = odd.forward_features
    odd.forward_features = lambda images: plain(images) * 2
    split, reason = split_frozen_prefix(odd, apply_freeze(odd, 2), 32)
    assert split is None and "not its layers in order" in reason
    # Gradual unfreezing changes the frozen groups between stages.
    plan = prepare_training(partial(tiny_dataset, mode="gradual", freeze="1"), tmp_path)
    assert frozen_prefix_split(plan) is None
    # And the ViT trains as before, through the fallback.
    observer = Messages()
    config = partial(tiny_dataset, backbone="test_vit", image_size=None, epochs=1)
    assert train(config, tmp_path / "vit", observer) == "completed"
    assert not any("frozen layers" in m for m in observer.messages)
