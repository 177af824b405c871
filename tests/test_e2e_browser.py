"""End to end in a real browser: a real `streamlit run` server driven by Chromium.

From a zip of labelled images to a trained model, a prediction and a downloaded export, the way
a person would click through it. A screenshot of every page is saved in
tests/artifacts/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    REPO,
    app_server,
    browser_api,
    go_to,
    load_sample_dataset,
    wait_until_idle,
)
from tests.helpers import make_image, make_image_folder, make_zip

SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
TIMEOUT_MS = 90_000
# Comparing backbones and sweeping freeze depths train for real on the CPU: minutes on 2 cores.
LONG_MS = 420_000
MISLABELLED = "filed_wrongly.png"

pytestmark = pytest.mark.e2e

sync_api = browser_api()  # CI installs Debian's chromium (.ci/run): there these tests always run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The app's workspace: where the test reads what the clicks left on disk."""
    return tmp_path_factory.mktemp("e2e") / "workspace"


@pytest.fixture(scope="module")
def app_url(workspace):
    """A real `streamlit run app.py` on a free loopback port, with its own workspace."""
    with app_server({**os.environ, "TL_STUDIO_WORKSPACE": str(workspace)}) as url:
        yield url


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="module")
def outside_requests() -> list[str]:
    """Every request the page tried to send off this machine (refused, as offline)."""
    return []


@pytest.fixture(scope="module")
def page(app_url, outside_requests):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 1600},
            accept_downloads=True,
            # No opening animations: a click lands where the element has settled.
            reduced_motion="reduce",
        )

        def offline(route) -> None:
            # The app runs on the user's own machine and must not need the internet: anything
            # that would leave it is recorded and refused, as an offline workstation would.
            url = route.request.url
            host = urllib.parse.urlsplit(url).hostname or ""
            if url.startswith(("data:", "blob:")) or host in LOOPBACK_HOSTS:
                route.continue_()
            else:
                outside_requests.append(url)
                route.abort("internetdisconnected")

        context.route("**/*", offline)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        yield tab
        browser.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_until_idle(page)
    # Plotly draws after the element appears: wait until every chart on the page has drawn.
    undrawn = page.locator("[data-testid='stPlotlyChart']:not(:has(.js-plotly-plot))")
    sync_api.expect(undrawn).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Points drawn by the page's Plotly charts; _fullData holds decoded arrays (data may hold
# base64-packed ones).
COUNT_POINTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .flatMap(plot => plot._fullData || [])
    .reduce((n, trace) => n + ((trace.x || trace.y || trace.z || []).length || 0), 0)"""


def plotted_points(page) -> int:
    return page.evaluate(COUNT_POINTS_JS)


def wait_for_points(page, at_least: int = 1) -> None:
    """Waits (polling, no timer) until the page's charts have drawn ``at_least`` points."""
    page.wait_for_function(f"({COUNT_POINTS_JS})() >= {at_least}")


