"""The page's address names the session's dataset and run, so a reload brings back the user's own
work, not the newest job of whoever else shares the server (app_pages/ui/address.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.ui import state
from tests.apptest_helpers import APP, button, open_page, texts
from tests.helpers import make_image_folder
from tests.training import tiny_config, train_tiny_run
from tl_core.jobs import lr_find_job
from tl_core.runs import WORKSPACE_ENV, Workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory)


def reload(page: str, **params: str) -> AppTest:
    """A browser reload of ``page`` with ``params`` in its address: a fresh, empty session."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_reload_comes_back_to_the_dataset_its_address_names_not_another_sessions_job(ws):
    mine = make_image_folder(ws.datasets / "mine", {"red": 6, "green": 6, "blue": 6})
    other = make_image_folder(ws.datasets / "other", {"red": 4, "green": 4})
    finder = state.scheduler().submit(lr_find_job(tiny_config(mine, freeze="all", image_size=None)))
    assert finder.wait(120).status == "completed"
    training = state.scheduler().start(tiny_config(other, epochs=500))
    training.pause()  # another person's newer job, still running
    try:
        at = reload(state.MODEL_PAGE, dataset=str(mine))
        assert at.session_state[state.DATASET_KEY] == str(mine)
        # The finder of this dataset and its settings is found again, with its curve.
        assert any("Learning-rate finder" in c.proto.spec for c in at.get("plotly_chart"))
        assert at.query_params["dataset"] == str(mine)
        # Without the address, a fresh session can only guess: it takes up the other job.
        assert reload(state.MODEL_PAGE).session_state[state.DATASET_KEY] == str(other)
    finally:
        training.stop()
        training.wait(120)


def test_a_vanished_or_foreign_dataset_in_the_address_is_explained_and_ignored(ws, tmp_path):
    gone = ws.datasets / "gone"
    at = reload(state.DATA_PAGE, dataset=str(gone))
    assert f"The dataset {gone} named in this page's address no longer exists" in texts(at.error)
    assert state.DATASET_KEY not in at.session_state
    assert "dataset" not in at.query_params  # the address no longer names it

    at = reload(state.DATA_PAGE, dataset="/etc")
    assert "The dataset /etc named in this page's address is not opened" in texts(at.error)
    assert "system folder" in texts(at.error)
    assert state.DATASET_KEY not in at.session_state


def test_a_run_in_the_address_is_restored_and_one_gone_or_elsewhere_is_explained(
    ws, trained, tmp_path
):
    run = ws.runs / "my-run"
    shutil.copytree(trained, run)
    at = reload(state.EXPORT_PAGE, run=str(run))
    assert at.session_state[state.RUN_KEY] == str(run)
    assert next(s for s in at.selectbox if s.label == "Run").value == str(run)

    at = reload(state.EXPORT_PAGE, run=str(ws.runs / "deleted-run"))
    assert "The run deleted-run named in this page's address no longer exists" in texts(at.error)

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained, elsewhere)  # a real run, but not one of this workspace
    at = reload(state.EXPORT_PAGE, run=str(elsewhere))
    assert "is not a run of this workspace" in texts(at.error)
    assert at.session_state[state.RUN_KEY] != str(elsewhere)


def test_the_address_names_the_dataset_and_run_the_user_chooses(ws, trained):
    first = make_image_folder(ws.datasets / "first", {"red": 3, "green": 3})
    make_image_folder(ws.datasets / "second", {"red": 3, "green": 3})
    at = open_page(state.DATA_PAGE)
    next(s for s in at.selectbox if s.label == "Dataset").set_value(str(first))
    button(at, "Use this dataset").click().run()
    assert at.query_params["dataset"] == str(first)

    runs = [ws.runs / name for name in ("run-a", "run-b")]
    for run in runs:
        shutil.copytree(trained, run)
    at.switch_page(state.EXPORT_PAGE).run()
    next(s for s in at.selectbox if s.label == "Run").set_value(str(runs[0])).run()
    assert at.query_params["run"] == str(runs[0])
    assert at.query_params["dataset"] == str(first)  # kept across the page switch
