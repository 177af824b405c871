"""Dataset versions: review decisions applied as a new dataset folder, the originals untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import make_image_folder
from tests.training import tiny_config
from tl_core.common import DatasetError, RunError
from tl_core.data import (
    EXCLUDE,
    KEEP,
    RELABEL,
    VERSION_FILE,
    Decision,
    base_dataset,
    create_version,
    image_keys,
    list_versions,
    original_image,
    read_version,
    reviewed,
    scan_dataset,
)
from tl_core.runs import run_dataset
from tl_core.training import train

CLASSES = {"red": 5, "green": 5, "blue": 5}


def fingerprints(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes and its modification time."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        + str(path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def data(tmp_path) -> Path:
    return make_image_folder(tmp_path / "datasets" / "colours", CLASSES)


def decide(**decisions) -> dict[str, Decision]:
    return {image: Decision(image, *how) for image, how in decisions.items()}


def test_a_relabel_and_an_exclusion_make_a_new_version_and_leave_the_originals_alone(data):
    before = fingerprints(data)
    decisions = {
        "red/red_0.png": Decision("red/red_0.png", RELABEL, "green"),
        "blue/blue_1.png": Decision("blue/blue_1.png", EXCLUDE),
        "green/green_2.png": Decision("green/green_2.png", KEEP),
    }
    version = create_version(data, decisions, ["blue", "green", "red"], data.parent)

    assert fingerprints(data) == before  # byte-identical, not even touched
    assert version.path == data.parent / "colours-v2" and version.number == 2
    report = scan_dataset(version.path)
    counts = {name: sum(i.label == name for i in report.items) for name in report.class_names}
    assert counts == {"blue": 4, "green": 6, "red": 4}
    moved = version.path / version.files["red/red_0.png"]
    assert (
        moved.parent.name == "green" and moved.read_bytes() == (data / "red/red_0.png").read_bytes()
    )
    assert "blue/blue_1.png" not in version.files
    assert version.describe() == "version 2 of colours: 1 relabelled, 1 excluded, 1 confirmed"
    assert read_version(version.path).decisions == version.decisions
    assert read_version(data) is None
    assert VERSION_FILE not in {p.name for p in report.skipped}  # the scan ignores it


def test_a_version_of_a_version_keeps_every_decision_and_maps_files_back(data):
    first = create_version(
        data, decide(**{"red/red_0.png": (RELABEL, "green")}), ["blue", "green", "red"], data.parent
    )
    placed = first.path / first.files["red/red_0.png"]
    key = original_image(first.path, placed)
    assert key == "red/red_0.png"  # the decision is about the original file
    second = create_version(
        first.path,
        decide(**{key: (RELABEL, "blue"), "green/green_0.png": (EXCLUDE,)}),
        ["blue", "green", "red"],
        data.parent,
    )

    assert second.number == 3 and second.base == data and second.parent == first.path
    assert second.decisions["red/red_0.png"].label == "blue"  # the later decision wins
    assert (second.path / second.files["red/red_0.png"]).parent.name == "blue"
    assert "green/green_0.png" not in second.files
    assert reviewed(second.path) == {"red/red_0.png", "green/green_0.png"}


def test_bad_decisions_are_refused_and_leave_no_folder(data):
    classes = ["blue", "green", "red"]
    with pytest.raises(DatasetError, match="nothing to save"):
        create_version(data, {}, classes, data.parent)
    with pytest.raises(DatasetError, match="Unknown class 'purple'"):
        create_version(data, decide(**{"red/red_0.png": (RELABEL, "purple")}), classes, data.parent)
    with pytest.raises(DatasetError, match="not in colours"):
        create_version(data, decide(**{"red/gone.png": (EXCLUDE,)}), classes, data.parent)
    assert sorted(p.name for p in data.parent.iterdir()) == ["colours"]


def test_a_run_records_the_version_it_trained_on(data, tmp_path):
    version = create_version(
        data, decide(**{"red/red_0.png": (RELABEL, "green")}), ["blue", "green", "red"], data.parent
    )
    train(tiny_config(version.path, epochs=1), tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["data"] == str(version.path)
    assert config["dataset_version"] == {
        "version": 2,
        "base": str(data),
        "counts": {"relabel": 1, "exclude": 0, "keep": 0},
    }
    train(tiny_config(data, epochs=1), tmp_path / "original-run")
    original = json.loads((tmp_path / "original-run" / "config.json").read_text())
    assert original["dataset_version"] is None


def test_list_versions_finds_every_version_of_the_original_from_any_of_them(data, tmp_path):
    classes = ["blue", "green", "red"]
    first = create_version(data, decide(**{"red/red_0.png": (EXCLUDE,)}), classes, data.parent)
    second = create_version(first.path, decide(**{"red/red_1.png": (KEEP,)}), classes, data.parent)
    # Another version of the first (a branch, e.g. saved from an old run's evaluation) takes
    # the next free number of the original, never a second "v3".
    branch = create_version(
        first.path, decide(**{"blue/blue_0.png": (RELABEL, "red")}), classes, data.parent
    )
    other = make_image_folder(data.parent / "shapes", {"a": 2, "b": 2})
    create_version(other, decide(**{"a/a_0.png": (EXCLUDE,)}), ["a", "b"], data.parent)

    expected = [first.path, second.path, branch.path]
    for dataset in (data, first.path, branch.path):
        assert [v.path for v in list_versions(dataset, data.parent)] == expected
        assert base_dataset(dataset) == data
    assert [v.number for v in list_versions(data, data.parent)] == [2, 3, 4]
    assert branch.path.name == "colours-v4" and branch.parent == first.path
    assert list_versions(data, tmp_path / "nowhere") == []
    assert list_versions(data, data.parent)[1].changes == "0 relabelled, 1 excluded, 1 confirmed"


def test_a_version_of_a_deleted_original_is_refused_with_what_to_do(data):
    classes = ["blue", "green", "red"]
    first = create_version(data, decide(**{"red/red_0.png": (EXCLUDE,)}), classes, data.parent)
    moved = data.rename(data.parent / "colours-moved")
    with pytest.raises(DatasetError, match="no longer at") as raised:
        create_version(first.path, decide(**{"red/red_1.png": (KEEP,)}), classes, data.parent)
    assert str(data) in raised.value.hint
    assert scan_dataset(first.path).can_train  # the version itself still trains
    assert list_versions(first.path, data.parent) == [read_version(first.path)]
    assert moved.is_dir()


def test_run_dataset_and_image_keys_say_why_a_run_cannot_be_fixed(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunError, match="config.json is missing"):
        run_dataset(run)
    (run / "config.json").write_text(json.dumps({"train": {"data": str(data)}}))
    assert run_dataset(run) == data
    assert image_keys(data, [str(data / "red/red_0.png")]) == {
        str(data / "red/red_0.png"): "red/red_0.png"
    }
    with pytest.raises(DatasetError, match="not inside"):
        image_keys(data, [str(tmp_path / "elsewhere.png")])
    (run / "config.json").write_text(json.dumps({"train": {"data": str(tmp_path / "gone")}}))
    with pytest.raises(DatasetError, match="no longer at") as raised:
        run_dataset(run)
    assert "Data page" in raised.value.hint
