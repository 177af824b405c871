"""Several tags per image, end to end in a real browser: a .zip of images with a labels.csv is
uploaded on the Data page, which reports its tags; the Model page says the backbone advisor
does not handle tags yet; training on the default backbone names its metric (macro F1); and on
Predict an image showing both shapes gets both tags.

The images are the generated shapes of tests/multilabel_data.py (a red circle, a blue square,
both or neither), whose tags are known.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest

from tests.browser import app_server, browser_api, go_to, open_tab, wait_until_idle
from tests.multilabel_data import make_shapes_dataset, shapes_image

TIMEOUT_MS = 90_000
TRAINING_MS = 420_000  # the default backbone: under a minute on 2 idle cores, minutes when busy
# "circle (70 %), square (64 %)": every tag above its threshold, most probable first.
PERCENT = r"\([\d.]+ ?%\)"
BOTH_TAGS = re.compile(
    rf"^(circle {PERCENT}, square {PERCENT}|square {PERCENT}, circle {PERCENT})$"
)

pytestmark = pytest.mark.e2e
sync_api = browser_api()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A real `streamlit run app.py` with a workspace of its own."""
    workspace = tmp_path_factory.mktemp("e2e_multilabel") / "workspace"
    with app_server({**os.environ, "TL_STUDIO_WORKSPACE": str(workspace)}) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with open_tab(sync_api, TIMEOUT_MS) as tab:
        yield tab


@pytest.fixture(scope="module")
def tagged_zip(tmp_path_factory) -> Path:
    """shapes.zip: shapes/labels.csv and 40 images, 10 each of circle, square, both, neither."""
    root = tmp_path_factory.mktemp("upload")
    data = make_shapes_dataset(root / "shapes", per_kind=10)
    archive = root / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(data.rglob("*")):
            if path.is_file():
                out.write(path, f"shapes/{path.relative_to(data).as_posix()}")
    return archive


def test_upload_tagged_images_train_and_predict_both_tags(page, app_url, tagged_zip, tmp_path):
    expect = sync_api.expect
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_until_idle(page)

    # Data: the zip with its labels.csv is imported and reported in tags.
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(tagged_zip))
    expect(page.get_by_text("Ready to train: 40 images in 2 tags.", exact=False)).to_be_visible()
    expect(page.get_by_text("Tags seen together", exact=True)).to_be_visible()
    expect(page.get_by_text("10 images with 0, 20 images with 1, 10 images with 2")).to_be_visible()

    # Model: the defaults are saved; the advisor says plainly it does not handle tags yet.
    go_to(page, "Model")
    expect(page.get_by_text("Saved: the next training run uses these settings.")).to_be_visible()
    expect(page.get_by_text("The backbone advisor does not work", exact=False)).to_be_visible()

    # Train: the default backbone, its accuracy named as what it is.
    go_to(page, "Train")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=TRAINING_MS)
    expect(page.get_by_text("Finished", exact=False).first).to_be_visible()
    wait_until_idle(page)
    expect(page.get_by_text("Best val. macro F1 at threshold 0.5")).to_be_visible()

    # Predict: a new image with both shapes gets both tags.
    go_to(page, "Predict")
    image = tmp_path / "both.png"
    shapes_image(("circle", "square"), seed=4321).save(image)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(image))
    expect(page.get_by_text("both.png").first).to_be_visible()
    expect(page.get_by_text(BOTH_TAGS)).to_be_visible()
