"""The Train page's experiments: a freeze-depth sweep and a transfer check launched from the page,
followed while they run, and read when they end (the best depth adopted with one click)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_pages.panels import groups
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.test_app_training import progress_text, wait_for
from tests.test_transfer import pretrained_config, weights_file
from tests.training import tiny_config
from tl_core.analysis import read_sweep
from tl_core.jobs import SWEEP, TRANSFER_CHECK
from tl_core.runs import Workspace

CLASSES = {"red": 6, "green": 6, "blue": 6}
SWEEP_BUTTON = "Run a freeze sweep"
TRANSFER_BUTTON = "Run a transfer check"


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def dataset(ws, tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "colours", CLASSES)


def train_page(dataset: Path, config) -> object:
    return open_page(
        state.TRAIN_PAGE, **{state.DATASET_KEY: str(dataset), state.CONFIG_KEY: config.to_dict()}
    )


def finish(at) -> object:
    """Waits for the session's job to end, then redraws the page once."""
    job = state.scheduler().get(at.session_state[state.JOB_KEY])
    snap = job.wait(180)
    at.run()
    assert not at.exception, at.exception
    return snap


def test_random_weights_cannot_be_transfer_checked_and_the_page_says_why(ws, dataset):
    at = train_page(dataset, tiny_config(dataset))  # pretrained=False
    assert button(at, TRANSFER_BUTTON).disabled
    assert "Turn pretrained weights on" in texts(at.caption)
    assert not button(at, SWEEP_BUTTON).disabled


def test_a_sweep_needs_two_depths(ws, dataset):
    at = train_page(dataset, tiny_config(dataset))
    at.multiselect(key=groups.SWEEP_DEPTHS_KEY).set_value(["all"]).run()
    assert button(at, SWEEP_BUTTON).disabled
    assert "Pick at least two depths to compare." in texts(at.caption)


def test_a_sweep_from_the_page_charts_each_depth_and_adopts_the_best(ws, dataset):
    config = tiny_config(dataset, freeze="none", epochs=4)
    at = train_page(dataset, config)
    at.multiselect(key=groups.SWEEP_DEPTHS_KEY).set_value(["all", "0"]).run()
    at.number_input(key=groups.SWEEP_EPOCHS_KEY).set_value(1).run()
    button(at, SWEEP_BUTTON).click().run()
    assert not at.exception, at.exception
    job = state.scheduler().get(at.session_state[state.JOB_KEY])
    assert job.kind == SWEEP and job.depths == ["0", "all"]
    assert job.config.epochs == 1  # the sweep's short runs; the user's epochs stay 4

    snap = finish(at)
    assert snap.status == "completed", snap.error
    result = read_sweep(snap.group_dir)
    best = result.best
    assert f"Freeze-depth sweep {Path(snap.group_dir).name}" in texts(at.subheader)
    assert result.summary() in texts(at.markdown).replace("\\", "")
    # The sweep chart, then the accuracy and loss of both runs overlaid.
    assert len(at.get("plotly_chart")) == 3
    assert at.session_state[state.RUN_KEY] == str(Path(snap.group_dir) / f"freeze-{best}")

    adopt = button(at, f"Use freeze {best} for training")
    assert not adopt.disabled
    adopt.click().run()
    assert not at.exception, at.exception
    settings = at.session_state[state.CONFIG_KEY]
    assert settings["freeze"] == best and settings["epochs"] == 4
    assert button(at, f"Use freeze {best} for training").disabled
    assert f"Your settings freeze {best}" in texts(at.caption)


def test_a_running_sweep_names_the_run_in_progress_and_stops_the_queue(ws, dataset):
    config = tiny_config(dataset, epochs=500, batch_size=2)
    job = state.scheduler().start(config, SWEEP, ["0", "all"])
    try:
        wait_for(lambda: job.snapshot().step > 0)
        at = train_page(dataset, config)
        assert at.session_state[state.JOB_KEY] == job.job_id
        assert "Run 1 of 2 (freeze 0)" in progress_text(at)
        # Adapted: both used to be disabled while a job runs; now a press queues the job.
        assert not button(at, SWEEP_BUTTON).disabled
        assert not button(at, "Start training").disabled
        assert "a job started now waits its turn, 2nd in line" in texts(at.caption)
        assert "run 1 of 2 (freeze 0)" in texts(at.sidebar.markdown)
        button(at, "Stop").click().run()
    finally:
        job.stop()
    snap = finish(at)
    assert snap.status == "stopped"
    assert "the ones still waiting were not run" in texts(at.warning)
    assert [row.status for row in read_sweep(snap.group_dir).rows] == ["stopped", "not run"]


def test_a_transfer_check_from_the_page_gives_its_verdict(ws, dataset, tmp_path):
    config = pretrained_config(dataset, weights_file(tmp_path / "weights.safetensors"))
    at = train_page(dataset, config)
    button(at, TRANSFER_BUTTON).click().run()
    assert not at.exception, at.exception
    assert state.scheduler().get(at.session_state[state.JOB_KEY]).kind == TRANSFER_CHECK

    snap = finish(at)
    assert snap.status == "completed", snap.error
    verdict = texts([*at.success, *at.info, *at.warning])
    assert "from scratch" in verdict
    metrics = {m.label for m in at.metric}
    assert {"With pretrained weights", "From random weights"} <= metrics
    assert "how familiar your images look" in texts(at.markdown)
    assert len(at.get("plotly_chart")) == 2  # both runs' accuracy and loss, overlaid
