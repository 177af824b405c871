"""The pages on a multi-label dataset (a labels.csv of tags) and its runs: the Data page's tag
report and tag fixes, the refusals of the transfer tools, training with its metric named, the
Evaluate page's per-tag scores and editable thresholds, Predict's tags, and Export.

The dataset shows a red circle, a blue square, both or neither (tests/multilabel_data.py); the
run is timm's tiny test model trained from scratch on 32-pixel images through the app's own
scheduler, once for the module.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import pytest

from app_pages.ui import state as ui_state
from tests.apptest_helpers import button, open_page, texts
from tests.multilabel_data import make_shapes_dataset, shapes_image
from tests.training import tiny_config
from tl_core.data import current_tags, read_version
from tl_core.inference import Predictor, answer_text, evaluate_run, read_thresholds, tags_text
from tl_core.runs import Workspace


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def dataset(ws, tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", per_kind=8)


@pytest.fixture(scope="module")
def run_path(ws, dataset) -> Path:
    """A multi-label run trained through the app's scheduler."""
    job = ui_state.scheduler().start(tiny_config(dataset, epochs=10, batch_size=16))
    snap = job.wait(180)
    assert snap.status == "completed", snap.error
    return Path(snap.run_dir)


def png(tags: tuple[str, ...], seed: int) -> bytes:
    buffer = io.BytesIO()
    shapes_image(tags, seed).save(buffer, format="PNG")
    return buffer.getvalue()


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ----------------------------------------------------------------------------- data


