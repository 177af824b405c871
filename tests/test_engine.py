"""Training runs end to end on tiny models: run folders, feature caching, determinism."""

from __future__ import annotations

import json
import platform

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import DatasetError, RunError
from tl_core.features import classify_features, pooled_features
from tl_core.models import create_model
from tl_core.runs import list_runs, load_run
from tl_core.training import train


def test_training_writes_a_complete_run_folder(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    status = train(tiny_config(tiny_dataset, epochs=3), run_dir)

    assert status == "completed"
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.json",
        "labels.json",
        "metrics.json",
        "model.safetensors",
        "split.json",
        "val_predictions.csv",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((run_dir / "labels.json").read_text()) == sorted(TINY_CLASSES)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]
    for row in metrics["history"]:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= row.keys()
    assert metrics["best_val_accuracy"] == max(r["val_accuracy"] for r in metrics["history"])

    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["backbone"] == "test_efficientnet"
    assert config["model"]["preprocessing"]["image_size"] == 32
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == sum(TINY_CLASSES.values())
    assert {label for _, label in split["val"]} == set(TINY_CLASSES)

    weights = load_file(str(run_dir / "model.safetensors"))
    assert weights["classifier.weight"].shape[0] == len(TINY_CLASSES)
    assert [s.name for s in list_runs(tmp_path)] == ["run"]


def test_a_frozen_backbone_trains_on_cached_features_and_stays_unchanged(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", epochs=2)
    train(config, tmp_path / "run")

    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["feature_cache"] is True and saved["augment"] == "none"
    trained = load_file(str(tmp_path / "run" / "model.safetensors"))
    torch.manual_seed(config.seed)
    initial, _ = create_model("test_efficientnet", len(TINY_CLASSES), pretrained=False)
    for name, tensor in initial.state_dict().items():
        if name.startswith("classifier"):
            assert not torch.equal(trained[name], tensor), f"head {name} did not train"
        else:
            assert torch.equal(trained[name], tensor), f"frozen {name} changed"


def test_frozen_batchnorm_statistics_survive_augmented_training(tiny_dataset, tmp_path):
    # With augmentation the backbone runs every batch in train mode; frozen BN must not drift.
    config = tiny_config(tiny_dataset, freeze="all", augment="light", epochs=1)
    train(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["feature_cache"] is False
    trained = load_file(str(tmp_path / "run" / "model.safetensors"))
    torch.manual_seed(config.seed)
    initial, _ = create_model("test_efficientnet", len(TINY_CLASSES), pretrained=False)
    running = [n for n in initial.state_dict() if n.endswith("running_mean")]
    assert running
    for name in running:
        assert torch.equal(trained[name], initial.state_dict()[name])


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_vit", "test_convnext"])
def test_cached_features_reproduce_the_full_forward_pass(name):
    model, _ = create_model(name, 4, pretrained=False)
    model.eval()
    size = model.pretrained_cfg["input_size"][-1]
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected = model(images)
        via_features = classify_features(model, pooled_features(model, images))
    torch.testing.assert_close(via_features, expected)


def test_same_seed_gives_the_same_history(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, epochs=2)
    histories = []
    for name in ("a", "b"):
        train(config, tmp_path / name)
        histories.append(json.loads((tmp_path / name / "metrics.json").read_text())["history"])
    timings = ("seconds", "train_images_per_second")  # measured, so never the same twice
    strip = [[{k: v for k, v in row.items() if k not in timings} for row in h] for h in histories]
    assert strip[0] == strip[1]


def test_early_stopping_ends_before_the_last_epoch(tiny_dataset, tmp_path):
    # A learning rate this small cannot improve the validation loss for long.
    config = tiny_config(tiny_dataset, epochs=30, lr=1e-9, early_stopping_patience=1)
    train(config, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert len(history) < 30


def test_a_separate_validation_folder_is_used_as_given(tmp_path):
    from tests.helpers import make_image_folder

    data = make_image_folder(tmp_path / "train", {"a": 4, "b": 4})
    val = make_image_folder(tmp_path / "val", {"a": 2, "b": 3}, seed=7)
    train(tiny_config(data, val_data=str(val), epochs=1), tmp_path / "run")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["train"]) == 8 and len(split["val"]) == 5


def test_bad_data_fails_clearly_and_leaves_no_run_folder(tmp_path):
    from tests.helpers import make_image_folder

    data = make_image_folder(tmp_path / "one_class", {"only": 5})
    with pytest.raises(DatasetError):
        train(tiny_config(data), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_never_overwritten(tiny_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("earlier work")
    with pytest.raises(RunError):
        train(tiny_config(tiny_dataset), tmp_path / "run")
    assert (tmp_path / "run" / "keep.txt").read_text() == "earlier work"


def test_load_run_explains_a_missing_or_weightless_folder(tmp_path):
    with pytest.raises(RunError, match="No run folder"):
        load_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(RunError, match="no saved weights"):
        load_run(tmp_path / "empty")


def test_the_trainer_feeds_convolutions_the_layout_its_device_runs_fastest(tiny_dataset, tmp_path):
    from tl_core.common import in_preferred_layout, prefers_channels_last
    from tl_core.runs import RunWriter
    from tl_core.training import Trainer, prepare_training

    writer = RunWriter.create(tmp_path / "run")
    trainer = Trainer(prepare_training(tiny_config(tiny_dataset), writer.path), writer)
    images, targets = trainer._to_device(torch.zeros(2, 3, 32, 32), torch.zeros(2).long())
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    laid_out = prefers_channels_last(trainer.device)
    # On x86 (CI's CPU and most workstations) oneDNN trains 1.5x faster channels last.
    assert laid_out or platform.machine().lower() not in ("x86_64", "amd64")
    assert images.is_contiguous(memory_format=torch.channels_last) == laid_out
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == laid_out
    features = torch.zeros(2, 8)  # not images: left as they are
    assert in_preferred_layout(features, torch.device("cpu")) is features
    writer.close()
