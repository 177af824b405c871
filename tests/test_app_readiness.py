"""The Data page's readiness check: the split and its leakage, as ``tl-studio check`` says them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app_pages.ui import state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder
from tl_core.analysis import check_health
from tl_core.data import sample_dataset_path, scan_dataset
from tl_core.runs import WORKSPACE_ENV, Workspace


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


def test_the_data_page_says_how_the_sample_will_be_split(ws):
    health = check_health(scan_dataset(sample_dataset_path()))
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(sample_dataset_path())})
    shown = texts(at.success)
    assert "Ready to train" in shown
    assert health.split_sentence() in shown
    assert f"{health.split[1]} validation images" in shown


def test_the_split_follows_the_validation_share_saved_on_the_model_page(ws):
    settings = {"val_fraction": 0.5, "seed": 0}
    health = check_health(scan_dataset(sample_dataset_path()), val_fraction=0.5)
    at = open_page(
        state.DATA_PAGE,
        **{state.DATASET_KEY: str(sample_dataset_path()), state.CONFIG_KEY: settings},
    )
    assert health.split_sentence() in texts(at.success)
    default = check_health(scan_dataset(sample_dataset_path()))
    assert default.split != health.split  # so the page could not pass with the defaults


def test_the_data_page_says_how_many_copies_the_split_keeps_out_of_validation(ws, tmp_path):
    data = make_image_folder(tmp_path / "copies", {"cats": 10, "dogs": 10})
    for i in range(5):  # half of each class is an identical copy of the other half
        for name in ("cats", "dogs"):
            shutil.copy(data / name / f"{name}_{i}.png", data / name / f"{name}_{i + 5}.png")
    health = check_health(scan_dataset(data))
    assert health.leakage is not None and health.leakage.before > 0
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(data)})
    assert not at.exception
    assert health.leakage_sentence() in texts(at.info)
    assert f"{health.leakage.before} under a split that ignores copies" in texts(at.info)
