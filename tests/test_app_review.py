"""The Data page's review of suspected label errors: found with the real default backbone,
fixed by a relabel saved as a new dataset version, the user's files untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app_pages.panels import decisions, review
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.test_dataset_versions import fingerprints
from tl_core.data import read_version, scan_dataset
from tl_core.runs import Workspace

pytestmark = pytest.mark.slow  # the real default backbone computes the features


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def mislabelled(ws) -> Path:
    """Red, green and blue images, one red image filed under green."""
    root = make_image_folder(ws.datasets / "colours", {"red": 7, "green": 6, "blue": 6})
    shutil.move(root / "red" / "red_6.png", root / "green" / "odd_one.png")
    return root


def test_a_flipped_label_is_found_and_relabelled_into_a_new_version(ws, mislabelled):
    before = fingerprints(mislabelled)
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(mislabelled)})
    button(at, review.FIND_LABEL).click().run()
    search = review.latest_search(str(mislabelled))
    snap = search.wait(300)
    assert snap.status == "completed", snap.error
    at.run()
    assert not at.exception, at.exception

    assert "green/odd_one.png: labelled **green**, looks like **red**" in texts(at.caption)
    save = button(at, f"{decisions.SAVE_LABEL} (0 decisions)")
    assert save.disabled
    choice = decisions.widget_key(review.SCOPE, str(mislabelled), "green/odd_one.png")
    at.selectbox(key=choice).set_value("Relabel as red").run()
    button(at, f"{decisions.SAVE_LABEL} (1 decision)").click().run()
    assert not at.exception, at.exception

    version_path = Path(at.session_state[state.DATASET_KEY])
    assert version_path == ws.datasets / "colours-v2"
    assert "Saved version 2 of colours: 1 relabelled" in texts(at.success)
    assert "Version 2 of colours" in texts(at.caption)
    assert fingerprints(mislabelled) == before  # the user's files are untouched
    labels = {item.path.name: item.label for item in scan_dataset(version_path).items}
    assert labels["odd_one.png"] == "red"
    assert read_version(version_path).decisions["green/odd_one.png"].label == "red"
