"""The Model page's training modes, learning-rate finder and augmentation preview (AppTest)."""

from __future__ import annotations

import pytest

from app_pages.panels import recipes
from app_pages.panels import settings as settings_panel
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.training import tiny_config
from tl_core.config import FEATURE_EXTRACTION, FINE_TUNE, FULL_FINE_TUNE, GRADUAL
from tl_core.jobs import LR_FIND
from tl_core.training import MODE_ADVICE, MODE_LABELS


@pytest.fixture(scope="module")
def ws(module_workspace):
    return module_workspace


@pytest.fixture
def dataset(ws, tmp_path) -> str:
    return str(make_image_folder(tmp_path / "tiny", {"red": 6, "green": 6, "blue": 6}))


def tiny_page(dataset: str, **settings):
    """The Model page with the tiny test backbone saved, so every model builds in a moment."""
    config = tiny_config(dataset, freeze="all", augment="auto", **settings)
    return open_page(
        state.MODEL_PAGE,
        **{state.DATASET_KEY: dataset, state.CONFIG_KEY: state.settings_of(config)},
    )


def mode_radio(at):
    return at.radio(key="model_mode")


def saved(at) -> dict:
    return at.session_state[state.CONFIG_KEY]


def test_each_mode_saves_its_freeze_and_says_when_to_use_it(ws, dataset):
    at = tiny_page(dataset)
    radio = mode_radio(at)
    assert radio.value == FEATURE_EXTRACTION
    assert radio.options == list(MODE_LABELS.values())
    assert MODE_ADVICE[FEATURE_EXTRACTION] in texts(at.caption)
    assert not [s for s in at.slider if s.key and s.key.startswith("model_")]  # no depth to set

    radio.set_value(FINE_TUNE).run()
    assert not at.exception
    slider = at.slider(key="model_frozen")
    assert (slider.min, slider.max, slider.value) == (1, 5, 5)  # 6 groups: the top one trains
    slider.set_value(2).run()
    assert (saved(at)["mode"], saved(at)["freeze"]) == (FINE_TUNE, "2")
    assert MODE_ADVICE[FINE_TUNE] in texts(at.caption)

    mode_radio(at).set_value(FULL_FINE_TUNE).run()
    assert (saved(at)["mode"], saved(at)["freeze"]) == (FULL_FINE_TUNE, "none")

    mode_radio(at).set_value(GRADUAL).run()
    next(n for n in at.number_input if n.label == "Epochs").set_value(4).run()
    assert not at.exception
    assert (saved(at)["mode"], saved(at)["freeze"]) == (GRADUAL, "none")
    assert "Gradual unfreezing in 4 stages: head only (1 epoch)" in texts(at.caption)
    at.slider(key="model_gradual_frozen").set_value(3).run()
    assert (saved(at)["mode"], saved(at)["freeze"]) == (GRADUAL, "3")
    assert (
        "5/6 groups frozen (1 epoch), 4/6 groups frozen (1 epoch), 3/6 groups frozen (1 epoch)"
        in texts(at.caption)
    )

    next(n for n in at.number_input if n.label == "Epochs").set_value(1).run()
    assert "at least 2 epochs" in texts(at.error)  # explained, and not saved
    assert saved(at)["epochs"] == 4


def test_the_advanced_settings_reach_the_saved_config(ws, dataset):
    at = tiny_page(dataset)
    at.select_slider(key="settings_lr_spread").set_value(0.01).run()
    at.select_slider(key="settings_weight_decay").set_value(0.0).run()
    at.number_input(key="settings_warmup").set_value(0.5).run()
    at.slider(key="settings_label_smoothing").set_value(0.1).run()
    assert not at.exception
    config = saved(at)
    assert config["backbone_lr_scale"] == 0.01 and config["weight_decay"] == 0.0
    assert config["warmup_epochs"] == 0.5 and config["label_smoothing"] == pytest.approx(0.1)


def test_the_finder_plots_a_curve_and_its_rate_fills_the_setting(ws, dataset):
    at = tiny_page(dataset)
    button(at, recipes.FINDER_LABEL).click().run()
    assert not at.exception
    # The finder is a job now, like training: the page shows its curve once it has ended.
    finder = state.scheduler().latest((LR_FIND,))
    assert finder.wait(120).status == "completed"
    at.run()
    assert any("Learning-rate finder" in c.proto.spec for c in at.get("plotly_chart"))
    use = next(b for b in at.button if b.label.startswith("Use "))
    rate = float(use.label.removeprefix("Use "))
    assert 1e-7 <= rate <= 10
    use.click().run()
    assert not at.exception
    assert saved(at)["lr"] == rate
    assert at.select_slider(key="settings_lr").value == rate  # the widget shows it too
    assert next(b for b in at.button if b.label.startswith("Use ")).disabled  # in use now


def test_the_finder_waits_while_a_training_job_runs(ws, dataset):
    at = tiny_page(dataset)
    job = state.scheduler().start(tiny_config(dataset))
    job.pause()  # holds the job active for as long as the test needs
    try:
        button(at, recipes.FINDER_LABEL).click().run()
        assert not at.exception
        assert button(at, recipes.FINDER_LABEL).disabled
        # Adapted: the finder used to be refused; it now waits in line behind the training.
        assert recipes.BUSY_REASON in texts(at.caption)
        assert "Queued, 2nd in line, after Training test_efficientnet" in texts(at.info)
        assert recipes.RESULT_KEY not in at.session_state
        button(at, "Cancel").click().run()
        assert not at.exception and not button(at, recipes.FINDER_LABEL).disabled
    finally:
        job.stop()
        job.wait(120)


def test_the_preview_shows_each_level_on_the_users_images_and_resamples(ws, dataset):
    at = tiny_page(dataset)
    assert not at.get("image")
    at.toggle(key="settings_augment_preview").set_value(True).run()
    assert not at.exception
    shown = [c.value for c in at.caption if c.value in settings_panel.AUGMENT_LABELS.values()]
    assert shown == [settings_panel.AUGMENT_LABELS[level] for level in ("none", "light", "strong")]
    images = at.get("image")
    assert len(images) == 3 * 3  # one image of each class, through each level
    button(at, "New samples").click().run()
    assert not at.exception
    assert at.session_state[settings_panel.PREVIEW_SEED_KEY] == 1
    assert len(at.get("image")) == 9
