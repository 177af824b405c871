"""Pages that never crash and never lose the user's place (issue: never a crashed page).

Two dataset reports on one page, a run deleted while a page shows it, every callback behind
the safety net, and the live view at its edges (paused, ending, the sidebar's run line).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from app_pages.ui import state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder, make_zip
from tl_core.runs import WORKSPACE_ENV, Workspace

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
