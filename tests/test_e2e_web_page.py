"""The exported web page in a real browser: opened from disk in headless Chromium with every
network request refused, given real image files through its own file input, it answers as
`tl-studio predict` does. A phone-sized screenshot of it is saved in tests/artifacts/screenshots/
(the README's, assets/screenshots/web_page_phone.png, shows a page of the default backbone).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, REPO, browser_api
from tests.training import train_tiny_run
from tl_core.data import sample_dataset_path
from tl_core.export import PAGE_TOLERANCE, export_web_page
from tl_core.export.web_export import predict_answers
from tl_core.runs import load_run

pytestmark = pytest.mark.e2e

sync_api = browser_api()  # CI installs Debian's chromium (.ci/run): there these tests always run

SCREENSHOT = REPO / "tests" / "artifacts" / "screenshots" / "web_page_phone.png"
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000
# The int8 page's own tolerance against tl-studio predict, for the tiny run: int8 weights move
# its probabilities by about 0.001 on its validation images and less than 0.05 on the sample's
# (an EfficientNet-Lite0 run's move by up to 0.14: the export gates the int8 page by its changed
# top-1 answers, not by probabilities). Top-1 must still agree.
QUANTIZED_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def images() -> list[Path]:
    """Real photos-like files: the built-in sample's JPEGs, two of each class."""
    folders = sorted(p for p in sample_dataset_path().iterdir() if p.is_dir())
    return [image for folder in folders for image in sorted(folder.iterdir())[:2]]


@pytest.fixture(scope="module")
def pages(run_dir, tmp_path_factory) -> dict[str, object]:
    """The full and the int8 page, each checked in Chromium by the export itself."""
    folder = tmp_path_factory.mktemp("pages")
    return {
        "full": export_web_page(run_dir, folder / "model.html", browser=CHROMIUM),
        "int8": export_web_page(run_dir, folder / "model-int8.html", quantized=True,
                                browser=CHROMIUM),
    }  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def classify(browser, page_file: Path, images: list[Path], screenshot: Path | None = None):
    """Opens the page from disk, offline, picks the images, waits for its answers."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    refused: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    try:
        page.goto(page_file.as_uri())
        # The page's state, not a timer (and selectors: its policy forbids eval'd scripts).
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=TIMEOUT_MS)
        page.set_input_files("#tl-files", [str(p) for p in images])
        page.wait_for_selector(
            f'#tl-results[data-state=done][data-count="{len(images)}"]',
            state="attached",
            timeout=TIMEOUT_MS,
        )
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        answers = json.loads(page.text_content("#tl-results"))
        return answers, page.text_content("body"), refused
    finally:
        context.close()


def assert_same_answers(answers, expected, tolerance: float) -> None:
    assert [a["image"] for a in answers] == [e["image"] for e in expected]
    for mine, theirs in zip(answers, expected, strict=True):
        assert mine["predictions"][0]["label"] == theirs["predictions"][0]["label"], mine["image"]
        reference = {p["label"]: p["probability"] for p in theirs["predictions"]}
        for prediction in mine["predictions"]:
            assert prediction["probability"] == pytest.approx(
                reference[prediction["label"]], abs=tolerance
            )


def test_the_export_checked_its_page_in_chromium(pages):
    for result in pages.values():
        assert result.check.passed and result.check.checked_in == "headless Chromium"


def test_the_page_answers_as_predict_does_offline_from_disk(run_dir, pages, browser, images):
    answers, text, refused = classify(browser, pages["full"].path, images, SCREENSHOT)
    assert refused == []
    assert_same_answers(answers, predict_answers(load_run(run_dir), images), PAGE_TOLERANCE)
    assert len(answers[0]["predictions"]) == 3  # every class of the tiny run (top 5 at most)
    assert "Nothing leaves this device" in text and run_dir.name in text
    assert "95 % CI" in text
    assert SCREENSHOT.stat().st_size > 10_000


def test_the_quantised_page_answers_as_predict_within_its_tolerance(
    run_dir, pages, browser, images
):
    answers, _text, refused = classify(browser, pages["int8"].path, images)
    assert refused == []
    assert_same_answers(answers, predict_answers(load_run(run_dir), images), QUANTIZED_TOLERANCE)


def test_an_unreadable_file_gets_an_error_and_the_rest_their_answers(
    pages, browser, images, tmp_path
):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    answers, _text, _refused = classify(browser, pages["full"].path, [broken, images[0]])
    assert answers[0]["image"] == "broken.jpg" and answers[0]["predictions"] == []
    assert "error" in answers[0]
    assert answers[1]["predictions"]
