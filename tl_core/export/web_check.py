"""Running an exported web page on image files, to check its answers before it is kept.

In a real browser where one is available: headless Chromium, driven by Playwright, opens the
file from disk with every network request refused, is given the images through the page's own
file input, and the answers are read from ``#tl-results`` once the page marks them done (the
page's state, never a timer). Otherwise the page's own model runs in onnxruntime on pixels
prepared as the page's own config says, with Pillow, whose output the page's JavaScript
reproduces byte for byte (``web_assets/preprocess.js``).

Both return the page's answers in the shape of ``tl-studio predict --json``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tl_core.common import TLStudioError
from tl_core.data import load_image
from tl_core.export.web_page import page_config_of, page_model_of

BROWSER_ENV = "TL_STUDIO_CHROMIUM"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless in a container or a CI runner: no sandbox, no GPU, nothing fetched in the background.
BROWSER_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
PAGE_TIMEOUT_MS = 120_000
IN_BROWSER = "headless Chromium"
IN_ONNXRUNTIME = "onnxruntime"

Answers = list[dict[str, object]]


class PageRunError(TLStudioError):
    """The page did not load its model or did not answer."""


class BrowserUnavailable(TLStudioError):
    """Chromium was found but could not be started here (no display libraries, a sandbox...)."""


def find_browser() -> str | None:
    """A Chromium to check pages with: ``$TL_STUDIO_CHROMIUM``, else one on the PATH, else
    None (also when Playwright, which drives it, is not installed)."""
    try:
        import playwright.sync_api  # noqa: F401  (only asks whether it is installed)
    except ImportError:
        return None
    candidates = [os.environ.get(BROWSER_ENV, "")] + [shutil.which(n) or "" for n in BROWSER_NAMES]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def _offline(route) -> None:
    # The page must work from disk alone: anything else it asked for would fail for a user.
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        route.abort()


def classify_in_browser(
    page_file: Path,
    images: Sequence[Path],
    browser: str,
    viewport: tuple[int, int] = (1000, 900),
    screenshot: Path | None = None,
) -> Answers:
    """Opens ``page_file`` from disk in headless Chromium, offline, classifies ``images``
    through its file input, and returns what ``#tl-results`` holds.

    Args:
        page_file: The exported page.
        images: Image files to give the page.
        browser: Chromium's executable (see :func:`find_browser`).
        viewport: The window's (width, height) in CSS pixels.
        screenshot: Where to save a PNG of the whole page after classifying, if anywhere.

    Raises:
        BrowserUnavailable: Chromium or Playwright cannot run here.
        PageRunError: The page did not load its model, or did not answer in time.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            try:
                chromium = playwright.chromium.launch(
                    executable_path=browser, args=list(BROWSER_FLAGS)
                )
            except PlaywrightError as exc:
                raise BrowserUnavailable(f"Chromium could not start: {_first_line(exc)}") from exc
            try:
                return _classify_on_page(chromium, page_file, images, viewport, screenshot)
            finally:
                chromium.close()
    except PlaywrightError as exc:  # Playwright itself cannot run here (an asyncio loop...)
        raise BrowserUnavailable(f"Playwright could not run: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _classify_on_page(chromium, page_file, images, viewport, screenshot) -> Answers:
    from playwright.sync_api import Error as PlaywrightError

    width, height = viewport
    page = chromium.new_page(viewport={"width": width, "height": height})
    page.route("**/*", _offline)
    page.goto(Path(page_file).resolve().as_uri())
    try:
        # Selectors, not scripts: the page's Content-Security-Policy forbids eval.
        page.wait_for_selector("body[data-state]", state="attached", timeout=PAGE_TIMEOUT_MS)
        if page.get_attribute("body", "data-state") != "ready":
            raise PageRunError(
                f"The page did not load its model: {page.text_content('#tl-status')}"
            )
        page.set_input_files("#tl-files", [str(p) for p in images])
        page.wait_for_selector(
            f'#tl-results[data-state=done][data-count="{len(images)}"]',
            state="attached",
            timeout=PAGE_TIMEOUT_MS,
        )
    except PlaywrightError as exc:
        raise PageRunError(f"The page did not answer in Chromium: {_first_line(exc)}") from exc
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    return json.loads(page.text_content("#tl-results") or "[]")


def page_pixels(config: dict, image) -> np.ndarray:
    """An image as the page prepares it, from the page's config: (3, S, S) float32 in [0, 1]."""
    from timm.data.transforms import str_to_interp_mode
    from torchvision import transforms

    prep = config["preprocessing"]
    transform = transforms.Compose(
        [
            transforms.Resize(prep["resize_size"], str_to_interp_mode(prep["interpolation"])),
            transforms.CenterCrop(prep["image_size"]),
            transforms.ToTensor(),
        ]
    )
    return transform(image.convert("RGB")).numpy()


def classify_in_onnxruntime(page_html: str, images: Sequence[Path]) -> Answers:
    """The page's model and preprocessing, run by onnxruntime instead of a browser."""
    import onnxruntime  # deferred: only exports need it

    config = page_config_of(page_html)
    session = onnxruntime.InferenceSession(
        page_model_of(page_html), providers=["CPUExecutionProvider"]
    )
    answers: Answers = []
    for path in images:
        pixels = page_pixels(config, load_image(path))[None]
        probabilities, unknown = session.run(
            [config["probabilities_name"], config["unknown_name"]], {config["input_name"]: pixels}
        )
        probabilities = probabilities[0].astype(np.float64)
        order = np.argsort(-probabilities, kind="stable")[: config["top_k"]]
        answers.append(
            {
                "image": Path(path).name,
                "predictions": [
                    {"label": config["labels"][i], "probability": float(probabilities[i])}
                    for i in order
                ],
                "unknown": bool(unknown[0]),
            }
        )
    return answers


def classify_with_page(
    page_file: Path, images: Sequence[Path], browser: str | None
) -> tuple[Answers, str]:
    """The page's answers on ``images`` and what ran it: ``browser`` if given and it starts,
    else onnxruntime."""
    if browser:
        try:
            return classify_in_browser(page_file, images, browser), IN_BROWSER
        except BrowserUnavailable as exc:
            answers = classify_in_onnxruntime(Path(page_file).read_text(encoding="utf-8"), images)
            return answers, f"{IN_ONNXRUNTIME} ({exc.message})"
    answers = classify_in_onnxruntime(Path(page_file).read_text(encoding="utf-8"), images)
    return answers, IN_ONNXRUNTIME
