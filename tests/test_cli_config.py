"""``tl-studio train --config FILE``: a training's settings as a JSON file (how the multi-GPU job
and torchrun's processes are handed theirs), options beside it that replace the file's, and
defaults that the app and the command line read from one place."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from app_pages.panels import groups
from tests.training import tiny_config
from tl_core.cli.main import build_parser, main
from tl_core.cli.options import config_from_args
from tl_core.common import UsageError
from tl_core.config import GRADUAL, TrainConfig, defaults, write_train_config

ROOT = Path(__file__).resolve().parents[1]


def _config(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", "--out", "run", *argv]))


def test_train_with_a_config_file_trains_with_the_files_settings(tiny_dataset, tmp_path, capsys):
    config = tiny_config(tiny_dataset, epochs=1, freeze="all", lr=0.02, seed=7)
    config_file = write_train_config(config, tmp_path / "train.json")
    run = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--no-feature-cache", "--quiet",
                 "--out", str(run)]) == 0  # fmt: skip
    assert "1 epoch done" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["train"] == config.to_dict()
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert len(history) == 1  # the file's one epoch, not the default ten
    # A run's own config.json trains the same recipe again.
    assert _config("--config", str(run / "config.json")) == config


def test_options_beside_the_file_replace_its_settings(tmp_path):
    config = tiny_config(
        "/data/train", mode=GRADUAL, freeze="2", epochs=4, val_data="/data/val", pretrained=True
    )
    config_file = str(write_train_config(config, tmp_path / "train.json"))
    assert _config("--config", config_file) == config
    changed = _config("/other", "--config", config_file, "--epochs", "6", "--lr", "0.5")
    assert changed == config.replace(data="/other", epochs=6, lr=0.5)
    # --mode and --freeze replace the file's pair together: --freeze alone names its mode.
    assert (_config("--config", config_file, "--freeze", "all").mode, "all") == (
        "feature-extraction",
        "all",
    )
    assert _config("--config", config_file, "--mode", "full-fine-tune").freeze == "none"
    # A held-out share replaces the file's separate validation folder.
    split = _config("--config", config_file, "--val-fraction", "0.3")
    assert (split.val_data, split.val_fraction) == (None, 0.3)
    assert _config("--config", config_file, "--no-pretrained").pretrained is False
    assert _config("--config", config_file).pretrained is True  # not given: the file's


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds no training settings"),
        ('{"data": "/d", "epochs": 0}', "epochs must be at least 1"),
        ('{"data": "/d", "lr": "fast"}', "wrong kind"),
    ],
)
def test_a_bad_config_file_is_bad_usage_in_words(tmp_path, capsys, content, words):
    config_file = tmp_path / "train.json"
    if content is not None:
        config_file.write_text(content)
    code = main(["train", "--config", str(config_file), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_without_data_or_config_says_what_is_missing(tmp_path):
    with pytest.raises(UsageError, match="No data to train on"):
        _config()
    assert main(["train", "--out", str(tmp_path / "run")]) == 2


def test_the_app_and_the_command_line_sweep_the_same_epochs_by_default():

    args = build_parser().parse_args(["sweep", "data", "--out", "sweep"])
    assert args.epochs == groups.SWEEP_EPOCHS == defaults.SWEEP_EPOCHS == 3
    assert config_from_args(args).epochs == defaults.SWEEP_EPOCHS


def test_every_shared_default_is_defined_in_one_place_only():
    shared = {name for name in vars(defaults) if name.isupper()}
    assert "SWEEP_EPOCHS" in shared
    homes: dict[str, list[str]] = {name: [] for name in shared}
    for path in [*ROOT.glob("app_pages/**/*.py"), *ROOT.glob("tl_core/**/*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id in shared:
                    homes[target.id].append(str(path.relative_to(ROOT)))
    assert homes == {name: ["tl_core/config/defaults.py"] for name in shared}
