"""Evaluate, Predict and Export: which run they show, how sure its numbers are, test sets.

Runs are trained once for the module (timm's tiny test model on 32-pixel images) into an app
workspace; a copy of one, marked as stopped after one epoch, plays the newest run that a user
rarely wants to see first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image, make_image_folder, make_zip
from tests.training import tiny_config
from tl_core.common import format_accuracy, wilson_interval
from tl_core.figures import confusion_figure
from tl_core.inference import Predictor, evaluate_run
from tl_core.runs import Workspace, list_runs, new_run_dir, read_note
from tl_core.training import train

CLASSES = {"red": 6, "green": 6, "blue": 6}
PAGES = [state.EVALUATE_PAGE, state.PREDICT_PAGE, state.EXPORT_PAGE]


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def runs(ws, tmp_path_factory) -> dict[str, Path]:
    """Two completed runs ("a": 3 epochs, "b": 2 epochs, another seed) and "stopped", the
    newest, a copy of "a" that stopped after one epoch."""
    data = make_image_folder(tmp_path_factory.mktemp("data") / "colours", CLASSES)
    folders = {}
    for name, overrides in (("a", {"epochs": 3}), ("b", {"epochs": 2, "seed": 1})):
        folders[name] = new_run_dir(ws.runs, f"test_efficientnet-{name}")
        folders[name].rmdir()  # train() wants a missing or empty folder
        assert train(tiny_config(data, **overrides), folders[name]) == "completed"
    stopped = shutil.copytree(folders["a"], ws.runs / "zz-stopped")
    config = json.loads((stopped / "config.json").read_text())
    config["created"] = "2999-01-01T00:00:00"
    (stopped / "config.json").write_text(json.dumps(config))
    metrics = json.loads((stopped / "metrics.json").read_text())
    metrics.update(status="stopped", history=metrics["history"][:1])
    (stopped / "metrics.json").write_text(json.dumps(metrics))
    folders["stopped"] = stopped
    assert list_runs(ws.runs)[0].path == stopped  # the newest
    return folders


def labelled_by_the_model(run: Path, folder: Path, colours: dict[str, int]) -> Path:
    """A test set whose every label is what ``run`` predicts: nothing in it is wrong.

    ``colours`` maps a colour name to how many images of that colour to draw.
    """
    palette = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230)}
    predictor = Predictor.from_run(run, device="cpu")
    for name, count in colours.items():
        for seed in range(count):
            image = make_image(color=palette[name], seed=500 + seed)
            label = predictor.predict_images([image], 1)[0][0][0]
            (folder / label).mkdir(parents=True, exist_ok=True)
            image.save(folder / label / f"{name}_{seed}.png")
    return folder


def picker(at):
    return next(s for s in at.selectbox if s.label == "Run")


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ----------------------------------------------------------------------------- which run


@pytest.mark.parametrize("page", PAGES)
def test_pages_start_on_the_best_completed_run_not_the_newest(ws, runs, page):
    at = open_page(page)
    chosen = next(s for s in list_runs(ws.runs) if str(s.path) == at.session_state[state.RUN_KEY])
    assert chosen.path != runs["stopped"]
    completed = [s for s in list_runs(ws.runs) if s.status == "completed"]
    assert chosen.status == "completed"
    assert chosen.best_val_accuracy == max(s.best_val_accuracy for s in completed)


@pytest.mark.parametrize("page", PAGES)
def test_pages_start_on_the_run_just_trained_even_when_it_stopped(runs, page):
    at = open_page(page, **{state.RUN_KEY: str(runs["stopped"])})
    assert picker(at).value == str(runs["stopped"])


def test_run_titles_tell_runs_apart_and_take_a_note(runs):
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(runs["a"])})
    titles = picker(at).options
    assert len(set(titles)) == 3
    a_title = next(t for t in titles if "3/3 epochs" in t)
    assert a_title.startswith("test_efficientnet · full fine-tune · from scratch · 3/3 epochs")
    assert "images)" in a_title and "stopped" not in a_title  # accuracy with its interval
    stopped = next(t for t in titles if " · stopped · " in t)
    assert "1/3 epochs" in stopped

    note = next(t for t in at.text_input if t.label == "Note")
    note.set_value("baseline, colours").run()
    assert not at.exception
    assert read_note(runs["a"]) == "baseline, colours"
    assert any(t.endswith("“baseline, colours”") for t in picker(at).options)
    assert picker(at).value == str(runs["a"])  # still the same run
    next(t for t in at.text_input if t.label == "Note").set_value("").run()
    assert read_note(runs["a"]) == ""


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_shows_the_interval_and_the_number_of_images(runs):
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(runs["b"])})
    expected = evaluate_run(runs["b"], device="cpu")
    correct = expected.num_images - expected.num_wrong
    low, high = wilson_interval(correct, expected.num_images)
    shown = metrics(at)
    assert shown["Validation accuracy"] == f"{expected.accuracy:.1%}"
    assert shown["Validation images"] == str(expected.num_images)
    assert shown["95 % interval"] == f"{low:.0%}–{high:.0%}"
    assert format_accuracy(expected.accuracy, expected.num_images) in texts(at.caption)


def test_a_picked_cell_is_forgotten_when_the_run_changes(runs):
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(runs["a"])})
    default_b = evaluate_run(runs["b"], device="cpu").default_cell()
    picked = next((t, p) for t in CLASSES for p in CLASSES if t != p and (t, p) != default_b)
    next(s for s in at.selectbox if s.label == "True class").set_value(picked[0])
    next(s for s in at.selectbox if s.label == "Predicted class").set_value(picked[1]).run()
    assert f"of *{picked[0]}* predicted as *{picked[1]}*" in texts(at.markdown)

    picker(at).set_value(str(runs["b"])).run()
    assert not at.exception
    true_box = next(s for s in at.selectbox if s.label == "True class")
    predicted_box = next(s for s in at.selectbox if s.label == "Predicted class")
    assert (true_box.value, predicted_box.value) == default_b


def open_test_set_form(run: Path):
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(run)})
    next(r for r in at.radio if r.label == "Evaluate on").set_value("A labelled test set").run()
    assert not at.exception
    return at


def test_evaluate_on_a_test_folder_where_nothing_is_wrong(runs, tmp_path):
    # One image, labelled as the model predicts it: right, and "1 image", not "1 images".
    folder = labelled_by_the_model(runs["a"], tmp_path / "test", {"red": 1})
    (label,) = [d.name for d in folder.iterdir()]
    at = open_test_set_form(runs["a"])
    assert "Images the model never saw" in texts(at.info)
    next(t for t in at.text_input if t.label == "Or a folder on this computer").set_value(
        str(folder)
    )
    button(at, "Evaluate on this set").click().run()
    assert not at.exception

    shown = metrics(at)
    assert shown["Test images"] == "1" and shown["Test accuracy"] == "100.0%"
    assert shown["Wrong"] == "0" and shown["95 % interval"] == "21%–100%"
    assert "No test image is wrong." in texts(at.success)
    assert "least sure of" in texts(at.caption)
    assert f"**1 image** of *{label}* predicted as *{label}*" in texts(at.markdown)


def test_evaluate_on_a_zipped_test_set_lists_only_wrong_images_as_wrong(runs, tmp_path):
    folder = labelled_by_the_model(runs["a"], tmp_path / "test", {"red": 2, "green": 2})
    # Move one image to another class's folder: exactly one is wrong.
    moved = next(folder.rglob("*.png"))
    other = next(name for name in CLASSES if name != moved.parent.name)
    (folder / other).mkdir(exist_ok=True)
    moved.rename(folder / other / moved.name)
    archive = make_zip(folder, tmp_path / "test.zip", wrap="test")

    at = open_test_set_form(runs["a"])
    at.file_uploader[0].set_value(("test.zip", archive.read_bytes(), "application/zip"))
    button(at, "Evaluate on this set").click().run()
    assert not at.exception
    assert metrics(at)["Wrong"] == "1" and metrics(at)["Test images"] == "4"
    wrong_captions = [
        img.caption for e in at.image for img in e.proto.imgs if img.caption.startswith("true ")
    ]
    assert wrong_captions == [
        next(c for c in wrong_captions if c.startswith(f"true {other} · predicted "))
    ]
    assert not texts(at.success)


def test_a_test_set_with_unknown_classes_gets_a_sentence_not_a_traceback(runs, tmp_path):
    folder = make_image_folder(tmp_path / "test", {"red": 2, "purple": 2})
    at = open_test_set_form(runs["a"])
    next(t for t in at.text_input if t.label == "Or a folder on this computer").set_value(
        str(folder)
    )
    button(at, "Evaluate on this set").click().run()
    assert not at.exception
    assert "not known to the model: purple" in texts(at.error)
    assert "The model knows: blue, green, red" in texts(at.info)


def test_the_confusion_matrix_hover_counts_in_words():
    import pandas as pd

    confusion = pd.DataFrame([[1, 0], [2, 3]], index=["a", "b"], columns=["a", "b"])
    heatmap = confusion_figure(confusion).data[0]
    assert [list(row) for row in heatmap.customdata] == [
        ["1 image", "0 images"],
        ["2 images", "3 images"],
    ]
    assert "%{customdata}" in heatmap.hovertemplate


# ----------------------------------------------------------------------------- predict, export


def test_a_batch_table_of_one_run_is_not_shown_for_another(runs, tmp_path):
    folder = make_image_folder(tmp_path / "new", {"x": 2})
    at = open_page(state.PREDICT_PAGE, **{state.RUN_KEY: str(runs["a"])})
    next(t for t in at.text_input if t.label == "Or a folder on this computer").set_value(
        str(folder)
    )
    button(at, "Predict all").click().run()
    assert len(at.dataframe) == 1
    picker(at).set_value(str(runs["b"])).run()
    assert not at.exception
    assert len(at.dataframe) == 0


def test_export_says_how_to_read_the_class_names(runs):
    at = open_page(state.EXPORT_PAGE, **{state.RUN_KEY: str(runs["a"])})
    assert "model.class_names" in texts(at.code)
    assert "class names" in texts(at.markdown)
