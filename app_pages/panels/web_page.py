"""The Export page's web page: one HTML file that classifies in any browser, its smaller int8
version, and sharing it with phones on this network.

Built pages are working copies in the workspace's uploads (cleaned after a day like every
upload); the download is what a user keeps. The share server holds the page in memory from the
moment it starts, serves that one file alone, and stops with the app.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.ui import feedback, state
from tl_core.common import TLStudioError, escape_markdown, format_size
from tl_core.export import (
    ShareServer,
    export_web_page,
    qr_svg,
    quantized_agreement,
    web_page_refusal,
    who_can_reach,
)

WEB_PAGES = "web"  # under the workspace's uploads
QUANTIZED_KEY = "export_web_int8"
BUILT_KEY = "export_web_built"  # (run path, quantised) of the page the user asked to build


@st.cache_resource(show_spinner=False)
def _servers() -> dict[str, ShareServer]:
    """Share servers by page path, for the whole process: every session sees what is shared."""
    return {}


@st.cache_data(max_entries=4, show_spinner="Measuring the int8 weights on the validation images...")
def _agreement(run_path: str, weights_mtime: int) -> tuple[bool, str]:
    del weights_mtime  # cache key only
    agreement = quantized_agreement(run_path)
    return agreement.acceptable, agreement.text


def _page_path(name: str, quantized: bool) -> Path:
    folder = state.workspace().uploads / WEB_PAGES
    return folder / f"{name}{'-int8' if quantized else ''}.html"


def _built(run_path: str, weights_mtime: int, quantized: bool, page: Path) -> str:
    """The page's summary, building (and checking) it unless a page built from these weights
    is still on disk. A refused page raises, and nothing is written."""
    summary = page.with_suffix(".txt")
    if page.is_file() and summary.is_file() and page.stat().st_mtime_ns > weights_mtime:
        return summary.read_text()
    with st.spinner(
        "Building the web page and checking its answers against the app's, in a browser "
        "(up to a minute)..."
    ):
        text = export_web_page(run_path, page, quantized).text
    summary.write_text(text)
    return text


def _share(page: Path) -> None:
    servers = _servers()
    server = servers.get(str(page))
    key = f"share:{page}"
    # A session that opens the page while another session shares it sees the switch on.
    st.session_state.setdefault(key, server is not None and server.running)
    if not st.toggle(
        "Share on this network",
        key=key,
        help="Serves this one page, read-only, to phones and computers on your network.",
    ):
        if server is not None:
            server.stop()
            servers.pop(str(page), None)
        return
    if server is None or not server.running:
        server = servers[str(page)] = ShareServer(page)
        url = server.start()
    else:
        url = server.url or ""
    st.markdown(f"Open {url} on a phone or computer, or scan the code:")  # address and port
    st.image(qr_svg(url), width=200)
    st.info(escape_markdown(who_can_reach(url)), icon=":material/wifi:")


def web_page_section(run_path: str, weights_mtime: int, name: str) -> None:
    """Build, download and share the run's one-file web page."""
    st.subheader("Web page (one file, any browser)")
    st.write(
        "One HTML file that classifies images in any browser, phones included: open it by "
        "double-click, e-mail it or put it on a USB stick. The model runs on the device that "
        "opens it, with no internet and no install, and no image leaves that device. Before "
        "it is offered, its answers on the run's images are compared with the app's."
    )
    if (refusal := web_page_refusal(run_path)) is not None:  # no failing button to offer
        st.info(f"{escape_markdown(refusal.message)} {escape_markdown(refusal.hint)}")
        return
    quantized = st.checkbox(
        "Smaller page (int8 weights, about a quarter of the model's size)", key=QUANTIZED_KEY
    )
    if quantized:
        acceptable, text = _agreement(run_path, weights_mtime)
        (st.info if acceptable else st.warning)(f"Int8 weights: {text}")
        if not acceptable:
            return
    wanted = (run_path, quantized)
    if st.session_state.get(BUILT_KEY) != wanted:
        if st.button("Build web page", icon=":material/web:"):
            st.session_state[BUILT_KEY] = wanted
            st.rerun()
        return
    page = _page_path(name, quantized)
    try:
        summary = _built(run_path, weights_mtime, quantized, page)
        data = page.read_bytes()
    except (TLStudioError, OSError) as error:
        st.session_state.pop(BUILT_KEY, None)  # the button again, not a retry on every rerun
        if isinstance(error, OSError):
            error = TLStudioError(
                f"The built page could not be read back: {error.strerror or error}.",
                "Build it again.",
            )
        feedback.show_error(error)
        return
    st.success(
        escape_markdown(summary.splitlines()[-1]) + f" · {format_size(len(data))}",
        icon=":material/verified:",
    )
    st.download_button(
        "Download web page",
        data,
        file_name=page.name,
        mime="text/html",
        icon=":material/download:",
        on_click="ignore",
    )
    _share(page)
