"""Two people on one server, in a real browser: both press Start, both get their run, in turn.

Two browser contexts are two Streamlit sessions, as two people on a shared workstation would
be. The first holds its job paused, so the second press surely finds it running; it is
queued with its place in line, then trains once the first has finished.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, app_server, go_to, wait_until_idle

TIMEOUT_MS = 90_000
TRAINING_MS = 900_000  # a short run of the sample; generous, for a CPU shared with other work
EPOCHS = 2

pytestmark = pytest.mark.e2e

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: install Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-queue") / "workspace"


@pytest.fixture(scope="module")
def app_url(workspace):
    with app_server({**os.environ, "TL_STUDIO_WORKSPACE": str(workspace)}) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        yield chromium
        chromium.close()


def session(browser, app_url: str):
    """A page of a browser context of its own: a session of its own on the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400}, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    return page


def ready_to_train(page) -> None:
    """Loads the sample dataset, sets a short run on the Model page and opens Train."""
    expect = sync_api.expect
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(page)
    page.get_by_role("tab", name="Sample dataset").click()
    page.get_by_role("button", name="Load sample dataset").click()
    expect(page.get_by_text(re.compile(r"Ready to train: \d+ images in 3 classes"))).to_be_visible()
    wait_until_idle(page)
    go_to(page, "Model")
    expect(page.get_by_text("Saved: the next training run uses these settings.")).to_be_visible()
    page.get_by_text("Advanced training settings").click()
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill(str(EPOCHS))
    epochs.press("Enter")
    wait_until_idle(page)
    go_to(page, "Train")
    expect(page.get_by_text(f" · {EPOCHS} epochs · ", exact=False)).to_be_visible()
    wait_until_idle(page)


def run_name(page) -> str:
    """The run the page shows as finished."""
    sync_api.expect(page.get_by_text("Finished:", exact=False)).to_be_visible(timeout=TRAINING_MS)
    heading = page.get_by_role("heading", name=re.compile(r"^Run ")).inner_text()
    return re.search(r"Run (\S+)", heading).group(1)


def test_two_sessions_each_start_a_run_and_the_second_waits_its_turn(browser, app_url, workspace):
    expect = sync_api.expect
    first, second = session(browser, app_url), session(browser, app_url)
    ready_to_train(first)
    ready_to_train(second)

    first.get_by_role("button", name="Start training").click()
    # Held paused, so the second press certainly finds it running.
    first.get_by_role("button", name="Pause").click()
    expect(first.get_by_role("button", name="Resume")).to_be_visible()

    second.get_by_role("button", name="Start training").click()
    queued = re.compile(r"Queued, 2nd in line, after Training \S+ on sample")
    expect(second.get_by_test_id("stMain").get_by_text(queued)).to_be_visible()
    expect(second.get_by_test_id("stSidebar").get_by_text(queued)).to_be_visible()
    expect(second.get_by_role("button", name="Cancel")).to_be_visible()

    first.get_by_role("button", name="Resume").click()
    first_run = run_name(first)
    second_run = run_name(second)  # its turn came when the first had finished
    assert first_run != second_run

    runs = workspace / "runs"
    for run in (first_run, second_run):
        metrics = (runs / run / "metrics.json").read_text()
        assert '"status": "completed"' in metrics
    # In order: the second run's folder was made only after the first run's last write.
    first_ended = (runs / first_run / "metrics.json").stat().st_mtime_ns
    assert (runs / second_run / "config.json").stat().st_mtime_ns >= first_ended
