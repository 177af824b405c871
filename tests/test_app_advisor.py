"""The Model page's "Which backbone?" panel, driven headlessly with AppTest.

The candidates are stand-ins with known features (``tests.test_advisor.KnownFeatures``), so a
comparison takes a fraction of a second. AppTest reruns only when asked: tests wait on the
comparison itself, then run the page once more. A gate holds a comparison inside its first
backbone for as long as a test needs to see it running.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from app_pages.panels import advisor as advisor_panel
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.test_advisor import KnownFeatures
from tests.training import tiny_config
from tl_core.analysis import advisor
from tl_core.common import WeightsError, escape_markdown
from tl_core.jobs import comparison_job

CLASSES = {"red": 6, "green": 6, "blue": 6}
# A catalog backbone plays the one whose features encode the colour; test_vit plays noise.
SIGNAL, NOISE = "tf_efficientnet_lite2", "test_vit"


def colour_factory(name: str, num_classes: int):
    return KnownFeatures(informative=name == SIGNAL), "test features"


class Gate:
    """A model factory that holds each candidate until the test opens it."""

    def __init__(self):
        self.opened = threading.Event()
        self.calls = 0

    def __call__(self, name: str, num_classes: int):
        self.calls += 1
        assert self.opened.wait(60), "the test never opened the gate"
        return colour_factory(name, num_classes)


@pytest.fixture(scope="module")
def ws(module_workspace):
    return module_workspace


@pytest.fixture
def dataset(ws, tmp_path: Path) -> str:
    """A dataset of its own per test: the process keeps one comparison per dataset."""
    return str(make_image_folder(tmp_path / "colours", CLASSES))


@pytest.fixture
def candidates(monkeypatch: pytest.MonkeyPatch):
    """Compares the two stand-ins instead of the backbones with weights on this computer."""
    monkeypatch.setattr(advisor, "candidate_names", lambda backbones: ([NOISE, SIGNAL], []))
    monkeypatch.setattr(advisor, "pretrained_factory", colour_factory)


@pytest.fixture
def gate(candidates, monkeypatch: pytest.MonkeyPatch):
    held = Gate()
    monkeypatch.setattr(advisor, "pretrained_factory", held)
    yield held
    held.opened.set()  # a failed test must not leave a comparison running for the next
    if (running := state.scheduler().active()) is not None:
        running.wait(60)


def plain(elements) -> str:
    """The elements' text as read on screen (names are shown with Markdown escaped)."""
    return texts(elements).replace("\\", "")


def use(name: str) -> str:
    return f"Use {escape_markdown(name)}"


def model_page(dataset: str):
    return open_page(state.MODEL_PAGE, **{state.DATASET_KEY: dataset})


def test_a_comparison_ranks_the_candidates_and_use_sets_the_backbone(ws, dataset, candidates):
    at = model_page(dataset)
    assert not at.dataframe  # nothing compared yet

    button(at, advisor_panel.COMPARE_LABEL).click().run()
    assert not at.exception
    comparison = advisor_panel.latest_comparison(dataset)
    assert comparison.wait(60).status == "completed"
    at.run()

    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["backbone"]) == [SIGNAL, NOISE]  # one row per candidate, best first
    # The band as a reader sees it: the mean, then the range over the folds.
    band = frame["expected accuracy, head only"].iloc[0]
    assert re.fullmatch(r"\d+ % \((\d+–\d+ %|in every fold)\)", band)
    assert f"Recommended: {SIGNAL}." in plain(at.success)
    assert "An estimate from 18 of your images, not a guarantee" in plain(at.caption)
    assert f"{NOISE} scores" in plain(at.warning)
    assert any(ws.feature_cache.glob("*.safetensors"))  # kept in the workspace for later
    assert not button(at, advisor_panel.COMPARE_LABEL).disabled  # finished: it can run again

    button(at, use(SIGNAL)).click().run()
    assert not at.exception
    assert at.selectbox(key=state.BACKBONE_KEY).value == SIGNAL
    assert at.session_state[state.CONFIG_KEY]["backbone"] == SIGNAL
    assert button(at, use(SIGNAL)).disabled  # in use now


def test_use_sets_a_backbone_outside_the_catalog_as_a_timm_name(ws, dataset, monkeypatch):
    monkeypatch.setattr(advisor, "candidate_names", lambda backbones: (["test_efficientnet"], []))
    monkeypatch.setattr(advisor, "pretrained_factory", lambda name, n: colour_factory(SIGNAL, n))
    at = model_page(dataset)
    button(at, advisor_panel.COMPARE_LABEL).click().run()
    assert advisor_panel.latest_comparison(dataset).wait(60).status == "completed"
    at.run()

    button(at, use("test_efficientnet")).click().run()
    assert not at.exception
    assert at.text_input(key=state.TIMM_NAME_KEY).value == "test_efficientnet"
    assert at.session_state[state.CONFIG_KEY]["backbone"] == "test_efficientnet"


