"""Suspected label errors: flipped labels in generated data are found, most suspicious first."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from tests.helpers import make_image_folder
from tests.test_advisor import KnownFeatures
from tl_core.analysis import LabelCheckStopped, find_label_issues, out_of_sample_probabilities
from tl_core.cli import main as cli
from tl_core.common import DatasetError
from tl_core.data import scan_dataset


def colour_factory(name: str, num_classes: int):
    """A backbone whose features are the image's mean colour: the classes are colours."""
    return KnownFeatures(informative=True), "test colour"


@pytest.fixture
def flipped_dataset(tmp_path):
    """Three colour classes of 20 images; 3 images moved into a wrong class folder."""
    root = make_image_folder(tmp_path / "data", {"red": 20, "green": 20, "blue": 20})
    moves = {"red/red_3.png": "green", "green/green_7.png": "blue", "blue/blue_11.png": "red"}
    flipped = set()
    for source, target in moves.items():
        destination = root / target / f"moved_{source.replace('/', '_')}"
        shutil.move(root / source, destination)
        flipped.add(destination.relative_to(root).as_posix())
    return root, flipped


def test_flipped_labels_are_found_first_with_the_true_class_suggested(flipped_dataset, tmp_path):
    root, flipped = flipped_dataset
    report = scan_dataset(root)
    seen = []
    issues = find_label_issues(
        report, tmp_path / "cache", lambda *a: seen.append(a), model_factory=colour_factory
    )

    found = [report.relative(issue.path) for issue in issues]
    assert set(found[: len(flipped)]) == flipped  # recall 1, and they rank first
    assert len(found) <= len(flipped) + 2  # and few clean images are accused
    by_image = {report.relative(i.path): i for i in issues}
    red_in_green = by_image["green/moved_red_red_3.png"]
    assert (red_in_green.given, red_in_green.suggested) == ("green", "red")
    assert red_in_green.confidence > 0.5 > red_in_green.given_probability
    # Most suspicious first: the given label's probability rises down the list.
    probabilities = [i.given_probability for i in issues]
    assert probabilities == sorted(probabilities)
    assert seen and seen[-1][2] == "checking the labels"


def test_a_clean_dataset_has_no_label_issues(tmp_path):
    report = scan_dataset(make_image_folder(tmp_path / "data", {"red": 15, "blue": 15}))
    assert find_label_issues(report, tmp_path / "cache", model_factory=colour_factory) == []


def test_out_of_sample_probabilities_never_come_from_a_probe_that_saw_the_image():
    # One image per value of a feature the label follows; an odd image out is labelled wrong.
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(-3, 1, (30, 2)), rng.normal(3, 1, (30, 2))])
    labels = np.array([0] * 30 + [1] * 30)
    labels[5] = 1  # a wrong label: a probe trained on it would still trust it
    probabilities = out_of_sample_probabilities(features, labels, 2, folds=5)
    assert probabilities.shape == (60, 2)
    np.testing.assert_allclose(probabilities.sum(1), 1)
    assert probabilities[5, 1] < 0.2
    # Copies share a fold: with all rows of class 1 one group, no fold trains on class 1.
    groups = np.where(labels == 1, 0, np.arange(60) + 1)
    grouped = out_of_sample_probabilities(features, labels, 2, folds=5, groups=groups)
    assert np.all(grouped[labels == 1, 1] == 0)


def test_stop_and_untrainable_data_raise(flipped_dataset, tmp_path):
    root, _ = flipped_dataset
    stop = threading.Event()
    stop.set()
    with pytest.raises(LabelCheckStopped):
        find_label_issues(scan_dataset(root), tmp_path, stop=stop, model_factory=colour_factory)
    one_class = make_image_folder(tmp_path / "one", {"red": 4})
    with pytest.raises(DatasetError):
        find_label_issues(scan_dataset(one_class), tmp_path, model_factory=colour_factory)


def test_check_label_issues_json_lists_the_suspects(flipped_dataset, tmp_path, capsys, monkeypatch):
    from tl_core.analysis import label_issues

    root, flipped = flipped_dataset
    real = label_issues.find_label_issues

    def with_colour_features(*args, **kwargs):
        return real(*args, **kwargs, model_factory=colour_factory)

    monkeypatch.setattr(label_issues, "find_label_issues", with_colour_features)
    args = ["check", str(root), "--label-issues", "--cache-dir", str(tmp_path / "c"), "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    suspects = report["label_issues"]
    assert {s["image"] for s in suspects[: len(flipped)]} == flipped
    assert set(suspects[0]) >= {"image", "given", "suggested", "confidence"}

    assert cli.main(args[:-1]) == 0
    text = capsys.readouterr().out
    assert "Suspected label errors" in text and "moved_red_red_3.png" in text