def test_the_data_page_reports_tags_pairs_untagged_and_files_left_out(ws, tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", per_kind=3)
    shapes_image(("circle",), 99).save(data / "images" / "stray.png")  # not in labels.csv
    with open(data / "labels.csv", "a", encoding="utf-8") as file:
        file.write("images/gone.png,square\n")  # listed, not there
    at = open_page(ui_state.DATA_PAGE, **{ui_state.DATASET_KEY: str(data)})
    shown = metrics(at)
    assert shown["Tags"] == "2" and shown["Tagged images"] == "9" and shown["No tag"] == "3"
    assert shown["Left out of labels.csv"] == "2"
    assert "3 images with 0, 6 images with 1, 3 images with 2" in texts(at.caption)
    pairs = next(d for d in at.dataframe if list(d.value.columns) == ["circle", "square"]).value
    assert pairs.loc["circle", "square"] == 3 and pairs.loc["circle", "circle"] == 6
    left_out = next(d for d in at.dataframe if "reason" in d.value.columns).value
    reasons = dict(zip(left_out.file, left_out.reason, strict=True))
    assert reasons == {
        "images/stray.png": "not listed in labels.csv",
        "images/gone.png": "listed in labels.csv but not found in the dataset",
    }
    assert "carry none of the tags" in texts(at.warning)
    # The search for wrong labels handles tags: it is offered as for class folders.
    assert "Find suspected label errors" in {b.label for b in at.button}


def test_a_zip_with_labels_csv_is_imported_as_a_tagged_dataset(ws, tmp_path):
    data = make_shapes_dataset(tmp_path / "zipped", per_kind=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(data.rglob("*")):
            if path.is_file():
                archive.write(path, f"zipped/{path.relative_to(data).as_posix()}")
    at = open_page(ui_state.DATA_PAGE)
    at.file_uploader[0].set_value(("zipped.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception
    assert Path(at.session_state[ui_state.DATASET_KEY]).is_relative_to(ws.datasets)
    assert "Ready to train: 12 images in 2 tags" in texts(at.success)
    assert metrics(at)["No tag"] == "3"


def test_a_copy_with_other_tags_is_offered_its_copies_tags_not_each_single_tag(ws, tmp_path):
    data = make_shapes_dataset(tmp_path / "copies", per_kind=3)
    copy = data / "images" / "copy_of_circle_square_0.png"
    copy.write_bytes((data / "images" / "circle_square_0.png").read_bytes())
    with open(data / "labels.csv", "a", encoding="utf-8") as file:
        file.write("images/copy_of_circle_square_0.png,circle\n")  # a copy missing a tag
    at = open_page(ui_state.DATA_PAGE, **{ui_state.DATASET_KEY: str(data)})
    assert not at.exception
    copy_key = ":images/copy_of_circle_square_0.png"
    picker = next(s for s in at.selectbox if (s.key or "").endswith(copy_key))
    relabels = [option for option in picker.options if option.startswith("Relabel as ")]
    assert relabels == ["Relabel as circle;square"]


def test_tags_added_in_the_gallery_are_saved_as_a_new_version(ws, tmp_path):
    data = make_shapes_dataset(tmp_path / "retag", per_kind=3)
    at = open_page(ui_state.DATA_PAGE, **{ui_state.DATASET_KEY: str(data)})
    next(s for s in at.selectbox if s.label == "Show").set_value("Images with no tag").run()
    picker = next(m for m in at.multiselect if m.key.endswith(":images/none_0.png"))
    assert picker.value == []
    picker.set_value(["circle"]).run()
    button(at, "Save tag changes as a new version (1 image)").click().run()
    assert not at.exception
    version = Path(at.session_state[ui_state.DATASET_KEY])
    assert version != data and read_version(version) is not None
    tags = current_tags(version)
    assert tags["images/none_0.png"] == ("circle",)
    assert tags["images/none_1.png"] == () and tags["images/circle_square_0.png"] == (
        "circle",
        "square",
    )
    assert current_tags(data)["images/none_0.png"] == ()  # the original is untouched
    assert "Saved" in texts(at.success)
    # The versions list shows the new one in use.
    number = read_version(version).number
    assert any(m.value.startswith(f"**v{number}**") and "in use" in m.value for m in at.markdown)


# ----------------------------------------------------------------------------- model, train


def test_the_transfer_tools_say_they_do_not_handle_tags_and_training_names_its_metric(
    ws, dataset, run_path
):
    config = tiny_config(dataset, epochs=1)
    state = {ui_state.DATASET_KEY: str(dataset), ui_state.CONFIG_KEY: config.to_dict()}
    at = open_page(ui_state.MODEL_PAGE, **state)
    assert "Compare backbones on my images" not in {b.label for b in at.button}
    assert "The backbone advisor does not work on datasets with several tags" in texts(at.info)
    assert "your new 2-tag head" in texts(at.caption)

    at = open_page(ui_state.TRAIN_PAGE, **state)
    labels = {b.label for b in at.button}
    assert "Run a freeze sweep" not in labels and "Run a transfer check" not in labels
    info = texts(at.info)
    assert "The freeze-depth sweep does not work" in info and "The transfer check" in info
    assert "The automatic search (Find a good model for me) does not work" in info
    assert "Find a good model for me" not in labels
    button(at, "Start training").click().run()
    job = ui_state.scheduler().get(at.session_state[ui_state.JOB_KEY])
    assert job.wait(120).status == "completed"
    at.run()
    assert not at.exception
    assert metrics(at)["Best val. macro F1 at threshold 0.5"].endswith("%")
    assert "macro F1 at threshold 0.5 (" in texts(at.caption)  # its image count, no interval
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Macro F1 at threshold 0.5" in titles


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_shows_per_tag_scores_and_the_images_missed_or_added(ws, run_path):
    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    expected = evaluate_run(run_path, device="cpu")
    table = next(d for d in at.dataframe if "average_precision" in d.value.columns).value
    assert list(table.tag) == ["circle", "square"]
    for column in ("precision", "recall", "f1", "support", "missed", "added"):
        assert list(table[column]) == pytest.approx(list(expected.per_tag[column]))
    assert metrics(at)["Validation macro F1"] == f"{expected.macro_f1:.1%}"
    assert "Lower a threshold and the tag is missed on fewer images" in texts(at.caption)
    # The run's title names its metric, with no interval (that is of a share of images right).
    title = next(s for s in at.selectbox if s.label == "Run").value
    title = next(s for s in at.selectbox if s.label == "Run").format_func(title)
    assert "macro F1 at threshold 0.5 (" in title and "95 % CI" not in title
    confusion = next(d for d in at.dataframe if d.value.index.name == "true").value
    assert confusion.loc["circle", "circle"] == expected.per_tag.true_positives[0]

    # Every tag's missed and added images are listed under its picker.
    for tag in expected.tags:
        next(s for s in at.selectbox if s.label == "Tag").set_value(tag).run()
        for kind, rows in (("Missed", expected.missed_images), ("Added", expected.added_images)):
            mistake = next(r for r in at.radio if r.label == "Mistake")
            mistake.set_value(next(o for o in mistake.options if o.startswith(kind))).run()
            assert f"**{len(rows(tag))} image" in texts(at.markdown)


def test_a_missed_tag_is_fixed_from_evaluate_as_a_new_version_of_the_runs_dataset(
    ws, dataset, run_path
):
    evaluation = evaluate_run(run_path, device="cpu")
    mistakes = [
        (tag, kind, rows)
        for tag in evaluation.tags
        for kind, rows in (
            ("Missed", evaluation.missed_images(tag)),
            ("Added", evaluation.added_images(tag)),
        )
        if len(rows)
    ]
    assert mistakes, "the tiny model makes no mistake to fix"
    tag, kind, rows = mistakes[0]
    image = Path(rows.image[0]).relative_to(dataset).as_posix()
    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    next(s for s in at.selectbox if s.label == "Tag").set_value(tag).run()
    mistake = next(r for r in at.radio if r.label == "Mistake")
    mistake.set_value(next(o for o in mistake.options if o.startswith(kind))).run()
    picker = next(m for m in at.multiselect if m.key.endswith(f":{image}"))
    # The user agrees with the model: a missed tag is removed, an added one added.
    wanted = sorted(set(picker.value) ^ {tag})
    picker.set_value(wanted).run()
    button(at, "Save tag changes as a new version (1 image)").click().run()
    assert not at.exception
    version = Path(at.session_state[ui_state.DATASET_KEY])
    assert read_version(version).parent.resolve() == dataset.resolve()
    assert list(current_tags(version)[image]) == wanted


def test_evaluate_on_a_tagged_test_set(ws, run_path, tmp_path):
    test_set = make_shapes_dataset(tmp_path / "test_set", per_kind=2, seed=5)
    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    next(r for r in at.radio if r.label == "Evaluate on").set_value("A labelled test set").run()
    assert "with a labels.csv of the run's tags" in texts(at.info)
    folder = next(t for t in at.text_input if t.label == "Or a folder on this computer")
    folder.set_value(str(test_set))
    button(at, "Evaluate on this set").click().run()
    assert not at.exception
    expected = evaluate_run(run_path, test_set, device="cpu")
    assert metrics(at)["Test images"] == "8"
    assert metrics(at)["Test macro F1"] == f"{expected.macro_f1:.1%}"


def probability_near_the_middle(run_path: Path) -> tuple[bytes, str, float]:
    """An image and one of its tags' probabilities far enough from 0 and 1 that a threshold
    on either side of it is a valid one."""
    predictor = Predictor.from_run(run_path, device="cpu")
    for seed in range(200, 260):
        for tags in (("circle", "square"), ("circle",), ("square",), ()):
            image = shapes_image(tags, seed)
            ranking = dict(predictor.predict_images([image], 2)[0])
            for tag, p in ranking.items():
                if 0.03 < p < 0.96:
                    return png(tags, seed), tag, p
    raise AssertionError("every probability is at 0 or 1")


def test_an_edited_threshold_changes_the_table_and_the_predictions(ws, run_path):
    image, tag, probability = probability_near_the_middle(run_path)
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    at.file_uploader[0].set_value([("probe.png", image, "image/png")]).run()
    before = texts(at.markdown)
    old = dict(zip(Predictor.from_run(run_path).labels, read_thresholds(run_path), strict=True))
    given = probability >= old[tag]
    # Just above the probability takes the tag away; just below it gives it.
    new = math.ceil(probability * 100 + 1) / 100 if given else math.floor(probability * 100) / 100
    assert (f"{tag} (" in before) == given

    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    next(n for n in at.number_input if n.label == tag).set_value(new)
    button(at, "Save thresholds").click().run()
    assert not at.exception
    assert dict(zip(old, read_thresholds(run_path), strict=True))[tag] == pytest.approx(new)
    table = next(d for d in at.dataframe if "average_precision" in d.value.columns).value
    assert table.set_index("tag").threshold[tag] == pytest.approx(new)
    assert "edited by hand" in texts(at.caption)

    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    at.file_uploader[0].set_value([("probe.png", image, "image/png")]).run()
    after = texts(at.markdown)
    assert (f"{tag} (" in after) == (not given)
    assert f"{tag} {new:.2f}" in texts(at.caption)  # the thresholds in use, in words


# ----------------------------------------------------------------------------- predict, export


def test_predict_gives_each_image_its_tags_and_the_batch_csv_carries_them(ws, run_path, tmp_path):
    images = {f"img{seed}.png": (tags, seed) for tags, seed in
              ((("circle", "square"), 300), ((), 301), (("square",), 302))}  # fmt: skip
    for name, (tags, seed) in images.items():
        (tmp_path / name).write_bytes(png(tags, seed))
    results = Predictor.from_run(run_path, device="cpu").predict_paths(
        [tmp_path / name for name in images]
    )
    expected = {name: result for name, result in zip(images, results, strict=True)}
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    at.file_uploader[0].set_value(
        [(name, (tmp_path / name).read_bytes(), "image/png") for name in images]
    ).run()
    assert not at.exception
    shown = texts(at.markdown)
    for result in expected.values():  # "circle (97%), square (88%)", or "no tag"
        assert f"**{answer_text(result)}**" in shown

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in images:
            archive.write(tmp_path / name, f"batch/{name}")
    at.file_uploader[1].set_value(("batch.zip", buffer.getvalue(), "application/zip"))
    button(at, "Predict all").click().run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("image")
    assert table.tags.to_dict() == {f"batch/{n}": tags_text(r.tags) for n, r in expected.items()}


def test_export_offers_the_model_files_and_says_the_web_page_cannot_show_tags(ws, run_path):
    at = open_page(ui_state.EXPORT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    assert not at.exception
    labels = {b.label for b in at.button}
    assert "Build web page" not in labels
    assert any(label.startswith("Build ONNX") for label in labels)
    info = texts(at.info)
    assert "gives several tags per image, which the web page cannot show yet" in info
    assert "thresholds.json" in info
    assert [d.label for d in at.get("download_button")] == ["Download run (.zip)"]
    # The model file is checked against PyTorch, tags and thresholds included, before it is offered.
    button(at, "Build torch.export (.pt2) file").click().run()
    assert not at.exception
    assert "Download torch.export (.pt2) file" in [d.label for d in at.get("download_button")]
    assert "— passed" in texts(at.success)
