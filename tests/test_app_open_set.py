"""The pages' "not one of my classes" and calibration: the Predict page's slider, answers and
batch summary, and the Evaluate page's reliability diagram."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app_pages.ui import state
from tests.apptest_helpers import open_page, texts
from tests.conftest import TINY_CLASSES
from tests.helpers import make_image, make_image_folder
from tests.training import tiny_config
from tl_core.inference import OpenSetModel, read_open_set
from tl_core.runs import Workspace
from tl_core.training import train


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def run_path(ws, tmp_path_factory) -> Path:
    data = make_image_folder(tmp_path_factory.mktemp("open-set") / "data", TINY_CLASSES)
    run = ws.runs / "open-set-run"
    train(tiny_config(data, epochs=2), run)
    return run


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_image(color=(120, 60, 200), seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_acceptance_slider_says_what_it_costs_in_validation_images(ws, run_path):
    open_set = read_open_set(run_path)
    at = open_page(state.PREDICT_PAGE, **{state.RUN_KEY: str(run_path)})
    slider = next(s for s in at.slider if s.label.startswith("Share of images"))
    assert slider.value == round(open_set.acceptance * 100)
    slider.set_value(80).run()
    assert not at.exception
    cost = open_set.cost(open_set.threshold_for(0.8), validation_only=True)
    assert cost.text in texts(at.caption)


def test_images_unlike_the_training_images_are_answered_not_one_of_my_classes(
    ws, run_path, monkeypatch
):
    # A threshold below every score: whatever the tiny model sees is "unlike" its images.
    monkeypatch.setattr(OpenSetModel, "threshold_for", lambda self, acceptance: -1.0)
    at = open_page(state.PREDICT_PAGE, **{state.RUN_KEY: str(run_path)})
    at.file_uploader[0].set_value(
        [("a.png", png(1), "image/png"), ("b.png", png(2), "image/png")]
    ).run()
    assert not at.exception
    warned = texts(at.warning)
    assert warned.count("Not one of my classes (closest: ") == 2
    assert "2 of 2 images look unlike what this model was trained on" in warned


def test_evaluate_shows_how_far_to_trust_the_percentages(ws, run_path):
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(run_path)})
    assert not at.exception
    assert "How far to trust the percentages" in [s.value for s in at.subheader]
    assert "Calibration error on 3 images" in texts(at.caption)
