"""The sidebar's job and run lines, drawn around the page run."""

from __future__ import annotations

from app_pages.ui import state
from tests.apptest_helpers import open_page, texts
from tests.training import tiny_config
from tl_core.runs import WORKSPACE_ENV


def test_a_page_that_stops_early_still_shows_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    job = state.scheduler().start(tiny_config(tmp_path / "missing"))
    assert job.wait(60).status == "failed"
    # No run has weights, so Evaluate ends in st.stop(): the lines drawn before it stay.
    at = open_page(state.EVALUATE_PAGE)
    assert "No trained run yet" in texts(at.info)
    sidebar = texts(at.sidebar.markdown)
    assert f"**Job** {job.run_dir.name} · failed" in sidebar
    assert sidebar.count("**Job**") == 1
