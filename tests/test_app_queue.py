"""The line of jobs in the app: what a restarted server says of the jobs it lost."""

from __future__ import annotations

from app_pages.ui import queue, state
from tests.apptest_helpers import open_page, texts
from tl_core.common import write_json
from tl_core.jobs import QUEUE_FILE
from tl_core.runs import WORKSPACE_ENV, Workspace


def test_jobs_a_stopped_server_left_behind_are_shown_as_interrupted(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    ws = Workspace.from_env()
    # What the server that stopped had written: one job training, one waiting behind it.
    lost = [
        {"job_id": "a1", "kind": "train", "title": "Training net on cats", "status": "running"},
        {"job_id": "b2", "kind": "sweep", "title": "Sweep net on cats", "status": "queued"},
    ]
    write_json(ws.root / QUEUE_FILE, {"jobs": lost})

    at = open_page(state.DATA_PAGE)
    notices = texts(at.sidebar.warning)
    assert (
        "Training net on cats**: Interrupted: the server stopped while this job was running; "
        "start it again." in notices
    )
    assert "while this job was queued; start it again." in notices

    next(b for b in at.sidebar.button if b.label == queue.DISMISS_LABEL).click().run()
    assert not at.exception
    assert "Training net on cats" not in texts(at.sidebar.warning)
    assert "Sweep net on cats" in texts(at.sidebar.warning)
    assert not state.scheduler().line()  # nothing lost runs again by itself
