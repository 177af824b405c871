"""What the app loads and how it lays out pictures, checked without a browser."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit
from streamlit.commands.page_config import _get_favicon_string
from streamlit.testing.v1 import AppTest

from app_pages.ui import dataset_view, state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder
from tl_core.runs import WORKSPACE_ENV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))


def test_the_favicon_is_a_file_shipped_with_the_app_and_sent_inline(ws, monkeypatch):
    calls: list[dict] = []
    original = streamlit.set_page_config

    def record(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(streamlit, "set_page_config", record)
    open_page(state.DATA_PAGE)
    (config,) = calls
    icon = Path(config["page_icon"])
    assert icon.is_file() and icon.is_relative_to(REPO)
    # What the browser is told to show: inline data, never a URL to fetch (a ":material/...:"
    # icon becomes a fonts.gstatic.com address, which fails offline).
    assert _get_favicon_string(config["page_icon"]).startswith("data:image/svg+xml;base64,")


def _grid(paths):  # AppTest runs this function's source alone: no outer names, no annotations
    from app_pages.ui import dataset_view

    dataset_view.image_grid(paths)


def test_thumbnails_sit_apart_in_a_wrapping_row_with_one_line_names(tmp_path):
    folder = make_image_folder(tmp_path / "x", {"a_long_class_name_to_shorten": 3})
    paths = sorted(folder.rglob("*.png"))
    at = AppTest.from_function(_grid, args=(paths,), default_timeout=60).run()
    assert not at.exception
    (row,) = at.main.children.values()
    assert row.proto.flex_container.direction == row.proto.flex_container.HORIZONTAL
    assert row.proto.flex_container.wrap and row.proto.flex_container.gap_config.gap_size
    captions = [img.caption for image in at.image for img in image.proto.imgs]
    assert len(at.image) == len(captions) == 3  # one cell per thumbnail, so gaps apply
    limit = dataset_view.THUMB_SIZE // dataset_view.CAPTION_CHAR_PX
    assert all(len(c) <= limit and "…" in c for c in captions)
    assert captions[0].endswith("0.png") and captions[0].startswith("a_long")


def test_a_full_disk_on_a_page_is_a_sentence_not_a_type_name(ws, monkeypatch):
    import errno

    from tl_core.runs import Workspace

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/work/ws/datasets")

    # The page's own failure path (not one it catches): the app's last safety net answers.
    monkeypatch.setattr(Workspace, "list_datasets", disk_full)
    at = open_page(state.DATA_PAGE)
    assert "The disk is full" in texts(at.error)
    assert "Free some disk space" in texts(at.info)
    assert "OSError" not in texts(at.error)
