"""A real `streamlit run app.py` server and the page helpers that drive it in Chromium.

Shared by the end-to-end browser test and ``bench/first_point.py``: both wait on the app's own
state (its health endpoint, Streamlit's script-state attributes), never on timers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STREAMLIT = ("-m", "streamlit")  # how the server is launched: `python -m streamlit run ...`


def browser_api():
    """playwright's sync API, for a browser test module to call at import: the module is skipped
    where Chromium is not installed (an error on CI, which installs it) or playwright is not."""
    import pytest

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError("chromium is missing: install Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, log: IO[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"streamlit exited early:\n{log.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)  # the port is not listening yet: poll its health again
    raise RuntimeError("streamlit did not become healthy in time")


@contextlib.contextmanager
def app_server(env: Mapping[str, str], launcher: Sequence[str] = STREAMLIT) -> Iterator[str]:
    """A real `streamlit run app.py` on a free loopback port with ``env`` (the workspace, as
    ``TL_STUDIO_WORKSPACE``, among it); yields its URL once healthy, and stops it on exit.

    The server's output goes to a file, kept where ``TL_BROWSER_SERVER_LOG`` says: a pipe that
    nobody reads fills up, and then each write of the server (a log line from the training
    thread) would block until the test ends.
    """
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            [sys.executable, *launcher, "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=REPO,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, server, log)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if os.environ.get("TL_BROWSER_SERVER_LOG"):
                log.seek(0)
                Path(os.environ["TL_BROWSER_SERVER_LOG"]).write_text(log.read())


def wait_until_idle(page) -> None:
    """Waits until the app is connected and no script run is under way.

    Streamlit marks its root element with the script's state (its own e2e suite waits on the
    same attributes). Call it after an auto-retrying expectation has seen the result of an
    action: that is what proves the run the action caused has started.
    """
    from playwright.sync_api import expect

    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def go_to(page, title: str) -> None:
    """Opens a page from the sidebar and waits until it has drawn."""
    from playwright.sync_api import expect

    link = page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True)
    heading = page.get_by_role("heading", name=title, exact=True)
    # A click that lands while the current page reruns (after st.rerun, say) can be dropped by
    # Streamlit: click again until the page has changed, waiting on the heading, not on time.
    for _ in range(3):
        link.click()
        try:
            expect(heading).to_be_visible(timeout=20_000)
            break
        except AssertionError:
            continue
    expect(heading).to_be_visible()
    wait_until_idle(page)


@contextlib.contextmanager
def open_tab(sync_api, timeout_ms: int) -> Iterator:
    """One Chromium tab at a desktop size with no opening animations (a click lands where the
    element has settled), its waits and the expectations' waits set to ``timeout_ms``."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 1600}, reduced_motion="reduce"
        )
        tab = context.new_page()
        tab.set_default_timeout(timeout_ms)
        sync_api.expect.set_options(timeout=timeout_ms)
        try:
            yield tab
        finally:
            browser.close()


def load_sample_dataset(page, expect) -> None:
    """On the Data page: loads the built-in sample dataset and waits for its health report."""
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(page)
    page.get_by_role("tab", name="Sample dataset").click()
    page.get_by_role("button", name="Load sample dataset").click()
    expect(page.get_by_text(re.compile(r"Ready to train: \d+ images in 3 classes"))).to_be_visible()
    wait_until_idle(page)