@pytest.fixture(scope="module")
def labelled_zip(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("upload")
    folder = make_image_folder(root / "colours", {"red": 8, "green": 8, "blue": 8}, size=(64, 48))
    # One label is wrong: a red image filed under green, for the label review to find.
    make_image((64, 48), color=(220, 40, 40), seed=4242).save(folder / "green" / MISLABELLED)
    return make_zip(folder, root / "colours.zip", wrap="colours")


def start_comparison(page) -> None:
    """Opens the Model page's "Which backbone?" panel and starts comparing backbones."""
    expect = sync_api.expect
    page.get_by_text("Which backbone?", exact=True).click()
    compare = page.get_by_role("button", name="Compare backbones on my images")
    expect(compare).to_be_visible()
    wait_until_idle(page)
    compare.click()
    # Started: the button stays disabled, the reason beside it, while backbones are compared.
    expect(compare).to_be_disabled()


def test_from_a_zip_to_a_trained_model_a_prediction_and_an_export(
    page, app_url, workspace, labelled_zip, tmp_path, outside_requests
):
    expect = sync_api.expect
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(page)

    # Data: choosing the zip imports it; the health report follows.
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(labelled_zip))
    expect(page.get_by_text("Ready to train: 25 images in 3 classes.")).to_be_visible()
    for name in ("red", "green", "blue"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    screenshot(page, "data")

    # Model: the offline default backbone and its defaults are saved as they are shown.
    go_to(page, "Model")
    expect(page.get_by_text("EfficientNet-Lite", exact=False).first).to_be_visible()
    expect(page.get_by_text("Saved: the next training run uses these settings.")).to_be_visible()
    screenshot(page, "model")

    # Which backbone? The offline backbones ranked on these images, before anything trains.
    start_comparison(page)
    expect(page.get_by_text("Recommended:", exact=False)).to_be_visible(timeout=LONG_MS)
    wait_until_idle(page)
    expect(page.get_by_text("not a guarantee", exact=False)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # the ranked table
    screenshot(page, "advisor")

    # Train: the live view follows the job at once (Start now queues rather than being
    # disabled, so the job's Stop button shows it started), and it finishes.
    go_to(page, "Train")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_text("Finished", exact=False).first).to_be_visible()
    wait_until_idle(page)
    wait_for_points(page)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    expect(page.get_by_text("95 % CI", exact=False).first).to_be_visible()
    screenshot(page, "train")

    # How deep to freeze? A sweep of one-epoch runs, charted, and its best depth adopted.
    page.get_by_text("Experiments: did transfer help? How deep to freeze?").click()
    epochs = page.get_by_label("Epochs per depth", exact=True)
    epochs.fill("1")
    epochs.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Run a freeze sweep").click()
    expect(page.get_by_role("heading", name="Freeze-depth sweep", exact=False)).to_be_visible()
    adopt = page.get_by_role("button", name="Use freeze", exact=False)
    expect(adopt).to_be_visible(timeout=LONG_MS)
    wait_until_idle(page)
    wait_for_points(page)
    expect(page.get_by_text("did best, with", exact=False)).to_be_visible()
    screenshot(page, "sweep")
    best = re.search(r"Use freeze (\S+) for training", adopt.inner_text()).group(1)
    # Which depth wins is measured, not fixed: when it is the depth the settings already have
    # (head only, "all"), the button is disabled and says so instead of offering a change.
    if adopt.is_enabled():
        adopt.click()
    expect(page.get_by_text(f"Your settings freeze {best}: press Start training.")).to_be_visible()
    wait_until_idle(page)

    # Data: the label review flags the red image filed under green; relabelling it saves a new
    # version of the dataset (the uploaded files stay as they were), and training again uses it.
    go_to(page, "Data")
    review = page.get_by_test_id("stExpander").filter(has_text="Suspected label errors")
    review.get_by_text("Suspected label errors").first.click()
    find = review.get_by_role("button", name="Find suspected label errors")
    expect(find).to_be_visible()
    wait_until_idle(page)
    find.click()
    suspect = review.get_by_test_id("stVerticalBlock").filter(has_text=MISLABELLED)
    expect(suspect.last).to_contain_text("looks like red", timeout=LONG_MS)
    wait_until_idle(page)
    suspect.last.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="Relabel as red").click()
    save = review.get_by_role("button", name="Save decisions as a new version (1 decision)")
    expect(save).to_be_enabled()
    wait_until_idle(page)
    save.click()
    expect(page.get_by_text("Saved version", exact=False)).to_be_visible()
    heading = page.get_by_role("heading", name=re.compile(r"Dataset: colours-v\d+"))
    version = re.search(r"colours-v\d+", heading.inner_text()).group(0)
    screenshot(page, "label_review")
    go_to(page, "Train")
    expect(page.get_by_text(f"{version} · ", exact=False).first).to_be_visible()
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=LONG_MS)
    expect(page.get_by_text("Finished", exact=False).first).to_be_visible()
    wait_until_idle(page)
    run_heading = page.get_by_role("heading", name=re.compile(r"^Run ")).inner_text()
    run_name = re.search(r"Run (\S+)", run_heading).group(1)
    config = json.loads((workspace / "runs" / run_name / "config.json").read_text())
    assert Path(config["train"]["data"]).name == version and config["dataset_version"]
    relabelled = [p.name for p in (Path(config["train"]["data"]) / "red").iterdir()]
    assert MISLABELLED in relabelled  # trained as red; the upload still has it under green
    assert (Path(config["dataset_version"]["base"]) / "green" / MISLABELLED).is_file()

    # Evaluate: the confusion matrix and per-class scores of the new run.
    go_to(page, "Evaluate")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    wait_for_points(page)
    screenshot(page, "evaluate")

    # Predict: drop in a new red image, see its top classes (one bar per class: top 3 of 3).
    go_to(page, "Predict")
    image = tmp_path / "new_red.png"
    make_image((64, 48), color=(220, 40, 40), seed=12345).save(image)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(image))
    expect(page.get_by_text("new_red.png").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    wait_until_idle(page)
    page.wait_for_function(f"({COUNT_POINTS_JS})() === 3")
    screenshot(page, "predict")

    # A photo unlike anything the model was trained on gets no class of its own: it is answered
    # "Not one of my classes", listed first, and the batch says how many such images it held.
    from PIL import Image
    from skimage import data as photos

    cat = tmp_path / "chelsea.png"
    Image.fromarray(photos.chelsea()).save(cat)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(image), str(cat)])
    expect(page.get_by_text("Not one of my classes (closest: ", exact=False).first).to_be_visible()
    # The uploader keeps new_red.png from before beside the two chosen now: one of three is
    # the photo.
    summary = re.compile(r"1 of \d images looks unlike what this model was trained on")
    expect(page.get_by_text(summary)).to_be_visible()
    wait_until_idle(page)
    screenshot(page, "predict_foreign")

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

    # Workspace: what is kept on disk, and the run just trained among what can be deleted.
    go_to(page, "Workspace")
    expect(page.get_by_text("In all", exact=True)).to_be_visible()
    screenshot(page, "workspace")

    # Offline all along: not one request tried to leave this machine (the favicon used to).
    assert outside_requests == []


