"""Run folders that were damaged or edited: every command that loads one says so in a sentence.

Each case copies a tiny trained run, damages one file as a user (or a failing disk) might, and
drives the real command line and the app's pages on it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from app_pages.ui import state as ui_state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image
from tests.training import train_tiny_run
from tl_core.cli.main import main
from tl_core.common import RunError
from tl_core.runs import list_runs, load_run, preferred_run, summarize_run

SENTENCE = "This run folder is damaged or was edited:"
HINT = "Train the run again, or restore the folder from an export."


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / name).read_text())
        change(data)
        (run / name).write_text(json.dumps(data))

    return damage


def edit_preprocessing(**values) -> Callable[[Path], None]:
    return edit_json("config.json", lambda c: c["model"]["preprocessing"].update(values))


def edit_weights(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        state = load_file(str(run / "model.safetensors"))
        change(state)
        save_file(state, str(run / "model.safetensors"))

    return damage


def write(name: str, content: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(content)


def truncate_weights(run: Path) -> None:
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def four_outputs(state: dict) -> None:
    state["classifier.weight"] = torch.zeros(4, state["classifier.weight"].shape[1])
    state["classifier.bias"] = torch.zeros(4)


@dataclass(frozen=True)
class Damage:
    """One way a run folder gets damaged.

    Attributes:
        apply: Damages a copy of a good run folder.
        says: What the message must name.
        at_load: True when loading the run (without building its model) already tells.
    """

    apply: Callable[[Path], None]
    says: str
    at_load: bool = True


DAMAGES = {
    "unknown backbone": Damage(
        edit_json("config.json", lambda c: c["model"].update(backbone="no_such_net")),
        "backbone 'no_such_net'",
        at_load=False,
    ),
    "another backbone": Damage(
        edit_json("config.json", lambda c: c["model"].update(backbone="test_resnet")),
        "do not fit the backbone test_resnet",
        at_load=False,
    ),
    "labels.json lists 4 classes": Damage(
        write("labels.json", '["a", "b", "c", "d"]'), "labels.json lists 4 classes"
    ),
    "labels.json and config.json both say 4 classes": Damage(
        lambda run: (
            write("labels.json", '["a", "b", "c", "d"]')(run),
            edit_json("config.json", lambda c: c["model"].update(num_classes=4))(run),
        ),
        "head in model.safetensors has 3 outputs",
        at_load=False,
    ),
    "a head of 4 outputs for 3 labels": Damage(
        edit_weights(four_outputs), "head in model.safetensors has 4 outputs", at_load=False
    ),
    "labels.json not a list": Damage(write("labels.json", '{"red": 0}'), "labels.json should"),
    "labels.json repeats a class": Damage(
        write("labels.json", '["red", "red", "blue"]'), "'red' more than once"
    ),
    "labels.json holds numbers": Damage(write("labels.json", "[1, 2, 3]"), "not a class name"),
    "labels.json not JSON": Damage(write("labels.json", '["red", "gr'), "labels.json is not"),
    "truncated weights": Damage(truncate_weights, "cut short", at_load=False),
    "weights not safetensors": Damage(
        write("model.safetensors", "not weights at all"), "not a safetensors file", at_load=False
    ),
    "a tensor missing": Damage(
        edit_weights(lambda s: s.pop("conv_stem.weight")),
        "1 tensor missing (first: conv_stem.weight)",
        at_load=False,
    ),
    "image size 0": Damage(edit_preprocessing(image_size=0), "image size is 0 pixels"),
    "a mean of 2 values": Damage(edit_preprocessing(mean=[0.5, 0.5]), "not 2 values"),
    "a std of 0": Damage(edit_preprocessing(std=[0, 0, 0]), "must be above 0"),
    "an unknown interpolation": Damage(
        edit_preprocessing(interpolation="sharpest"), "interpolation 'sharpest'"
    ),
    "a crop of 0": Damage(edit_preprocessing(crop_pct=0), "crop_pct is 0"),
    "image size missing": Damage(
        edit_json("config.json", lambda c: c["model"]["preprocessing"].pop("image_size")),
        "lacks image_size",
    ),
    "invalid training settings": Damage(
        edit_json("config.json", lambda c: c["train"].update(epochs=0)),
        "epochs must be at least 1",
    ),
    "config.json not an object": Damage(write("config.json", "[]"), "config.json should"),
    "metrics.json not an object": Damage(write("metrics.json", "[]"), "metrics.json should"),
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "red.png"
    make_image(color=(220, 40, 40)).save(path)
    return path


def damaged_copy(trained_run: Path, folder: Path, damage: Damage) -> Path:
    run = shutil.copytree(trained_run, folder, ignore=shutil.ignore_patterns(".lock"))
    damage.apply(run)
    return run


def assert_says_damaged(code: int, out: str, err: str, damage: Damage) -> None:
    assert code == 1, (out, err)
    assert SENTENCE in err and damage.says in err, err
    assert HINT in err
    assert "unexpected" not in err and "Traceback" not in out + err
    assert len(err.splitlines()) == 2, err  # the error and its hint: no dump of tensor names


@pytest.mark.parametrize("name", list(DAMAGES))
def test_every_command_says_the_run_folder_is_damaged(capsys, trained_run, image, tmp_path, name):
    damage = DAMAGES[name]
    run = damaged_copy(trained_run, tmp_path / "run", damage)
    commands = [
        ["predict", run, image, "--device", "cpu"],
        ["evaluate", run, "--device", "cpu"],
        ["explain", run, image, "--out", tmp_path / "overlay.png", "--device", "cpu"],
        ["export", run, "--out", tmp_path / "run.zip"],
        ["export", run, "--format", "torchscript", "--out", tmp_path / "model.pt"],
    ]
    for command in commands:
        code = main([str(arg) for arg in command])
        captured = capsys.readouterr()
        assert_says_damaged(code, captured.out, captured.err, damage)
    # Nothing was exported from it: an export must load the first time.
    assert not (tmp_path / "run.zip").exists() and not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("name", list(DAMAGES))
def test_loading_tells_what_it_can_and_building_tells_the_rest(trained_run, tmp_path, name):
    damage = DAMAGES[name]
    run = damaged_copy(trained_run, tmp_path / "run", damage)
    if damage.at_load:
        with pytest.raises(RunError, match=SENTENCE) as caught:
            load_run(run)
    else:
        loaded = load_run(run)  # the files describe a run; only the weights tell otherwise
        with pytest.raises(RunError, match=SENTENCE) as caught:
            loaded.build_model()
    assert damage.says in caught.value.message and caught.value.hint == HINT


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda s: s.update(val=3), "[path, class] pairs"),
        (lambda s: s.update(val=[[p, "purple"] for p, _ in s["val"]]), "'purple'"),
    ],
)
def test_evaluate_says_when_split_json_was_edited(capsys, trained_run, tmp_path, change, says):
    damage = Damage(edit_json("split.json", change), says)
    run = damaged_copy(trained_run, tmp_path / "run", damage)
    code = main(["evaluate", str(run), "--device", "cpu"])
    captured = capsys.readouterr()
    assert_says_damaged(code, captured.out, captured.err, damage)


def test_an_undamaged_run_still_loads_builds_and_exports(capsys, trained_run, image, tmp_path):
    assert load_run(trained_run).build_model() is not None
    assert main(["predict", str(trained_run), str(image), "--device", "cpu"]) == 0
    assert main(["export", str(trained_run), "--out", str(tmp_path / "run.zip")]) == 0
    capsys.readouterr()


def test_the_run_list_keeps_damaged_runs_it_can_describe(trained_run, tmp_path):
    root = tmp_path / "runs"
    for name in ("labels.json not a list", "truncated weights", "config.json not an object"):
        damaged_copy(trained_run, root / name, DAMAGES[name])
    edited = damaged_copy(
        trained_run,
        root / "odd values",
        Damage(
            lambda run: (
                write("metrics.json", '{"best_val_accuracy": "high", "history": 3}')(run),
                edit_json("config.json", lambda c: c.update(created=5, model=[]))(run),
            ),
            "",
        ),
    )
    runs = {run.name: run for run in list_runs(root)}
    # config.json no longer says what the folder is: it is left out; the others stay listed.
    assert set(runs) == {"labels.json not a list", "truncated weights", "odd values"}
    odd = summarize_run(edited)
    assert odd.best_val_accuracy is None and odd.epochs_done == 0 and odd.backbone == "?"
    assert "no accuracy yet" in odd.title
    assert runs["labels.json not a list"].labels == ()
    assert preferred_run(list(runs.values())) is not None


@pytest.mark.parametrize(
    "page", [ui_state.EVALUATE_PAGE, ui_state.PREDICT_PAGE, ui_state.EXPORT_PAGE]
)
@pytest.mark.parametrize("name", ["truncated weights", "image size 0"])
def test_the_result_pages_say_the_run_folder_is_damaged(module_workspace, trained_run, page, name):
    damage = DAMAGES[name]
    folder = module_workspace.runs / f"{Path(page).stem}-{name.replace(' ', '-')}"
    run = damaged_copy(trained_run, folder, damage)
    at = open_page(page, **{ui_state.RUN_KEY: str(run)})  # fails on any uncaught exception
    assert SENTENCE in texts(at.error) and damage.says in texts(at.error)
    assert HINT in texts(at.info)
