"""The app's frame and its Data and Model pages, driven headlessly with Streamlit's AppTest.

Every test runs the real ``app.py`` (navigation and sidebar included) against a workspace in
``tmp_path``. Pages that need a trained run are covered in ``test_app_training.py``.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from app_pages.ui import dataset_view, run_picker, sidebar, state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image, make_image_folder, make_zip
from tl_core.data import sample_dataset_path
from tl_core.runs import WORKSPACE_ENV, Workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


def png_bytes(color=(200, 30, 30), seed=0) -> bytes:
    buffer = io.BytesIO()
    make_image(color=color, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(color=(30, 30, 200), seed=0) -> bytes:
    buffer = io.BytesIO()
    make_image(color=color, seed=seed).save(buffer, format="JPEG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- frame


def test_sidebar_names_the_cpu_when_there_is_no_gpu(ws, monkeypatch):
    monkeypatch.setattr(
        sidebar,
        "describe_devices",
        lambda: {"cuda": False, "name": "CPU", "free_memory_gb": None, "total_memory_gb": None},
    )
    sidebar._device_info.clear()
    at = open_page(state.DATA_PAGE)
    assert "CPU" in texts(at.sidebar.markdown)


def test_sidebar_shows_gpu_name_and_free_memory(ws, monkeypatch):
    monkeypatch.setattr(
        sidebar,
        "describe_devices",
        lambda: {
            "cuda": True,
            "name": "NVIDIA Test",
            "free_memory_gb": 70.5,
            "total_memory_gb": 80.0,
        },
    )
    sidebar._device_info.clear()
    try:
        at = open_page(state.DATA_PAGE)
    finally:
        sidebar._device_info.clear()
    assert "NVIDIA Test" in texts(at.sidebar.markdown)
    assert "70.5 of 80.0 GB free" in texts(at.sidebar.markdown)


# ----------------------------------------------------------------------------- data


def test_data_page_empty_state_offers_every_way_in(ws):
    at = open_page(state.DATA_PAGE)
    assert "No dataset yet" in texts(at.info)
    assert [t.label for t in at.tabs] == [
        "Upload a .zip",
        "Build classes here",
        "Sample dataset",
        "Imported before",
    ]
    assert button(at, "Load sample dataset")
    assert at.file_uploader[0].allowed_type == [".zip"]


def test_loading_the_sample_dataset_shows_its_health_report(ws):
    at = open_page(state.DATA_PAGE)
    button(at, "Load sample dataset").click().run()
    assert not at.exception
    assert at.session_state[state.DATASET_KEY] == str(sample_dataset_path())
    metrics = {m.label: m.value for m in at.metric}
    classes = [p for p in sample_dataset_path().iterdir() if p.is_dir()]
    assert metrics["Classes"] == str(len(classes)) and len(classes) >= 3
    assert "Ready to train" in texts(at.success)
    assert len(at.get("plotly_chart")) == 1  # images per class
    # Thumbnails, at most THUMBS_PER_CLASS per class, each with a one-line file name.
    shown = sum(min(len(list(c.iterdir())), dataset_view.THUMBS_PER_CLASS) for c in classes)
    assert len(at.image) == shown
    captions = [img.caption for element in at.image for img in element.proto.imgs]
    assert all(len(c) <= dataset_view.THUMB_SIZE // dataset_view.CAPTION_CHAR_PX for c in captions)
    assert f"{len(classes)} classes" in texts(at.success)


def test_uploaded_zip_is_extracted_into_the_workspace(ws, tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 3, "dogs": 3})
    archive = make_zip(folder, tmp_path / "pets.zip", wrap="pets")
    at = open_page(state.DATA_PAGE)
    at.file_uploader[0].set_value(("pets.zip", archive.read_bytes(), "application/zip"))
    at.run()  # the upload alone imports
    assert not at.exception
    dataset = Path(at.session_state[state.DATASET_KEY])
    assert dataset.is_relative_to(ws.datasets)
    assert sorted(p.name for p in dataset.iterdir()) == ["cats", "dogs"]
    assert "6 images in 2 classes" in texts(at.success)
    assert not any(ws.uploads.iterdir())  # the uploaded copy is gone once extracted
    assert not [b for b in [*at.button, *at.form_submit_button] if b.label == "Import"]

    # Later reruns (any click) leave the same upload alone; uploading it again imports anew.
    next(t for t in at.text_input if t.label == "Dataset name").set_value("other").run()
    assert len(list(ws.datasets.iterdir())) == 1
    at.file_uploader[0].set_value(("pets.zip", archive.read_bytes(), "application/zip")).run()
    assert not at.exception
    assert len(list(ws.datasets.iterdir())) == 2


def test_zip_without_class_folders_gives_an_error_not_an_exception(ws):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png_bytes(seed=1))
        archive.writestr("b.png", png_bytes(seed=2))
    at = open_page(state.DATA_PAGE)
    at.file_uploader[0].set_value(("loose.zip", buffer.getvalue(), "application/zip"))
    at.run()  # the upload alone imports
    assert not at.exception
    assert "No readable images" in texts(at.error)
    assert state.DATASET_KEY not in at.session_state
    assert not any(ws.datasets.iterdir())  # nothing unusable is kept


def test_a_file_that_is_not_a_zip_gives_an_error(ws):
    at = open_page(state.DATA_PAGE)
    at.file_uploader[0].set_value(("photos.zip", b"certainly not a zip", "application/zip"))
    at.run()  # the upload alone imports
    assert not at.exception
    assert "photos.zip" in texts(at.error)
    assert at.info  # the hint of what to do
    assert state.DATASET_KEY not in at.session_state


def test_building_a_dataset_class_by_class_with_uploads_and_webcam(ws):
    at = open_page(state.DATA_PAGE)
    at.toggle[0].set_value(True).run()  # "Use the webcam"
    class_input = next(t for t in at.text_input if t.label == "Class name")
    class_input.set_value("red")
    at.file_uploader[1].set_value(
        [("r1.png", png_bytes(seed=1), "image/png"), ("r2.png", png_bytes(seed=2), "image/png")]
    )
    at.camera_input[0].set_value(("image.jpg", jpeg_bytes(color=(220, 20, 20)), "image/jpeg"))
    button(at, "Add to class").click().run()
    assert not at.exception
    dataset = Path(at.session_state[state.DATASET_KEY])
    assert dataset == ws.datasets / "my-dataset"
    assert len(list((dataset / "red").iterdir())) == 3
    assert "at least 2 are needed" in texts(at.error)  # one class is not enough yet

    class_input = next(t for t in at.text_input if t.label == "Class name")
    class_input.set_value("blue")
    at.file_uploader[1].set_value(
        [(f"b{i}.jpg", jpeg_bytes(seed=i), "image/jpeg") for i in range(2)]
    )
    button(at, "Add to class").click().run()
    assert not at.exception
    assert "5 images in 2 classes" in texts(at.success)


def test_adding_nothing_to_a_class_asks_for_images(ws):
    at = open_page(state.DATA_PAGE)
    next(t for t in at.text_input if t.label == "Class name").set_value("red")
    button(at, "Add to class").click().run()
    assert not at.exception
    assert "at least one image" in texts(at.warning)


def test_datasets_imported_before_are_offered_after_a_restart(ws, tmp_path):
    make_image_folder(ws.datasets / "earlier", {"a": 2, "b": 2})
    at = open_page(state.DATA_PAGE)
    picker = next(s for s in at.selectbox if s.label == "Dataset")
    assert "earlier · 2 classes · 4 images" in picker.options
    button(at, "Use this dataset").click().run()
    assert at.session_state[state.DATASET_KEY] == str(ws.datasets / "earlier")


# ----------------------------------------------------------------------------- model


def test_model_page_without_a_dataset_links_to_data(ws):
    at = open_page(state.MODEL_PAGE)
    assert "No dataset yet" in texts(at.info)
    assert at.page_link[0].label == "Go to Data"


@pytest.fixture
def dataset(ws, tmp_path) -> str:
    return str(make_image_folder(tmp_path / "tiny", {"red": 4, "green": 4, "blue": 4}))


def test_model_page_builds_a_config_into_the_session(ws, dataset):
    at = open_page(state.MODEL_PAGE, **{state.DATASET_KEY: dataset})
    backbone = next(s for s in at.selectbox if s.label == "Backbone")
    assert backbone.value == "tf_efficientnet_lite0"
    assert at.radio(key="model_mode").value == "feature-extraction"  # only the head trains
    at.radio(key="model_mode").set_value("full-fine-tune").run()
    caption = next(c.value for c in at.caption if "parameters will train" in c.value)
    trained, total, frozen = re.search(
        r"\*\*([\d,]+)\*\* of ([\d,]+) parameters will train.*\((\d+) of", caption
    ).groups()
    assert trained == total and frozen == "0"  # nothing frozen: every parameter trains

    # Every setting applies on change, with no form and no button to forget.
    assert not at.get("form")
    assert at.session_state[state.CONFIG_KEY]["freeze"] == "none"
    next(s for s in at.select_slider if s.label == "Batch size").set_value(8).run()
    next(n for n in at.number_input if n.label == "Epochs").set_value(2).run()
    assert not at.exception
    assert "next training run uses these settings" in texts(at.success)
    assert at.radio(key="model_mode").value == "full-fine-tune"  # earlier choices survive
    config = at.session_state[state.CONFIG_KEY]
    # The dataset has one owner (DATASET_KEY): the saved settings do not repeat it.
    assert "data" not in config and at.session_state[state.DATASET_KEY] == dataset
    assert config["freeze"] == "none"
    assert config["epochs"] == 2 and config["batch_size"] == 8
    assert config["backbone"] == "tf_efficientnet_lite0" and config["pretrained"] is True


def test_model_page_accepts_any_timm_name_and_explains_a_wrong_one(ws, dataset):
    at = open_page(state.MODEL_PAGE, **{state.DATASET_KEY: dataset})
    next(s for s in at.selectbox if s.label == "Backbone").set_value("Other timm model...").run()
    next(t for t in at.text_input if t.label == "timm model name").set_value("resnet_9000").run()
    assert not at.exception
    assert "no backbone called 'resnet_9000'" in texts(at.error)
    # The wrong name is not saved: the page says which settings training keeps using.
    assert "Not saved" in texts(at.info) and "tf_efficientnet_lite0" in texts(at.info)
    assert at.session_state[state.CONFIG_KEY]["backbone"] == "tf_efficientnet_lite0"

    next(t for t in at.text_input if t.label == "timm model name").set_value(
        "test_efficientnet"
    ).run()
    at.toggle[0].set_value(False).run()  # from scratch: no weights needed
    assert not at.exception
    config = at.session_state[state.CONFIG_KEY]
    assert config["backbone"] == "test_efficientnet" and config["pretrained"] is False


def test_model_page_says_which_head_each_parameter_total_counts(ws, dataset):
    at = open_page(state.MODEL_PAGE, **{state.DATASET_KEY: dataset})
    backbone = next(s for s in at.selectbox if s.label == "Backbone")
    label = backbone.format_func(backbone.value)
    assert "4.7 M parameters with the 1000-class ImageNet head" in label
    caption = next(c.value for c in at.caption if "parameters will train" in c.value)
    assert "your new 3-class head" in caption  # red, green, blue
    chart = at.get("plotly_chart")[0]
    assert '"displayModeBar": false' in chart.proto.config  # a fixed diagram: no zoom bar


# ----------------------------------------------------------------------------- empty states


def test_train_page_asks_for_a_dataset_then_for_settings(ws, dataset):
    at = open_page(state.TRAIN_PAGE)
    assert "No dataset yet" in texts(at.info)
    assert at.page_link[0].label == "Go to Data"
    at = open_page(state.TRAIN_PAGE, **{state.DATASET_KEY: dataset})
    assert "No model settings yet" in texts(at.info)
    assert at.page_link[0].label == "Go to Model"


@pytest.mark.parametrize("page", [state.EVALUATE_PAGE, state.PREDICT_PAGE, state.EXPORT_PAGE])
def test_pages_that_need_a_run_say_so_when_there_is_none(ws, page):
    at = open_page(page)
    assert "No trained run yet" in texts(at.info)
    assert at.page_link[0].label == "Go to Train"


def test_an_unexpected_failure_is_explained_without_a_traceback(ws, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(run_picker, "list_runs", broken)
    at = open_page(state.EVALUATE_PAGE)
    assert "RuntimeError: disk on fire" in texts(at.error)
    assert "safe on disk" in texts(at.info)
    assert not at.exception