# ----------------------------------------------------------------------------- a reload
# Run after the journey, whose latest training job is on another dataset: a reload used to
# bring the Model page back on that job's dataset, away from the comparison under way.


def test_a_reload_during_a_backbone_comparison_comes_back_to_it(page, app_url):
    expect = sync_api.expect
    tab = session(page.context.browser, app_url)
    expect(tab.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(tab)
    tab.get_by_role("tab", name="Sample dataset").click()
    tab.get_by_role("button", name="Load sample dataset").click()
    sidebar = tab.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Dataset: sample_dataset", exact=True)).to_be_visible()
    wait_until_idle(tab)
    go_to(tab, "Model")
    start_comparison(tab)
    # The address names the dataset, written again after the move to the Model page.
    names_sample = re.compile(r"/model\?(.*&)?dataset=[^&]*sample_dataset")
    expect(tab).to_have_url(names_sample)

    tab.reload()  # a new session, mid-comparison
    expect(tab.get_by_role("heading", name="Model", exact=True)).to_be_visible()
    expect(tab).to_have_url(names_sample)
    expect(sidebar.get_by_text("Dataset: sample_dataset", exact=True)).to_be_visible()
    # The comparison's panel is open on its progress (or, had it finished, its result).
    panel = tab.get_by_test_id("stExpander").filter(has_text="Which backbone?")
    stop, result = panel.get_by_role("button", name="Stop"), panel.get_by_text("Recommended:")
    expect(stop.or_(result).first).to_be_visible()
    if stop.is_visible():  # stopped, so that the next test's jobs find the line empty
        expect(panel.get_by_role("button", name="Compare backbones on my images")).to_be_disabled()
        stop.click()
    stopped = panel.get_by_text("Stopped: nothing was compared.")
    expect(stopped.or_(result).first).to_be_visible(timeout=LONG_MS)
    tab.context.close()


# ----------------------------------------------------------------------------- two sessions
# Two people on one server: both press Start, both get their run, in turn. Two browser
# contexts are two Streamlit sessions, as two people on a shared workstation would be. The
# first holds its job paused, so the second press surely finds it running; the second job is
# queued with its place in line, then trains once the first has finished.

QUEUE_EPOCHS = 2
# A short run of the sample; generous, for a CPU shared with other work.
TRAINING_MS = 900_000


def session(browser, app_url: str):
    """A page of a browser context of its own: a session of its own on the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400}, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    return page


# Notes whether a script run starts after it is installed (the attribute may go from
# notRunning to running and back between two looks, so every change is recorded).
NOTE_RUN_JS = """() => {
    window.__scriptRan = false;
    const app = document.querySelector('[data-testid="stApp"]');
    new MutationObserver(records => {
        if (records.some(r => r.oldValue === 'running')
            || app.getAttribute('data-test-script-state') === 'running') {
            window.__scriptRan = true;
        }
    }).observe(app, {attributes: true, attributeOldValue: true,
                     attributeFilter: ['data-test-script-state']});
}"""


def rerun_after(page, action) -> None:
    """Does ``action`` and waits until the script run it causes has ended."""
    page.evaluate(NOTE_RUN_JS)
    action()
    page.wait_for_function("() => window.__scriptRan")
    wait_until_idle(page)


def ready_to_train(page) -> None:
    """Loads the sample dataset, sets a short run on the Model page and opens Train."""
    expect = sync_api.expect
    load_sample_dataset(page, expect)
    go_to(page, "Model")
    expect(page.get_by_text("Saved: the next training run uses these settings.")).to_be_visible()
    # Head only: a session that attached to an earlier job may carry its deeper recipe.
    head_only = page.get_by_role("radio", name="Feature extraction (head only)")
    if not head_only.is_checked():
        rerun_after(page, lambda: page.get_by_text("Feature extraction (head only)").click())
    page.get_by_text("Advanced training settings").click()
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill(str(QUEUE_EPOCHS))
    rerun_after(page, lambda: epochs.press("Enter"))
    go_to(page, "Train")
    expect(page.get_by_text(f"freeze all · {QUEUE_EPOCHS} epochs · ", exact=False)).to_be_visible()
    wait_until_idle(page)


def run_name(page) -> str:
    """The run the page shows as finished."""
    sync_api.expect(page.get_by_text("Finished:", exact=False)).to_be_visible(timeout=TRAINING_MS)
    heading = page.get_by_role("heading", name=re.compile(r"^Run ")).inner_text()
    return re.search(r"Run (\S+)", heading).group(1)


def test_two_sessions_each_start_a_run_and_the_second_waits_its_turn(page, app_url, workspace):
    expect = sync_api.expect
    browser = page.context.browser  # the module's browser; each new context is a new session
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

    # Both wait on the Data page, where only the sidebar's job line redraws: the Train page's
    # live charts, redrawn every second in two sessions, would slow the training they show.
    go_to(second, "Data")
    first.get_by_role("button", name="Resume").click()
    # Resumed (Pause is back) before the page changes: leaving at once could drop the click.
    expect(first.get_by_role("button", name="Pause")).to_be_visible()
    go_to(first, "Data")
    for each in (first, second):  # the second's turn comes when the first has finished
        finished = each.get_by_test_id("stSidebar").get_by_text(" · completed · ", exact=False)
        expect(finished).to_be_visible(timeout=TRAINING_MS)
        go_to(each, "Train")
    first_run, second_run = run_name(first), run_name(second)
    assert first_run != second_run

    runs = workspace / "runs"
    for run in (first_run, second_run):
        metrics = (runs / run / "metrics.json").read_text()
        assert '"status": "completed"' in metrics
    # In order: the second run's folder was made only after the first run's last write.
    first_ended = (runs / first_run / "metrics.json").stat().st_mtime_ns
    assert (runs / second_run / "config.json").stat().st_mtime_ns >= first_ended
