"""Fixing data from the galleries: near-identical copies on the Data page, a confusion-matrix
cell on Evaluate, and the list of the dataset's versions; every fix a new version, the user's
files untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app_pages.panels import cell_review, decisions, duplicates, versions
from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.helpers import make_image_folder
from tests.test_dataset_versions import fingerprints
from tests.test_near_duplicates import write_photo_dataset
from tests.training import tiny_config
from tl_core.data import read_version, scan_dataset
from tl_core.runs import Workspace
from tl_core.training import train


@pytest.fixture(scope="module")
def ws(module_workspace) -> Workspace:
    return module_workspace


@pytest.fixture
def photos(ws, request) -> Path:
    """Real photo quarters in two classes, with a resized copy in its own class and a
    re-encoded copy filed under the other class (a conflict)."""
    return write_photo_dataset(
        ws.datasets / request.node.name[:40],
        {"people/astronaut_0.png": ["people:small"], "things/camera_0.png": ["people:jpeg"]},
    )


def gallery_choices(at, scope: str) -> list:
    return [s for s in at.selectbox if str(s.key).startswith(f"decision:{scope}:")]


def test_copies_are_grouped_conflicts_first_and_an_excluded_copy_leaves_a_new_version(ws, photos):
    before = fingerprints(photos)
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(photos)})
    expander = next(e for e in at.expander if e.label.startswith(duplicates.TITLE))
    assert expander.label == f"{duplicates.TITLE} (2 groups, 1 conflict)"
    heads = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    # By path the resized astronaut comes first; the conflict is listed before it anyway.
    assert heads[0].startswith("**Group 1** · 2 images, near-identical · people, things")
    assert heads[0].endswith(":red-badge[conflict]")
    assert heads[1].startswith("**Group 2** · 2 images, near-identical · people")
    assert duplicates.CONFLICT in texts(at.caption)
    captions = texts(at.caption)
    assert "people/camera_0_jpeg.jpg · **people**" in captions
    assert "people/astronaut_0_small.png · **people**" in captions
    # The conflicting copy offers the other copy's class first.
    jpeg = at.selectbox(
        key=decisions.widget_key("duplicates", str(photos), "people/camera_0_jpeg.jpg")
    )
    assert jpeg.options[:4] == [
        "Undecided",
        "Relabel as things",
        "Exclude from training",
        decisions.KEEP_CHOICE,
    ]

    save = at.button(key="duplicates_save")
    assert save.disabled and decisions.NOTHING_DECIDED in texts(at.caption)
    small = "people/astronaut_0_small.png"
    at.selectbox(key=decisions.widget_key("duplicates", str(photos), small)).set_value(
        decisions.EXCLUDE_CHOICE
    ).run()
    at.button(key="duplicates_save").click().run()
    assert not at.exception, at.exception

    version = Path(at.session_state[state.DATASET_KEY])
    assert version == ws.datasets / f"{photos.name}-v2"
    assert "Saved version 2 of" in texts(at.success)
    assert fingerprints(photos) == before  # the user's files are byte-identical
    names = {item.path.name for item in scan_dataset(version).items}
    assert "astronaut_0_small.png" not in names and "astronaut_0.png" in names
    assert len(names) == len(scan_dataset(photos).items) - 1
    # In the new version only the conflict is left to decide about.
    expander = next(e for e in at.expander if e.label.startswith(duplicates.TITLE))
    assert expander.label == f"{duplicates.TITLE} (1 group, 1 conflict)"


def test_the_versions_list_shows_the_original_and_each_version_and_switches(ws, photos):
    at = open_page(state.DATA_PAGE, **{state.DATASET_KEY: str(photos)})
    assert "**Versions**" not in texts(at.markdown)  # nothing to list yet
    conflict = "people/camera_0_jpeg.jpg"
    at.selectbox(key=decisions.widget_key("duplicates", str(photos), conflict)).set_value(
        "Relabel as things"
    ).run()
    at.button(key="duplicates_save").click().run()
    version = Path(at.session_state[state.DATASET_KEY])
    assert read_version(version).decisions[conflict].label == "things"

    lines = [
        m.value
        for m in at.markdown
        if m.value.startswith("**Original**") or m.value.startswith("**v")
    ]
    assert lines[0] == f"**Original** · {photos.name} · your files as they are"
    assert lines[1].startswith("**v2** · 1 relabelled, 0 excluded, 0 confirmed since the original")
    assert lines[1].endswith(versions.IN_USE)
    assert not any(b.label == "Use v2" for b in at.button)  # the one in use has no switch

    button(at, versions.ORIGINAL_LABEL).click().run()
    assert at.session_state[state.DATASET_KEY] == str(photos)
    assert f"Dataset: {photos.name}" in texts(at.subheader)
    lines = [m.value for m in at.markdown if m.value.startswith("**Original**")]
    assert lines[0].endswith(versions.IN_USE)
    button(at, "Use v2").click().run()
    assert at.session_state[state.DATASET_KEY] == str(version)
    assert "Version 2 of" in texts(at.caption)


# ----------------------------------------------------------------------------- Evaluate


@pytest.fixture(scope="module")
def colours(ws) -> Path:
    return make_image_folder(ws.datasets / "colours", {"red": 6, "green": 6, "blue": 6})


@pytest.fixture(scope="module")
def run(ws, colours) -> Path:
    folder = ws.runs / "colours-run"
    assert train(tiny_config(colours, epochs=1), folder) == "completed"
    return folder


def test_relabelling_an_image_of_a_confusion_cell_makes_the_current_version(ws, colours, run):
    before = fingerprints(colours)
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(run)})
    choices = gallery_choices(at, cell_review.SCOPE)
    assert choices, "the cell's images have a decision each"
    true_label = at.selectbox(key="eval_true").value
    predicted = at.selectbox(key="eval_pred").value
    choice = choices[0]
    image = str(choice.key).split(f"{colours}:", 1)[1]
    assert image.startswith(f"{true_label}/")
    if predicted != true_label:  # the model's belief comes first
        assert choice.options[1] == f"Relabel as {predicted}"
    new_label = next(name for name in ("red", "green", "blue") if name != true_label)
    choice.set_value(f"Relabel as {new_label}").run()
    at.button(key=f"{cell_review.SCOPE}_save").click().run()
    assert not at.exception, at.exception

    version = Path(at.session_state[state.DATASET_KEY])
    assert version == ws.datasets / "colours-v2"
    assert "Saved version 2 of colours: 1 relabelled" in texts(at.success)
    assert any(link.label == "Next: train on the new version" for link in at.get("page_link"))
    placed = version / read_version(version).files[image]
    assert placed.parent.name == new_label
    labels = {item.path.name: item.label for item in scan_dataset(version).items}
    assert labels[Path(image).name] == new_label
    assert fingerprints(colours) == before


def test_a_run_whose_dataset_moved_shows_its_images_and_says_why_they_cannot_be_fixed(
    ws, colours, run
):
    moved = shutil.copytree(run, ws.runs / "colours-run-moved")
    config = json.loads((moved / "config.json").read_text())
    config["train"]["data"] = str(ws.datasets / "no-longer-here")
    (moved / "config.json").write_text(json.dumps(config))
    at = open_page(state.EVALUATE_PAGE, **{state.RUN_KEY: str(moved)})
    assert not gallery_choices(at, cell_review.SCOPE)
    assert "These images cannot be fixed from here" in texts(at.caption)
    assert "no longer at" in texts(at.caption)
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert any(caption.endswith("%") for caption in captions)  # the images still show
