"""``tl-studio export --format web``: the one-file page from the command line."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder
from tests.test_cli import TINY_TRAIN_FLAGS, run_cli
from tl_core.cli.main import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-cli")
    data = make_image_folder(root / "data", TINY_CLASSES)
    assert main(["train", str(data), "--out", str(root / "run"), *TINY_TRAIN_FLAGS]) == 0
    return root / "run"


def test_an_html_out_file_writes_a_checked_web_page(capsys, run, tmp_path):
    code, out, err = run_cli(capsys, "export", run, "--out", tmp_path / "model.html")
    assert code == 0, err
    page = (tmp_path / "model.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and 'id="tl-results"' in page
    assert "Wrote the web page to" in out and "Check:" in out
    assert "Checking the page's answers" in err  # the slow steps are said on stderr


def test_quantized_is_refused_for_other_formats(capsys, run, tmp_path):
    code, _, err = run_cli(
        capsys, "export", run, "--format", "zip", "--quantized", "--out", tmp_path / "r.zip"
    )
    assert code == 2 and "--quantized applies to the web page only" in err
    assert not (tmp_path / "r.zip").exists()
