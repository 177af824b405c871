"""Pages that never crash and never lose the user's place (issue: never a crashed page).

Two dataset reports on one page, a run deleted while a page shows it, every callback behind
the safety net, and the live view at its edges (paused, ending, the sidebar's run line).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from app_pages.ui import run_picker, state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder, make_zip
from tests.training import tiny_config, train_tiny_run
from tl_core.common import PHASE_TRAINING
from tl_core.jobs import lr_find_job
from tl_core.runs import WORKSPACE_ENV, Workspace, summarize_run

APP_PAGES = Path(__file__).resolve().parents[1] / "app_pages"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


# ----------------------------------------------------------------------------- widget keys


def test_a_one_class_zip_beside_the_current_dataset_draws_both_reports(ws, tmp_path):
    current = make_image_folder(tmp_path / "current", {"cats": 3, "dogs": 3})
    single = make_image_folder(tmp_path / "single", {"cats": 4})
    archive = make_zip(single, tmp_path / "single.zip", wrap="single")
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(current)})
    at.file_uploader[0].set_value(("single.zip", archive.read_bytes(), "application/zip")).run()
    assert not at.exception
    assert "Something went wrong" not in texts(at.error)
    # The rejected zip's report and the current dataset's report, each with its chart.
    assert len(at.get("plotly_chart")) == 2
    assert at.session_state[state.DATASET_KEY] == str(current)


# ----------------------------------------------------------------------------- a reload


def test_a_reload_after_the_finder_comes_back_to_its_dataset_and_curve(ws, tmp_path):
    other = make_image_folder(tmp_path / "other", {"red": 4, "green": 4})
    data = make_image_folder(tmp_path / "tiny", {"red": 6, "green": 6, "blue": 6})
    trained = state.scheduler().start(tiny_config(other, epochs=1))
    assert trained.wait(120).status == "completed"
    # The settings as the Model page keeps them (its sizes start at 96 px: 32 becomes the default).
    config = tiny_config(data, freeze="all", image_size=None)
    finder = state.scheduler().submit(lr_find_job(config))
    assert finder.wait(120).status == "completed"
    # A reload: a fresh session, with nothing in it. It comes back on the finder's dataset and
    # settings (the latest training job's dataset is another), with the finder's curve.
    at = open_page(state.MODEL_PAGE)
    assert at.session_state[state.DATASET_KEY] == str(data)
    assert any("Learning-rate finder" in c.proto.spec for c in at.get("plotly_chart"))
    assert any(b.label.startswith("Use ") for b in at.button)


def test_a_reload_comes_back_to_a_finder_waiting_behind_another_training(ws, tmp_path):
    other = make_image_folder(tmp_path / "other", {"red": 4, "green": 4})
    data = make_image_folder(tmp_path / "tiny", {"red": 6, "green": 6, "blue": 6})
    training = state.scheduler().start(tiny_config(other, epochs=500))
    training.pause()  # another session's training, holding the line
    finder = state.scheduler().submit(lr_find_job(tiny_config(data, image_size=None)))
    try:
        at = open_page(state.MODEL_PAGE)  # a reload: a fresh session
        assert at.session_state[state.DATASET_KEY] == str(data)
        assert "Queued, 2nd in line" in texts(at.info)
    finally:
        state.scheduler().cancel(finder.job_id)
        training.stop()
        training.wait(120)


# ----------------------------------------------------------------------------- callbacks

# A widget callback's own argument, or a callback made through feedback.callback(...).
CALLBACK = re.compile(r"\bon_(?:change|click)=(?!\s*(?:feedback\.)?callback\(|\s*\"ignore\")")


def test_every_callback_in_the_pages_runs_inside_the_safety_net():
    unguarded = [
        f"{path.relative_to(APP_PAGES.parent)}:{number}: {line.strip()}"
        for path in sorted(APP_PAGES.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if CALLBACK.search(line)
    ]
    assert unguarded == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory)


@pytest.fixture
def two_runs(ws, trained) -> tuple[Path, Path]:
    runs = tuple(ws.runs / name for name in ("first-run", "second-run"))
    for run in runs:
        shutil.copytree(trained, run)
    return runs


def note_field(at):
    return next(t for t in at.text_input if t.label == "Note")


def run_picker_of(at):
    return next(s for s in at.selectbox if s.label == "Run")


DELETED = "The run first-run was deleted (in another tab or on disk); pick another run."


def test_a_note_on_a_run_deleted_in_another_tab_is_explained_not_a_crash(ws, two_runs):
    first, second = two_runs
    at = open_page(state.EXPORT_PAGE, **{state.RUN_KEY: str(first)})
    assert run_picker_of(at).value == str(first)
    shutil.rmtree(first)  # deleted in another tab
    note_field(at).set_value("clean data").run()
    assert not at.exception
    assert DELETED in texts(at.error)
    # The picker waits for the user's choice rather than moving to the other run on its own,
    # and the sidebar says the same.
    assert run_picker_of(at).value is None
    assert "Run: first-run was deleted" in texts(at.sidebar.caption)
    assert state.RUN_KEY not in at.session_state
    assert not (second / "note.txt").exists()

    at.run()  # any other click: still explained, still no other run
    assert DELETED in texts(at.error) and run_picker_of(at).value is None
    run_picker_of(at).set_value(str(second)).run()
    assert not at.exception
    assert DELETED not in texts(at.error)
    assert at.session_state[state.RUN_KEY] == str(second)
    assert f"Run: {summarize_run(second).title}" in texts(at.sidebar.caption)


def test_a_callback_that_fails_is_explained_in_words(ws, two_runs, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    at = open_page(state.EXPORT_PAGE, **{state.RUN_KEY: str(two_runs[0])})
    monkeypatch.setattr(run_picker, "write_note", broken)
    note_field(at).set_value("clean data").run()
    assert not at.exception
    assert "RuntimeError: disk on fire" in texts(at.error)
    assert "safe on disk" in texts(at.info)


def test_the_sidebar_names_the_run_by_the_title_the_lists_show(ws, two_runs):
    at = open_page(state.EXPORT_PAGE, **{state.RUN_KEY: str(two_runs[1])})
    title = summarize_run(two_runs[1]).title
    assert run_picker_of(at).format_func(run_picker_of(at).value) == title
    assert f"Run: {title}" in texts(at.sidebar.caption)


# ----------------------------------------------------------------------------- the live view


@pytest.fixture
def finished_job(ws, tmp_path):
    data = make_image_folder(tmp_path / "colours", {"red": 4, "green": 4})
    job = state.scheduler().start(tiny_config(data, epochs=1))
    assert job.wait(120).status == "completed"
    return job


def train_page(job):
    config = job.config
    return open_page(
        state.TRAIN_PAGE,
        **{
            state.JOB_KEY: job.job_id,
            state.DATASET_KEY: config.data,
            state.CONFIG_KEY: state.settings_of(config),
        },
    )


def progress_text(at) -> str:
    return " ".join(bar.proto.text for bar in at.get("progress"))


def test_a_paused_job_shows_its_eta_and_speed_on_hold(finished_job, monkeypatch):
    epoch = "Epoch 3 of 10 in progress"
    paused = dataclasses.replace(
        finished_job.snapshot(),
        status="paused",
        message=epoch,
        activity=epoch,
        phase=PHASE_TRAINING,
        caches_features=False,
        epoch=2,
        total_epochs=10,
        images_per_second=120.0,
        eta_seconds=42.0,
        finished_at=None,
    )
    monkeypatch.setattr(finished_job, "snapshot", lambda: paused)
    at = train_page(finished_job)
    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["ETA"] == "on hold"
    assert metrics["Training images/s"] == "paused"
    assert f"Paused · {epoch} · ETA on hold" in progress_text(at)
    assert "Resume" in {b.label for b in at.button}


def test_one_script_run_reads_the_job_once(finished_job, monkeypatch):
    reads = []
    read = finished_job.snapshot
    monkeypatch.setattr(finished_job, "snapshot", lambda: reads.append(1) or read())
    at = train_page(finished_job)
    # The sidebar before and after the page, the status line and the buttons: one state.
    assert len(reads) == 1
    assert "completed" in texts(at.sidebar.markdown)
    at.run()
    assert len(reads) == 2


def test_a_job_that_just_ended_is_not_called_running_beside_start(finished_job, monkeypatch):
    # The moment a run ends: its state says completed, and the scheduler has not yet taken it
    # out of its line. The Start note must follow the job's state, as the status line does.
    monkeypatch.setattr(state.scheduler(), "line", lambda: [finished_job])
    at = train_page(finished_job)
    assert not at.exception
    assert "Finished" in texts(at.success)
    assert "Another job is running" not in texts(at.caption)
    assert not next(b for b in at.button if b.label == "Start training").disabled
