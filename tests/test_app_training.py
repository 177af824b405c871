"""Train, Evaluate, Predict and Export pages with real (tiny) training jobs and runs.

Jobs train timm's ``test_efficientnet`` from random weights on 32-pixel images, so each takes a
second or two on a CPU. AppTest reruns only when asked, so tests wait on the job itself and
then run the page once more, instead of sleeping for the live fragment's timer.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from app_pages.ui import state as ui_state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image, make_image_folder
from tests.training import tiny_config
from tl_core.common import format_accuracy, plural
from tl_core.inference import evaluate_run
from tl_core.runs import Workspace, list_runs, summarize_run

CLASSES = {"red": 6, "green": 6, "blue": 6}


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def dataset(ws, tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "colours", CLASSES)


@pytest.fixture(scope="module")
def run_path(ws, dataset) -> Path:
    """A finished run, trained through the app's own job registry."""
    job = ui_state.scheduler().start(tiny_config(dataset))
    snap = job.wait(120)
    assert snap.status == "completed", snap.error
    return Path(snap.run_dir)


def image_bytes(color, seed=0, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    make_image(color=color, seed=seed).save(buffer, format=fmt)
    return buffer.getvalue()


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- train


def test_start_trains_and_the_page_shows_the_finished_job(ws, dataset, run_path):
    state = {
        ui_state.DATASET_KEY: str(dataset),
        ui_state.CONFIG_KEY: tiny_config(dataset).to_dict(),
    }
    at = open_page(ui_state.TRAIN_PAGE, **state)
    assert "test_efficientnet" in texts(at.caption)
    button(at, "Start training").click().run()
    assert not at.exception
    job = ui_state.scheduler().get(at.session_state[ui_state.JOB_KEY])
    assert job is not None and job.run_dir != run_path
    # The sidebar names the job just started in the same page run, not the earlier one.
    assert job.run_dir.name in texts(at.sidebar.markdown)
    assert job.wait(120).status == "completed"

    at.run()
    assert not at.exception
    assert f"Finished: {job.run_dir.name}" in texts(at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Epochs done"] == "2/2" and metrics["Best val. accuracy"].endswith("%")
    # The accuracy comes with its interval and the number of validation images.
    snap = job.snapshot()
    expected = format_accuracy(snap.best_val_accuracy, snap.num_val_images)
    assert "95 % CI" in expected and expected in texts(at.caption)
    assert len(at.get("plotly_chart")) == 2  # loss and accuracy
    # The dataset's health warnings (6 images per class is few) are shown with the job.
    assert snap.warnings and all(w in texts(at.warning) for w in snap.warnings)
    assert "has only 6 images" in texts(at.warning)
    assert at.session_state[ui_state.RUN_KEY] == str(job.run_dir)
    assert {link.label for link in at.page_link} >= {"Evaluate", "Predict", "Export"}
    # The sidebar reports the job too, with the same accuracy and interval.
    assert "completed" in texts(at.sidebar.markdown)
    assert expected in texts(at.sidebar.markdown)


def test_a_fresh_session_reattaches_to_the_latest_job(ws, run_path):
    at = open_page(ui_state.TRAIN_PAGE)  # no job id in this session
    latest = ui_state.scheduler().latest()
    assert at.session_state[ui_state.JOB_KEY] == latest.job_id
    assert f"Run {latest.run_dir.name}" in texts(at.subheader)
    # ...and carries on with that job's dataset and settings.
    assert at.session_state[ui_state.DATASET_KEY] == latest.config.data
    assert at.session_state[ui_state.CONFIG_KEY] == ui_state.settings_of(latest.config)
    assert button(at, "Start training")


def progress_text(at) -> str:
    return " ".join(bar.proto.text for bar in at.get("progress"))


def button_labels(at) -> set[str]:
    return {b.label for b in at.button}


def test_pause_resume_stop_and_start_queues_while_one_runs(ws, dataset, run_path):
    long_config = tiny_config(dataset, epochs=500)
    job = ui_state.scheduler().start(long_config)
    try:
        wait_for(lambda: job.snapshot().status == "running" and job.snapshot().step > 0)
        state = {ui_state.DATASET_KEY: str(dataset), ui_state.CONFIG_KEY: long_config.to_dict()}
        at = open_page(ui_state.TRAIN_PAGE, **state)
        assert at.session_state[ui_state.JOB_KEY] == job.job_id  # attached to the active job
        assert at.get("progress")
        assert re.search(r"Running · Epoch \d+ of 500 in progress", progress_text(at))

        # A second start waits its turn (it used to be refused), and the page says so.
        assert not button(at, "Start training").disabled
        assert "a job started now waits its turn, 2nd in line" in texts(at.caption)

        # Pause shows at once: Resume replaces Pause before the loop has even paused.
        button(at, "Pause").click().run()
        assert not at.exception
        assert job.snapshot().status in ("pausing", "paused")
        assert button_labels(at) >= {"Resume", "Stop"} and "Pause" not in button_labels(at)
        assert any(words in progress_text(at) for words in ("Pausing after this batch", "Paused"))
        wait_for(lambda: job.snapshot().status == "paused")
        at.run()
        assert progress_text(at).startswith("Paused · Epoch")

        button(at, "Resume").click().run()
        assert job.snapshot().status == "running"  # at once, too
        assert "Pause" in button_labels(at) and "Resume" not in button_labels(at)

        button(at, "Stop").click().run()
        assert not button_labels(at) & {"Pause", "Resume", "Stop"}  # nothing left to ask for
        assert job.wait(60).status == "stopped"
    finally:
        job.stop()
        job.wait(60)
    at.run()
    assert not at.exception
    assert "Stopped" in texts(at.warning)
    assert at.warning[0].icon == ":material/stop_circle:"
    assert not button_labels(at) & {"Pause", "Resume", "Stop"}
    assert not button(at, "Start training").disabled


def test_a_start_clicked_while_another_session_trains_queues_and_cancel_removes_it(
    ws, dataset, run_path
):
    # This page drew its Start button; meanwhile another session started a job. The click
    # queues a second job behind it (it used to start nothing), which Cancel takes out.
    state = {
        ui_state.DATASET_KEY: str(dataset),
        ui_state.CONFIG_KEY: tiny_config(dataset).to_dict(),
    }
    at = open_page(ui_state.TRAIN_PAGE, **state)
    job = ui_state.scheduler().start(tiny_config(dataset, epochs=500))
    try:
        button(at, "Start training").click().run()
        assert not at.exception
        queued = ui_state.scheduler().latest()
        assert ui_state.scheduler().active() is job and queued is not job
        assert at.session_state[ui_state.JOB_KEY] == queued.job_id
        waiting = "Queued, 2nd in line, after Training test_efficientnet on colours"
        assert waiting in texts(at.info)
        assert waiting in texts(at.sidebar.markdown)
        button(at, "Cancel").click().run()
        assert not at.exception
        assert queued.snapshot().status == "cancelled"
        assert ui_state.scheduler().line() == [job]  # out of the line: it will never run
        assert waiting not in texts(at.info) and "Cancel" not in button_labels(at)
        assert at.session_state[ui_state.JOB_KEY] == job.job_id  # the page follows the running job
    finally:
        job.stop()
        job.wait(60)


def test_the_sidebar_names_the_run_a_page_just_picked(ws, run_path):
    at = open_page(ui_state.EVALUATE_PAGE)  # no run chosen yet: the page's picker chooses one
    picked = at.session_state[ui_state.RUN_KEY]
    # By the run's title, as the picker shows it, not by its folder name.
    assert f"Run: {summarize_run(Path(picked)).title}" in texts(at.sidebar.caption)


def test_a_failed_job_explains_itself_in_words(ws, tmp_path, run_path):
    missing = tmp_path / "gone"
    state = {
        ui_state.DATASET_KEY: str(missing),
        ui_state.CONFIG_KEY: tiny_config(missing).to_dict(),
    }
    at = open_page(ui_state.TRAIN_PAGE, **state)
    button(at, "Start training").click().run()
    job = ui_state.scheduler().get(at.session_state[ui_state.JOB_KEY])
    assert job.wait(60).status == "failed"
    at.run()
    assert not at.exception
    assert "does not exist" in texts(at.error)
    assert texts(at.info)  # what to try
    assert "Traceback" not in texts(at.error)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_shows_confusion_scores_and_the_chosen_cell(ws, run_path):
    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    expected = evaluate_run(run_path)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Validation accuracy"] == f"{expected.accuracy:.1%}"
    assert metrics["Validation images"] == str(len(expected.predictions))
    # Confusion matrix, per-class scores, and the reliability diagram of the percentages.
    assert [c.key for c in at.get("plotly_chart")] == ["confusion", "per_class", "reliability"]
    assert len(at.dataframe[0].value) == len(CLASSES)

    true_box = next(s for s in at.selectbox if s.label == "True class")
    predicted_box = next(s for s in at.selectbox if s.label == "Predicted class")
    assert sorted(true_box.options) == sorted(CLASSES)
    true_box.set_value("green")
    predicted_box.set_value("green").run()
    assert not at.exception
    count = len(expected.cell_images("green", "green"))
    assert f"**{plural(count, 'image')}** of *green* predicted as *green*" in texts(at.markdown)


def test_evaluate_offers_every_run_on_disk_newest_first(ws, run_path):
    at = open_page(ui_state.EVALUATE_PAGE)
    picker = next(s for s in at.selectbox if s.label == "Run")
    runs = [summary for summary in list_runs(ws.runs) if summary.has_weights]
    assert picker.options == [summary.title for summary in runs]
    assert str(run_path) in [str(summary.path) for summary in runs]
    created = [summary.created for summary in runs]
    assert created == sorted(created, reverse=True)


# ----------------------------------------------------------------------------- predict


def test_predict_shows_top_k_bars_per_image_and_flags_unreadable_ones(ws, run_path):
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    at.slider[0].set_value(2).run()
    at.file_uploader[0].set_value(
        [
            ("red.png", image_bytes((220, 40, 40), seed=99), "image/png"),
            ("blue.jpg", image_bytes((40, 80, 230), seed=98, fmt="JPEG"), "image/jpeg"),
            ("broken.png", b"not an image", "image/png"),
        ]
    ).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    for chart in charts:  # two classes shown per image, most probable first
        (bars,) = json.loads(chart.proto.spec)["data"]
        assert len(bars["y"]) == 2 and bars["x"][0] >= bars["x"][1]
    assert "broken.png" in texts(at.warning)


def test_predict_a_zip_gives_a_table_and_a_csv(ws, run_path, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("new/a.png", image_bytes((220, 40, 40), seed=7))
        archive.writestr("new/deeper/b.png", image_bytes((40, 200, 60), seed=8))
        archive.writestr("new/notes.txt", "not an image")
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    at.file_uploader[1].set_value(("new.zip", buffer.getvalue(), "application/zip"))
    button(at, "Predict all").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(table["image"]) == ["new/a.png", "new/deeper/b.png"]
    assert set(table["predicted_label"]) <= set(CLASSES)
    assert [d.label for d in at.get("download_button")] == ["Download CSV"]


def test_predict_a_folder_path_and_explain_bad_ones(ws, run_path, dataset):
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    folder_input = next(t for t in at.text_input if t.label == "Or a folder on this computer")
    folder_input.set_value(str(dataset / "red"))
    button(at, "Predict all").click().run()
    assert not at.exception
    assert len(at.dataframe[0].value) == CLASSES["red"]

    folder_input = next(t for t in at.text_input if t.label == "Or a folder on this computer")
    folder_input.set_value(str(dataset / "nowhere"))
    button(at, "Predict all").click().run()
    assert not at.exception
    assert "is not a folder" in texts(at.error)


# ----------------------------------------------------------------------------- export


def test_export_offers_the_zip_and_builds_model_files_on_request(ws, run_path):
    at = open_page(ui_state.EXPORT_PAGE, **{ui_state.RUN_KEY: str(run_path)})
    assert [d.label for d in at.get("download_button")] == ["Download run (.zip)"]
    assert "test_efficientnet" in texts(at.code)  # how to load it
    assert "TorchScript" not in " ".join(b.label for b in at.button)  # deprecated: CLI only
    button(at, "Build torch.export (.pt2) file").click().run()
    assert not at.exception
    assert [d.label for d in at.get("download_button")] == [
        "Download run (.zip)",
        "Download torch.export (.pt2) file",
    ]
    # Its size and the check's result, measured on the run's own images.
    shown = texts(at.success)
    assert " KB · check: max abs difference vs PyTorch on " in shown and "— passed" in shown
