"""The web server's settings and the app's safety nets: no traceback reaches the browser,
uploads are capped, and every uploader says its cap."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from streamlit.config import ShowErrorDetailsConfigOptions
from streamlit.testing.v1 import AppTest

from app_pages.ui import inputs, state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder
from tl_core.runs import WORKSPACE_ENV, is_loopback

REPO = Path(__file__).resolve().parents[1]
APP_SOURCES = [REPO / "app.py", *sorted((REPO / "app_pages").rglob("*.py"))]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))


def server_config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def test_the_config_pins_cross_site_protection_and_hides_error_details():
    config = server_config()
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["enableCORS"] is True
    assert is_loopback(config["server"]["address"])
    # "none": neither the traceback nor the exception's type or text reaches the browser.
    details = config["client"]["showErrorDetails"]
    assert details == ShowErrorDetailsConfigOptions.NONE.value == "none"


def test_the_server_wide_upload_cap_is_the_largest_uploader_cap():
    cap = server_config()["server"]["maxUploadSize"]
    caps = (inputs.ARCHIVE_UPLOAD_MB, inputs.WEIGHTS_UPLOAD_MB, inputs.IMAGE_UPLOAD_MB)
    assert cap == max(caps) <= 1024  # held in memory, several at once: not 2 GB each
    assert cap > inputs.IMAGE_UPLOAD_MB


def test_every_uploader_and_fragment_of_the_app_goes_through_the_shared_helpers():
    for source in APP_SOURCES:
        code = source.read_text()
        if source.name == "feedback.py":  # where the helper wraps Streamlit's fragment
            assert len(re.findall(r"st\.fragment\(", code)) == 1
            assert "st.file_uploader(" not in code
            continue
        if source.name == "inputs.py":  # where the helper wraps Streamlit's uploader
            assert len(re.findall(r"st\.file_uploader\(", code)) == 1
            assert "st.fragment" not in code
            continue
        assert "st.fragment" not in code, source  # would bypass the safety net
        assert "st.file_uploader(" not in code, source  # would have no cap of its own


def test_the_data_page_uploaders_have_their_caps_and_say_them(ws):
    at = open_page(state.DATA_PAGE)
    archive, images = at.file_uploader[0], at.file_uploader[1]
    assert archive.proto.max_upload_size_mb == inputs.ARCHIVE_UPLOAD_MB
    assert "Up to 1 GB per file." in archive.proto.help
    assert images.proto.max_upload_size_mb == inputs.IMAGE_UPLOAD_MB
    assert "Up to 50 MB per file." in images.proto.help


def test_the_weights_uploader_has_its_cap_and_says_it(ws, tmp_path):
    dataset = make_image_folder(tmp_path / "tiny", {"red": 2, "blue": 2})
    at = open_page(state.MODEL_PAGE, **{state.DATASET_KEY: str(dataset)})
    (weights,) = at.file_uploader
    assert weights.proto.max_upload_size_mb == inputs.WEIGHTS_UPLOAD_MB
    assert "Up to 1 GB per file." in weights.proto.help


# ----------------------------------------------------------------------------- fragments
# AppTest runs these functions' source alone: imports inside, no outer names.


def _failing_fragment():
    from app_pages.ui import feedback  # noqa: F811  (AppTest runs this source alone)

    @feedback.fragment(run_every=60.0)
    def live():
        raise RuntimeError("snapshot lost")

    live()


def _fragment_with_a_known_error():
    from app_pages.ui import feedback  # noqa: F811  (AppTest runs this source alone)
    from tl_core.common import RunError

    @feedback.fragment()
    def live():
        raise RunError("The run folder is damaged.", "Train again.")

    live()


def _fragment_that_reruns():
    import streamlit as st

    from app_pages.ui import feedback  # noqa: F811  (AppTest runs this source alone)

    st.session_state.setdefault("runs", 0)
    st.session_state["runs"] += 1

    @feedback.fragment()
    def live():
        if st.session_state["runs"] == 1:
            st.rerun()  # the Train page's fragment reruns the page when the job ends
        st.write("after the rerun")

    live()


def test_an_error_inside_a_fragment_is_a_sentence_not_a_traceback():
    at = AppTest.from_function(_failing_fragment, default_timeout=30).run()
    assert not at.exception  # Streamlit's own handler would show the traceback here
    assert "Something went wrong on this page: RuntimeError: snapshot lost" in texts(at.error)
    assert "safe on disk" in texts(at.info)


def test_a_known_error_inside_a_fragment_is_shown_with_its_hint():
    at = AppTest.from_function(_fragment_with_a_known_error, default_timeout=30).run()
    assert not at.exception
    assert texts(at.error) == "The run folder is damaged."
    assert texts(at.info) == "Train again."


def test_st_rerun_inside_a_fragment_still_reruns():
    at = AppTest.from_function(_fragment_that_reruns, default_timeout=30).run()
    assert not at.exception and not at.error
    assert at.session_state["runs"] == 2
    assert "after the rerun" in texts(at.markdown)
