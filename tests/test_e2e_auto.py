"""End to end in a real browser: one click on "Find a good model for me" with a small budget,
the plan with its estimates, the steps progressing, the search finishing, and Predict using
the run it found (a dropped image gets its classes)."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser import (
    app_server,
    browser_api,
    go_to,
    load_sample_dataset,
    open_tab,
    wait_until_idle,
)
from tests.helpers import make_image

pytestmark = pytest.mark.e2e

sync_api = browser_api()

TIMEOUT_MS = 90_000
# A one-minute budget, plus one epoch, plus the server's first model loads on a shared CPU.
SEARCH_MS = 300_000
BUDGET_MINUTES = 1


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("e2e-auto") / "workspace"
    env = {**os.environ, "TL_STUDIO_WORKSPACE": str(workspace)}
    with app_server(env) as url, open_tab(sync_api, TIMEOUT_MS) as tab:
        tab.goto(url)
        yield tab


def test_one_click_finds_a_model_that_predict_uses(page, tmp_path):
    expect = sync_api.expect
    load_sample_dataset(page, expect)

    go_to(page, "Train")
    budget = page.get_by_label("Time budget (minutes)", exact=True)
    budget.fill(str(BUDGET_MINUTES))
    budget.press("Enter")
    expect(budget).to_have_value(str(BUDGET_MINUTES) + ".00")
    wait_until_idle(page)
    page.get_by_role("button", name="Find a good model for me").click()

    # The plan, with an estimate per step, then the steps under way.
    expect(page.get_by_text("fitted to this computer's measured speed")).to_be_visible()
    expect(page.get_by_text("Train the winning recipe: up to", exact=False)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Step \d of \d: .* of 1 min used"))).to_be_visible()
    # Finished: the decisions with their evidence and the best run, ready for Predict.
    expect(page.get_by_text("Found a model in", exact=False)).to_be_visible(timeout=SEARCH_MS)
    expect(page.get_by_text("Best run: ", exact=False)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Final run: tf_efficientnet_lite\d"))).to_be_visible()
    wait_until_idle(page)

    go_to(page, "Predict")
    image = tmp_path / "new_circle.png"
    make_image((96, 96), color=(240, 240, 240), seed=7).save(image)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(image))
    expect(page.get_by_text("new_circle.png").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    wait_until_idle(page)
