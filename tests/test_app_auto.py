"""The Train page's "Find a good model for me": the button, the plan, the steps progressing
(from fed snapshots), the decisions with their evidence, and the best run handed on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app_pages.panels import auto
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.test_app_training import progress_text, wait_for
from tests.training import tiny_config, train_tiny_run
from tl_core.jobs import AUTO, Job
from tl_core.runs import Workspace

PLAN_LINES = [
    "1. Rank the backbones on your images: 3 backbones, 120 images each (about 20 s)",
    "2. Try freeze depths: 0, 3, all, 2 epochs each (about 2 min 10 s)",
    "3. Find the learning rate: skipped, it needs about 1 min and 20 s of the searching time "
    "is left.",
    "4. Train the winning recipe: up to 12 epochs, early stopping (about 4 min)",
    "In all about 6 min 30 s of the 10 min budget (measuring this computer took 14 s).",
]
BACKBONE_STEP = {
    "step": "backbones",
    "decision": "tf_efficientnet_lite0: expected head-only accuracy 91 % (86–95 %), about the "
    "same as the highest (tf_efficientnet_lite2, 92 % (88–96 %)), and 2.1 times as fast.",
    "evidence": ["tf_efficientnet_lite2: head-only accuracy 92 % (88–96 %) over folds"],
    "runs": [],
}
FREEZE_STEP = {
    "step": "freeze",
    "decision": "tf_efficientnet_lite0, freeze 3: best of 0/3/all, 94 % (85–98 %).",
    "evidence": ["freeze 0: 88.0% (95 % CI 76%–94%, 50 images)"],
    "runs": ["tf_efficientnet_lite0-freeze-3"],
}


class FedJob(Job):
    """A search whose state the test writes: it runs until released or stopped."""

    def __init__(self, dataset: str):
        super().__init__(AUTO, "Automatic search on colours", dataset)
        self.release = threading.Event()

    def _work(self) -> str:
        while not self.release.wait(0.02):
            if self._control.stop_requested:
                return "stopped"
        return "completed"

    def feed(self, **changes) -> None:
        self._update(**changes)


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def dataset(ws, tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "colours", {"a": 6, "b": 6})


def _page(dataset: Path, **session):
    return open_page(state.TRAIN_PAGE, **{state.DATASET_KEY: str(dataset), **session})


def _fed(dataset: Path) -> FedJob:
    job = FedJob(str(dataset))
    state.scheduler().submit(job)
    return job


def test_the_button_needs_only_a_dataset(ws, dataset):
    at = _page(dataset)
    assert button(at, auto.BUTTON)
    assert at.number_input(key=auto.BUDGET_KEY).value == auto.DEFAULT_MINUTES
    assert "compares the backbones on your images" in texts(at.caption)


def test_the_plan_and_the_step_under_way_show_from_the_snapshot(ws, dataset):
    job = _fed(dataset)
    try:
        job.feed(status="running", result={"budget_seconds": 600, "used_seconds": 5})
        at = _page(dataset, **{auto.AUTO_JOB_KEY: job.job_id})
        assert "Measuring this computer's speed" in progress_text(at)
        live = {
            "budget_seconds": 600,
            "used_seconds": 95,
            "plan_lines": PLAN_LINES,
            "step": "freeze",
            "step_index": 2,
            "step_total": 3,
            "run_label": "freeze 3",
            "steps": [BACKBONE_STEP],
        }
        job.feed(result=live, activity="Epoch 1 of 2 in progress", step=3, total_steps=10)
        at.run()
        shown = texts(at.markdown)
        assert "Try freeze depths: 0, 3, all, 2 epochs each (about 2 min 10 s)" in shown
        assert "Find the learning rate: skipped, it needs about 1 min" in shown
        assert "In all about 6 min 30 s of the 10 min budget" in texts(at.caption)
        progress = progress_text(at)
        assert "Step 2 of 3: Try freeze depths · 1 min 35 s of 10 min used" in progress
        assert "freeze 3: Epoch 1 of 2 in progress" in texts(at.caption)
        assert "2.1 times as fast" in shown  # the decision taken so far
        assert not [b for b in at.button if b.label == auto.BUTTON]  # one search at a time
        button(at, "Stop").click().run()
        wait_for(lambda: job.has_ended)
        assert job.snapshot().status == "stopped"
    finally:
        job.release.set()
        job.wait(10)


def test_the_decisions_and_the_best_run_show_when_it_ends(ws, dataset, tmp_path_factory):
    run = train_tiny_run(tmp_path_factory)
    job = _fed(dataset)
    best = {
        "run": run.name,
        "backbone": "tf_efficientnet_lite0",
        "mode": "fine-tune",
        "freeze": "3",
        "lr": 0.002,
        "augment": "light",
        "val_accuracy": 0.94,
        "val_low": 0.85,
        "val_high": 0.98,
    }
    live = {
        "budget_seconds": 600,
        "used_seconds": 570,
        "plan_lines": PLAN_LINES,
        "steps": [BACKBONE_STEP, FREEZE_STEP],
        "best": best,
        "not_tried": ["Find the learning rate: it needs about 1 min."],
    }
    job.feed(result=live, result_run=str(run))
    job.release.set()
    job.wait(10)
    at = _page(dataset, **{auto.AUTO_JOB_KEY: job.job_id})
    shown = texts(at.markdown)
    assert "Found a model in 9 min 30 s of the 10 min budget" in texts(at.success)
    assert "freeze 3: best of 0/3/all, 94 % (85–98 %)" in shown
    assert "freeze 0: 88.0% (95 % CI 76%–94%, 50 images)" in texts(at.caption)
    assert "Not tried: Find the learning rate" in texts(at.caption)
    assert f"Best run: {run.parent.name}/{run.name}" in shown
    assert "validation accuracy 94.0% (95 % CI 85%–98%)" in shown
    assert at.session_state[state.RUN_KEY] == str(run)  # Predict and Evaluate open it
    assert button(at, auto.BUTTON)  # another search can start


def test_one_click_queues_a_search_of_the_saved_settings(ws, dataset):
    config = tiny_config(dataset)  # random weights: only its own backbone is searched
    at = _page(dataset, **{state.CONFIG_KEY: config.to_dict()})
    at.number_input(key=auto.BUDGET_KEY).set_value(2.0).run()
    button(at, auto.BUTTON).click().run()
    assert not at.exception, at.exception
    job = state.scheduler().get(at.session_state[auto.AUTO_JOB_KEY])
    try:
        assert job.kind == AUTO
        assert job.settings.budget_seconds == 120
        assert job.settings.backbones == ("test_efficientnet",)
        assert job.settings.base.image_size == 32
    finally:
        job.stop()
        job.wait(120)
