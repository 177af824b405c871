"""The Export page's web page: build it, download it, share it on the network and stop."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app_pages.panels import web_page
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder
from tests.test_cli import TINY_TRAIN_FLAGS
from tl_core.cli.main import main
from tl_core.runs import Workspace


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture(scope="module")
def run_path(ws, tmp_path_factory) -> Path:
    data = make_image_folder(tmp_path_factory.mktemp("web-app") / "colours", TINY_CLASSES)
    run = ws.runs / "web-run"
    assert main(["train", str(data), "--out", str(run), *TINY_TRAIN_FLAGS]) == 0
    return run


def _fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_the_page_is_built_checked_offered_and_shared_until_stopped(ws, run_path):
    at = open_page(state.EXPORT_PAGE, **{state.RUN_KEY: str(run_path)})
    button(at, "Build web page").click().run()
    assert not at.exception
    assert "Download web page" in [d.label for d in at.get("download_button")]
    assert "Check:" in texts(at.success)
    page = ws.uploads / web_page.WEB_PAGES / "web-run.html"
    assert page.is_file()

    at.toggle[0].set_value(True).run()
    assert not at.exception
    url = re.search(r"http://[\d.]+:\d+/", texts(at.markdown)).group(0)
    status, body = _fetch(url)
    assert status == 200 and body == page.read_bytes()
    assert "only this page" in texts(at.info)
    with pytest.raises(urllib.error.HTTPError):  # nothing but the page
        _fetch(url + "..%2fruns")

    at.toggle[0].set_value(False).run()
    assert not at.exception
    with pytest.raises(urllib.error.URLError):  # stopped: the port is closed
        _fetch(url)
