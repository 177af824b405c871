"""The app and the workspace: its size and clean-up page, long names, names shown as typed,
and which folders of the server's disk a form may read. Driven headlessly with AppTest."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image, make_image_folder, make_zip
from tl_core.runs import WORKSPACE_ENV, FolderLock, Workspace

LONG = "y" * 300  # over the 255 bytes a file system allows in one name
HOSTILE = "**bold** [x](javascript:alert(1))"  # a folder name cannot hold "/"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


def age(path: Path, days: float) -> None:
    old = time.time() - days * 86400
    os.utime(path, (old, old))


# ----------------------------------------------------------------------------- workspace page


def test_the_workspace_page_shows_sizes_and_deletes_a_dataset_only_once_confirmed(ws):
    keep = make_image_folder(ws.datasets / "keep", {"a": 2, "b": 2})
    old = make_image_folder(ws.datasets / "old", {"a": 2, "b": 2})
    at = open_page(state.WORKSPACE_PAGE, **{state.DATASET_KEY: str(old)})
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {
        "Datasets",
        "Runs",
        "Uploads",
        "Weights files",
        "Feature cache",
        "In all",
    }
    assert metrics["Datasets"].endswith("KB") and metrics["Runs"] == "0 B"
    assert "No runs to delete." in texts(at.caption)

    picker = next(m for m in at.multiselect if m.label == "Datasets to delete")
    picker.set_value([str(old)])
    button(at, "Delete datasets").click().run()  # not confirmed: nothing happens
    assert not at.exception
    assert "Nothing was deleted" in texts(at.warning) and old.is_dir()

    next(m for m in at.multiselect if m.label == "Datasets to delete").set_value([str(old)])
    next(c for c in at.checkbox if c.label == "Yes, delete them for good").check()
    button(at, "Delete datasets").click().run()
    assert not at.exception
    assert not old.exists() and keep.is_dir()
    assert "Deleted 1 dataset" in texts(at.success)
    assert state.DATASET_KEY not in at.session_state  # the session forgets what is gone
    picker = next(m for m in at.multiselect if m.label == "Datasets to delete")
    assert picker.options == [picker.format_func(str(keep))]  # only what is left


def test_a_run_a_training_is_writing_to_is_not_offered_for_deletion(ws):
    live, done = ws.runs / "live", ws.runs / "done"
    for run in (live, done):
        run.mkdir()
        (run / "config.json").write_text("{}")
    lock = FolderLock.acquire(live)
    try:
        at = open_page(state.WORKSPACE_PAGE)
        picker = next(m for m in at.multiselect if m.label == "Runs to delete")
        assert picker.options == [picker.format_func(str(done))]
        assert "a training is writing to it: 1 run" in texts(at.caption)
        picker.set_value([str(done)])
        next(c for c in at.checkbox if c.label == "Yes, delete them for good").check()
        button(at, "Delete runs").click().run()
    finally:
        lock.release()
    assert not at.exception
    assert not done.exists() and (live / "config.json").is_file()


def test_uploads_older_than_a_day_are_cleaned_when_a_session_starts(ws):
    old = ws.save_upload_once(io.BytesIO(b"x"), "old-id", "a.png", ws.predict_uploads)
    age(old.parent, 2)
    stale_csv = ws.uploads / "predictions-batch.csv"
    stale_csv.write_text("image\n")
    age(stale_csv, 3)
    fresh = ws.save_upload_once(io.BytesIO(b"x"), "new-id", "b.png", ws.predict_uploads)
    at = open_page(state.DATA_PAGE)
    assert not old.parent.exists() and not stale_csv.exists()
    assert fresh.is_file()
    # Once per session: an upload that ages while the session lasts is left to the next one.
    age(fresh.parent, 2)
    at.run()
    assert fresh.is_file()


# ----------------------------------------------------------------------------- long names


def test_a_zip_with_a_300_character_name_is_imported_on_the_data_page(ws, tmp_path):
    folder = make_image_folder(tmp_path / "pets", {"cats": 2, "dogs": 2})
    archive = make_zip(folder, tmp_path / "pets.zip")
    at = open_page(state.DATA_PAGE)
    at.file_uploader[0].set_value((LONG + ".zip", archive.read_bytes(), "application/zip"))
    at.run()
    assert not at.exception and not at.error
    assert "4 images in 2 classes" in texts(at.success)
    dataset = Path(at.session_state[state.DATASET_KEY])
    assert dataset.is_relative_to(ws.datasets) and len(dataset.name.encode()) <= 255


def test_a_class_and_images_with_300_character_names_are_added_on_the_data_page(ws):
    buffer = io.BytesIO()
    make_image().save(buffer, format="PNG")
    at = open_page(state.DATA_PAGE)
    next(t for t in at.text_input if t.label == "Class name").set_value(LONG)
    at.file_uploader[1].set_value([(LONG + ".png", buffer.getvalue(), "image/png")])
    button(at, "Add to class").click().run()
    assert not at.exception
    dataset = Path(at.session_state[state.DATASET_KEY])
    (image,) = dataset.rglob("*.png")
    assert image.suffix == ".png" and all(len(p.encode()) <= 255 for p in image.parts)


# ----------------------------------------------------------------------------- Markdown


def test_class_and_dataset_names_show_as_typed_not_as_markdown(ws):
    dataset = make_image_folder(ws.datasets / "<i>set", {HOSTILE: 2, "<b>": 2, "_x_": 2})
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(dataset)})
    assert not at.exception
    shown = texts(at.markdown)
    assert "**\\*\\*bold\\*\\* \\[x\\](javascript:alert(1))** · 2 images" in shown
    assert "**\\<b\\>** · 2 images" in shown and "**\\_x\\_** · 2 images" in shown
    assert HOSTILE not in shown and "**<b>**" not in shown
    assert "Dataset: \\<i\\>set" in texts(at.subheader)
    assert "Dataset: \\<i\\>set" in texts(at.sidebar.caption)


def test_a_class_name_in_a_health_message_shows_as_typed(ws):
    dataset = make_image_folder(ws.datasets / "solo", {HOSTILE: 2})
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(dataset)})
    assert not at.exception
    error = texts(at.error)
    assert "at least 2 are needed" in error  # one class is not enough
    assert "\\*\\*bold\\*\\* \\[x\\]" in error and HOSTILE not in error


# ----------------------------------------------------------------------------- typed folders


def _predict_form(folder_text):  # AppTest runs this function's source alone
    from app_pages.ui import feedback, inputs, state  # noqa: F811  (AppTest runs this source alone)

    with feedback.safety_net():
        inputs.folder_from_form(None, folder_text)
        state.st.success("read")


def test_a_server_that_answers_other_computers_reads_only_home_and_workspace_folders(
    ws, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    in_home = make_image_folder(tmp_path / "home" / "photos", {"a": 1})
    elsewhere = make_image_folder(tmp_path / "shared", {"a": 1})
    get_option = streamlit.get_option

    def bound_to_every_interface(key):
        return "0.0.0.0" if key == "server.address" else get_option(key)

    monkeypatch.setattr(streamlit, "get_option", bound_to_every_interface)
    at = AppTest.from_function(_predict_form, args=(str(elsewhere),), default_timeout=30).run()
    assert not at.exception
    assert "outside your home folder and the workspace" in texts(at.error)
    assert "answers other computers" in texts(at.error) and not at.success
    at = AppTest.from_function(_predict_form, args=(str(in_home),), default_timeout=30).run()
    assert not at.error and texts(at.success) == "read"


def test_a_system_folder_is_never_read(ws):
    at = AppTest.from_function(_predict_form, args=("/etc",), default_timeout=30).run()
    assert not at.exception
    assert "system folder" in texts(at.error) and not at.success
