"""End to end in a real browser: a real `streamlit run` server driven by Chromium.

From a zip of labelled images to a trained model, a prediction and a downloaded export, the way
a person would click through it. A screenshot of every page is saved in
tests/artifacts/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.helpers import make_image, make_image_folder, make_zip

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.e2e

if not Path(CHROMIUM).exists():
    # CI installs Debian's chromium (.ci/run), so there this test always runs.
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: install Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("streamlit did not become healthy in time")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A real `streamlit run app.py` on a free loopback port, with its own workspace."""
    port = free_port()
    workspace = tmp_path_factory.mktemp("e2e") / "workspace"
    env = {**os.environ, "TL_STUDIO_WORKSPACE": str(workspace)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 1000}, accept_downloads=True
        )
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        yield tab
        browser.close()


def wait_until_idle(page) -> None:
    """Waits for the script run to finish (Streamlit shows a status widget while running)."""
    page.wait_for_timeout(300)
    sync_api.expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def go_to(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    sync_api.expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    wait_until_idle(page)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_until_idle(page)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Points drawn by the page's Plotly charts; _fullData holds decoded arrays (data may hold
# base64-packed ones).
COUNT_POINTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .flatMap(plot => plot._fullData || [])
    .reduce((n, trace) => n + ((trace.x || trace.y || trace.z || []).length || 0), 0)"""


def plotted_points(page) -> int:
    return page.evaluate(COUNT_POINTS_JS)


@pytest.fixture(scope="module")
def labelled_zip(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("upload")
    folder = make_image_folder(root / "colours", {"red": 8, "green": 8, "blue": 8}, size=(64, 48))
    return make_zip(folder, root / "colours.zip", wrap="colours")


def test_from_a_zip_to_a_trained_model_a_prediction_and_an_export(
    page, app_url, labelled_zip, tmp_path
):
    expect = sync_api.expect
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(page)

    # Data: upload the zip and see its health report.
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(labelled_zip))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("24 images", exact=False).first).to_be_visible()
    for name in ("red", "green", "blue"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    screenshot(page, "data")

    # Model: keep the offline default backbone and its defaults, save the settings.
    go_to(page, "Model")
    expect(page.get_by_text("EfficientNet-Lite", exact=False).first).to_be_visible()
    page.get_by_role("button", name="Use these settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    screenshot(page, "model")

    # Train: start, and wait for the live chart to show points and the job to finish.
    go_to(page, "Train")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_function(f"({COUNT_POINTS_JS})() > 0")
    expect(page.get_by_text("Finished", exact=False).first).to_be_visible()
    assert plotted_points(page) > 0
    screenshot(page, "train")

    # Evaluate: the confusion matrix and per-class scores of the new run.
    go_to(page, "Evaluate")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    assert plotted_points(page) > 0
    screenshot(page, "evaluate")

    # Predict: drop in a new red image, see its top classes.
    go_to(page, "Predict")
    image = tmp_path / "new_red.png"
    make_image((64, 48), color=(220, 40, 40), seed=12345).save(image)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(image))
    expect(page.get_by_text("new_red.png").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    wait_until_idle(page)
    assert plotted_points(page) == 3  # one bar per class: the top 3 of 3
    screenshot(page, "predict")

    # Export: download the run as a zip and check it holds a reloadable model.
    go_to(page, "Export")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download run (.zip)").click()
    download = tmp_path / "run.zip"
    download_info.value.save_as(download)
    with zipfile.ZipFile(download) as archive:
        names = set(archive.namelist())
    assert {"model.safetensors", "config.json", "labels.json", "HOW_TO_LOAD.txt"} <= names
    screenshot(page, "export")