def test_one_comparison_at_a_time_a_reload_finds_it_and_stop_ends_it(ws, dataset, gate):
    at = model_page(dataset)
    other_tab = model_page(dataset)  # its button is drawn before the comparison starts
    button(at, advisor_panel.COMPARE_LABEL).click().run()
    assert not at.exception
    comparison = advisor_panel.latest_comparison(dataset)
    assert comparison.is_active
    assert button(at, advisor_panel.COMPARE_LABEL).disabled
    assert advisor_panel.RUNNING_REASON in texts(at.caption)

    button(other_tab, advisor_panel.COMPARE_LABEL).click().run()  # a second click starts nothing
    assert not other_tab.exception
    assert advisor_panel.latest_comparison(dataset) is comparison and gate.calls == 1
    assert button(other_tab, advisor_panel.COMPARE_LABEL).disabled

    reloaded = model_page(dataset)  # a fresh session, as after a browser reload
    button(reloaded, "Stop").click().run()  # before the first batch: the gate still holds
    assert not reloaded.exception
    (progress,) = reloaded.get("progress")
    assert progress.proto.text == "Stopping after this batch"
    gate.opened.set()
    assert comparison.wait(60).status == "stopped"
    at.run()
    assert advisor_panel.STOPPED in texts(at.info)
    assert not at.dataframe
    assert gate.calls == 1  # the second candidate was never built
    assert not button(at, advisor_panel.COMPARE_LABEL).disabled


def test_another_datasets_comparison_queues_this_one(ws, dataset, gate, tmp_path):
    # Adapted: the button used to be disabled; the comparison now waits its turn.
    other = str(make_image_folder(tmp_path / "other", CLASSES))
    state.scheduler().submit(comparison_job(other, other, ws.feature_cache))
    at = model_page(dataset)
    assert advisor_panel.latest_comparison(dataset) is None  # its progress is not shown here
    assert not button(at, advisor_panel.COMPARE_LABEL).disabled
    assert "waits its turn, 2nd in line" in texts(at.caption)
    button(at, advisor_panel.COMPARE_LABEL).click().run()
    assert not at.exception
    assert "Queued, 2nd in line, after Backbone comparison on other" in texts(at.info)
    button(at, "Cancel").click().run()
    assert not at.exception
    assert advisor_panel.latest_comparison(dataset) is None


def test_a_comparison_waits_while_a_training_job_runs(ws, dataset, candidates):
    # Adapted: the button used to be disabled; the comparison now queues behind the training.
    at = model_page(dataset)  # drawn before the job starts: the button is enabled
    job = state.scheduler().start(tiny_config(dataset))
    job.pause()  # holds the job active for as long as the test needs
    try:
        button(at, advisor_panel.COMPARE_LABEL).click().run()
        assert not at.exception
        assert advisor_panel.latest_comparison(dataset).is_queued
        compare = button(at, advisor_panel.COMPARE_LABEL)
        assert compare.disabled and advisor_panel.RUNNING_REASON in texts(at.caption)
        assert "Queued, 2nd in line, after Training test_efficientnet" in texts(at.info)
        button(at, "Cancel").click().run()
        assert advisor_panel.latest_comparison(dataset) is None
    finally:
        job.stop()
        job.wait(120)


def test_a_failed_comparison_says_why(ws, dataset, monkeypatch):
    def no_weights(name: str, num_classes: int):
        raise WeightsError(f"No weights for {name} here.")

    monkeypatch.setattr(advisor, "candidate_names", lambda backbones: ([SIGNAL], []))
    monkeypatch.setattr(advisor, "pretrained_factory", no_weights)
    at = model_page(dataset)
    button(at, advisor_panel.COMPARE_LABEL).click().run()
    assert advisor_panel.latest_comparison(dataset).wait(60).status == "failed"
    at.run()
    assert not at.exception
    assert "None of the backbones could be measured" in texts(at.error)
    assert "Install a package with pretrained weights" in texts(at.info)


def test_training_waits_while_backbones_are_compared(ws, dataset, gate):
    at = model_page(dataset)
    button(at, advisor_panel.COMPARE_LABEL).click().run()
    comparison = advisor_panel.latest_comparison(dataset)
    assert comparison.is_active

    # Adapted: Start used to be disabled; the training now waits its turn.
    settings = state.settings_of(tiny_config(dataset))
    train = open_page(state.TRAIN_PAGE, **{state.DATASET_KEY: dataset, state.CONFIG_KEY: settings})
    assert not button(train, "Start training").disabled
    assert "waits its turn, 2nd in line" in texts(train.caption)
    button(train, "Start training").click().run()
    job = state.scheduler().get(train.session_state[state.JOB_KEY])
    assert job.is_queued
    assert "Queued, 2nd in line, after Backbone comparison on" in texts(train.info)

    gate.opened.set()
    assert comparison.wait(60).status == "completed"
    assert job.wait(120).status == "completed"
    train.run()
    assert not button(train, "Start training").disabled
