"""The freeze depth: parsed once at each boundary, resolved in one function, put into words in
one place, and written to config.json once (older runs, with the depth twice, still load)."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.training import tiny_config
from tl_core.common import TLStudioError
from tl_core.config import (
    FULL_FINE_TUNE,
    GRADUAL,
    FreezeDepth,
    TrainConfig,
    freeze_option,
    frozen_words,
)
from tl_core.runs import CONFIG_FILE, RunWriter, describe_freeze, load_run, summarize_run
from tl_core.runs.checks import check_train_settings
from tl_core.training import describe_stages, prepare_training, training_stages


@pytest.mark.parametrize(
    ("given", "text", "groups"),
    [("all", "all", None), (" None ", "none", 0), ("03", "3", 3), ("+2", "2", 2), (4, "4", 4)],
)
def test_every_spelling_parses_to_one_canonical_text(given, text, groups):
    depth = FreezeDepth.parse(given)
    assert str(depth) == text and depth.groups == groups
    assert FreezeDepth.parse(depth) is depth  # already parsed: carried as it is


@pytest.mark.parametrize("bad", ["half", "", "-1", "2.5", -1, 2.5, True, None])
def test_what_is_not_a_depth_is_refused_in_a_sentence(bad):
    with pytest.raises(TLStudioError, match="is not understood") as refused:
        FreezeDepth.parse(bad, num_backbone_groups=6)
    assert "0 to 6" in refused.value.hint


def test_none_and_zero_are_one_depth_but_all_needs_a_backbone():
    assert FreezeDepth.parse("none") == FreezeDepth.parse("0") == FreezeDepth.count(0)
    assert str(FreezeDepth.count(0)) == "none"  # the recipe's name for full fine-tuning
    assert str(FreezeDepth.parse("none").counted()) == "0"  # a sweep counts from 0
    assert FreezeDepth.parse("all") != FreezeDepth.parse("6")
    assert len({FreezeDepth.parse("0"), FreezeDepth.parse("none"), FreezeDepth.parse("1")}) == 2


def test_resolving_against_a_backbone_is_one_function():
    assert FreezeDepth.parse("all").resolve(6) == 6
    assert FreezeDepth.parse("none").resolve(6) == 0
    assert FreezeDepth.parse("6").resolve(6) == 6
    with pytest.raises(TLStudioError, match="out of range") as refused:
        FreezeDepth.parse("7").resolve(6)
    assert "0 to 6" in refused.value.hint


def test_the_words_for_a_depth():
    assert FreezeDepth.parse("all").words(6) == "head only"
    assert FreezeDepth.parse("6").words(6) == "head only"
    assert FreezeDepth.parse("0").words(6) == "full fine-tune"
    assert FreezeDepth.parse("3").words(7) == "3/7 groups frozen"
    assert FreezeDepth.parse("3").words() == "3 groups frozen"  # the backbone unknown
    assert FreezeDepth.parse("all").words() == "head only"
    assert frozen_words(2, 6) == FreezeDepth.count(2).words(6)
    assert FreezeDepth.parse("2").headline(6) == "Freezing the first 2 of 6 groups"
    assert FreezeDepth.parse("none").headline(6) == "Fine-tuning every layer (no group frozen)"
    assert FreezeDepth.parse("all").label == "freeze all"


def test_stages_runs_and_sweeps_say_a_depth_the_same_way():
    config = TrainConfig("d", mode=GRADUAL, freeze="4", epochs=3)
    stages = describe_stages(training_stages(config, 6), 6)
    assert (
        stages
        == "3 stages: head only (1 epoch), 5/6 groups frozen (1 epoch), 4/6 groups frozen (1 epoch)"
    )
    run = {"train": {"freeze": "4"}, "model": {"freeze": {"groups": ["g"] * 6 + ["head"]}}}
    assert describe_freeze(run) == FreezeDepth.parse("4").words(6) == "4/6 groups frozen"


def test_the_command_line_option_parses_a_depth_or_gives_a_usage_error():
    parser = argparse.ArgumentParser()
    parser.add_argument("--freeze", type=freeze_option)
    assert parser.parse_args(["--freeze", "None"]).freeze == FreezeDepth.parse("none")
    with pytest.raises(argparse.ArgumentTypeError, match="is not understood"):
        freeze_option("some")


def test_training_settings_carry_the_canonical_text():
    assert TrainConfig("d", freeze=FreezeDepth.parse(" NONE ")).freeze == "none"
    assert TrainConfig("d", freeze="03").freeze == "3"
    assert TrainConfig("d", freeze=FreezeDepth.count(0)).mode == FULL_FINE_TUNE
    assert TrainConfig("d", freeze="2").depth == FreezeDepth.parse("2")
    with pytest.raises(TLStudioError, match='freeze must be "all", "none" or a number'):
        TrainConfig("d", freeze="some")


@pytest.fixture
def run_dir(tiny_dataset, tmp_path):
    """A run folder with a description, metrics and weights, trained with 2 groups frozen."""
    writer = RunWriter.create(tmp_path / "run")
    plan = prepare_training(tiny_config(tiny_dataset, freeze="2"), writer.path)
    writer.write_description(plan)
    writer.write_metrics([{"epoch": 1, "val_accuracy": 0.5}], best_epoch=1, status="completed")
    writer.write_weights(plan.model.state_dict())
    writer.close()
    return writer.path, plan.freeze


def test_config_json_writes_the_depth_once_and_reads_it_back(run_dir):
    path, freeze = run_dir
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["train"]["freeze"] == "2"
    assert "frozen_groups" not in config["model"]["freeze"]  # the train setting says it
    assert check_train_settings(config).depth == FreezeDepth.parse("2")
    assert load_run(path).config.depth.resolve(freeze.num_backbone_groups) == 2
    assert summarize_run(path).freeze == f"2/{freeze.num_backbone_groups} groups frozen"


def test_a_run_written_with_the_depth_twice_still_loads(run_dir):
    path, freeze = run_dir
    config = json.loads((path / CONFIG_FILE).read_text())
    config["model"]["freeze"]["frozen_groups"] = 2  # as runs were written before
    (path / CONFIG_FILE).write_text(json.dumps(config))
    assert load_run(path).config.freeze == "2"
    assert summarize_run(path).freeze == f"2/{freeze.num_backbone_groups} groups frozen"
    # An edited train setting: the old duplicate still tells what trained.
    config["train"]["freeze"] = "some"
    (path / CONFIG_FILE).write_text(json.dumps(config))
    assert summarize_run(path).freeze == f"2/{freeze.num_backbone_groups} groups frozen"
