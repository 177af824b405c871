"""Head-only training reuses the backbone features kept by the advisor and by earlier runs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import make_image_folder
from tests.training import tiny_config
from tl_core.analysis import advise
from tl_core.cli.main import main
from tl_core.common import TrainingObserver, autocast_for
from tl_core.features import FEATURE_CACHE_ENV, FeatureStore, feature_key_for
from tl_core.models import Preprocessing, create_model
from tl_core.training import plan as plan_module
from tl_core.training import plan_feature_key, prepare_training, train

# These tests count the images the backbone runs on: without the fold's one-image probe pass.
pytestmark = pytest.mark.usefixtures("unfolded")

CLASSES = {"red": 6, "green": 6, "blue": 6}
TOTAL = sum(CLASSES.values())
WEIGHTS = "test weights, seed 0"


class SeededBackbones:
    """Stands in for ``create_model``: tiny timm models with the same weights on every call
    (like pretrained ones), counting the images their backbone runs on."""

    def __init__(self):
        self.images_seen = 0

    def __call__(self, name: str, num_classes: int, *, pretrained=True, weights_file=None):
        torch.manual_seed(0)
        model, _ = create_model(name, num_classes, pretrained=False)
        forward = model.forward_features

        def counted(images):
            self.images_seen += len(images)
            return forward(images)

        model.forward_features = counted
        return model, WEIGHTS if pretrained else "random init"


class Messages(TrainingObserver):
    def __init__(self):
        self.messages: list[str] = []

    def on_phase(self, message: str, phase: str | None = None) -> None:
        self.messages.append(message)


@pytest.fixture
def backbones(monkeypatch) -> SeededBackbones:
    factory = SeededBackbones()
    monkeypatch.setattr(plan_module, "create_model", factory)
    return factory


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "colours", CLASSES)


def head_only(data: Path, **overrides):
    settings = dict(pretrained=True, freeze="all", augment="auto", epochs=3)
    return tiny_config(data, **{**settings, **overrides})


def losses(run_dir: Path) -> list[tuple[float, float, float]]:
    import json

    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    return [(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in history]


def assert_same_history(run: Path, reference: Path) -> None:
    for got, expected in zip(losses(run), losses(reference), strict=True):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.fixture
def reference(colours, backbones, tmp_path) -> Path:
    """The same head-only run without any cache."""
    assert train(head_only(colours), tmp_path / "reference") == "completed"
    assert backbones.images_seen == TOTAL
    backbones.images_seen = 0
    return tmp_path / "reference"


def test_training_after_the_advisor_runs_no_image_through_the_backbone(
    colours, backbones, reference, tmp_path
):
    cache = tmp_path / "cache"
    advise(colours, ["test_efficientnet"], cache_dir=cache, image_size=32, model_factory=backbones)
    backbones.images_seen = 0
    observer = Messages()

    status = train(head_only(colours), tmp_path / "run", observer, feature_cache=cache)

    assert status == "completed"
    assert backbones.images_seen == 0
    assert f"Backbone features: all {TOTAL} images found in the cache" in observer.messages
    assert_same_history(tmp_path / "run", reference)


def test_a_half_cached_run_computes_exactly_the_other_half_and_keeps_it(
    colours, backbones, reference, tmp_path
):
    half = tmp_path / "half"
    for label, count in CLASSES.items():
        (half / label).mkdir(parents=True)
        for index in range(count // 2):
            name = f"{label}_{index}.png"
            shutil.copy(colours / label / name, half / label / f"copy of {name}")
    cache = tmp_path / "cache"
    advise(half, ["test_efficientnet"], folds=3, cache_dir=cache, image_size=32,
           model_factory=backbones)  # fmt: skip
    backbones.images_seen = 0
    observer = Messages()

    train(head_only(colours), tmp_path / "run", observer, feature_cache=cache)

    assert backbones.images_seen == TOTAL // 2
    found = f"({TOTAL // 2} found in the cache)"
    assert f"Computing backbone features: 0/{TOTAL // 2} images {found}" in observer.messages
    # The first epoch computes the other half as it trains.
    assert (
        f"Epoch 1 of 3 in progress; computing backbone features: {TOTAL // 2}/{TOTAL // 2} "
        f"images {found}" in observer.messages
    )
    assert_same_history(tmp_path / "run", reference)
    # The computed half joined the store: another run computes nothing.
    train(head_only(colours), tmp_path / "again", feature_cache=cache)
    assert backbones.images_seen == TOTAL // 2


def test_a_second_head_only_run_on_the_same_data_computes_nothing(colours, backbones, tmp_path):
    cache = tmp_path / "cache"
    train(head_only(colours), tmp_path / "first", feature_cache=cache)
    assert backbones.images_seen == TOTAL

    train(head_only(colours, lr=1e-2), tmp_path / "second", feature_cache=cache)

    assert backbones.images_seen == TOTAL
    assert len(list(cache.glob("*.safetensors"))) == 1


def test_random_weights_never_read_or_write_the_store(colours, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the store was used")

    monkeypatch.setattr(FeatureStore, "load", refuse)
    monkeypatch.setattr(FeatureStore, "save", refuse)
    cache = tmp_path / "cache"

    config = head_only(colours, pretrained=False)
    assert train(config, tmp_path / "run", feature_cache=cache) == "completed"
    assert not cache.exists()


def test_an_unwritable_cache_folder_still_trains(colours, backbones, reference, tmp_path, caplog):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")

    with caplog.at_level(logging.WARNING, logger="tl_core.features.store"):
        status = train(head_only(colours), tmp_path / "run", feature_cache=blocked)

    assert status == "completed"
    assert backbones.images_seen == TOTAL
    assert_same_history(tmp_path / "run", reference)
    assert any("Could not keep features" in r.message for r in caplog.records)


def test_without_a_cache_folder_nothing_is_read_or_kept(colours, backbones, tmp_path, monkeypatch):
    monkeypatch.setattr(FeatureStore, "load", lambda *a: pytest.fail("the store was read"))
    train(head_only(colours), tmp_path / "run")
    train(head_only(colours), tmp_path / "again")
    assert backbones.images_seen == 2 * TOTAL


def test_weights_files_key_by_their_contents_not_their_name(colours, tmp_path):
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, _ = create_model("test_efficientnet", 3, pretrained=False)
        path = tmp_path / f"copy {seed}" / "weights.safetensors"
        path.parent.mkdir()
        save_file(model.state_dict(), str(path))
        files.append(path)
    keys = []
    for path in (*files, files[0]):
        plan = prepare_training(head_only(colours, weights=str(path)), tmp_path / "work")
        keys.append(plan_feature_key(plan, autocast_for(plan.device)))

    assert keys[0].weights_source.startswith("file weights.safetensors")
    assert keys[0] != keys[1] and keys[0].file_name() != keys[1].file_name()
    assert keys[2] == keys[0]
    # The advisor's models come without a file: packaged weights key by their source alone.
    cpu = torch.device("cpu")
    prep = Preprocessing(32, (0.5,) * 3, (0.5,) * 3)
    packaged = feature_key_for("tf_efficientnet_lite0", "package x", prep, cpu, autocast_for(cpu))
    assert packaged.weights_source == "package x" and packaged.precision == "float32"


def test_cli_train_keeps_features_in_the_default_cache_unless_told_not_to(
    colours, backbones, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "default cache"
    monkeypatch.setenv(FEATURE_CACHE_ENV, str(cache))
    flags = ["--backbone", "test_efficientnet", "--epochs", "1", "--batch-size", "8",
             "--image-size", "32", "--device", "cpu", "--quiet"]  # fmt: skip

    assert main(["train", str(colours), "--out", str(tmp_path / "off"), "--no-feature-cache",
                 *flags]) == 0  # fmt: skip
    assert not cache.exists()
    assert main(["train", str(colours), "--out", str(tmp_path / "on"), *flags]) == 0
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert main(["train", str(colours), "--out", str(tmp_path / "again"), *flags]) == 0
    assert backbones.images_seen == 2 * TOTAL  # the third run found every feature
    assert "--no-feature-cache" in _help(capsys)


def test_cli_sweep_reuses_the_features_of_its_head_only_depth(
    colours, backbones, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    flags = ["--backbone", "test_efficientnet", "--epochs", "1", "--batch-size", "8",
             "--image-size", "32", "--augment", "none", "--device", "cpu", "--quiet",
             "--freeze", "3,all", "--cache-dir", str(cache)]  # fmt: skip

    assert main(["sweep", str(colours), "--out", str(tmp_path / "first"), *flags]) == 0
    assert len(list(cache.glob("*.safetensors"))) == 1
    first = backbones.images_seen
    assert main(["sweep", str(colours), "--out", str(tmp_path / "second"), *flags]) == 0
    second = backbones.images_seen - first
    off = [*flags, "--no-feature-cache"]
    assert main(["sweep", str(colours), "--out", str(tmp_path / "uncached"), *off]) == 0
    uncached = backbones.images_seen - first - second
    # The head-only depth found every image's features: exactly one feature pass was saved.
    assert uncached == first and second == uncached - TOTAL


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    return capsys.readouterr().out
