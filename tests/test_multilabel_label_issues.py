"""Suspected tag errors in a multi-label dataset: wrong tags in generated shapes are found."""

from __future__ import annotations

from tests.multilabel_data import make_shapes_dataset
from tests.test_advisor import KnownFeatures
from tl_core.analysis import LABEL_ISSUES, find_label_issues, multi_label_refusal
from tl_core.data import scan_dataset


def colour_factory(name: str, num_classes: int):
    """A backbone whose features are the image's mean colour: a red circle and a blue square
    each shift it their own way."""
    return KnownFeatures(informative=True), "test colour"


def test_wrong_tags_are_found_first(tmp_path):
    data = make_shapes_dataset(tmp_path / "data", per_kind=8)
    wrong = {"images/circle_square_0.png": "square", "images/none_1.png": "circle;square"}
    rows = (data / "labels.csv").read_text().splitlines()
    # No image carries the circle alone, so no set of tags is named like a tag.
    rows = [
        f"{row.split(',')[0]},{wrong[row.split(',')[0]]}" if row.split(",")[0] in wrong else row
        for row in rows
        if not row.startswith("images/circle_")
        or row.startswith("images/circle_square")
        or row.split(",")[0] in wrong
    ]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    report = scan_dataset(data)
    issues = find_label_issues(report, tmp_path / "cache", model_factory=colour_factory)
    found = [report.relative(issue.path) for issue in issues]
    assert set(found[:2]) == set(wrong)
    assert len(found) <= 5  # few clean images are accused
    first = {report.relative(i.path): i for i in issues}["images/circle_square_0.png"]
    assert (first.given, first.suggested) == ("square", "circle;square")
    assert first.confidence > 0.5 > first.given_probability
    assert multi_label_refusal(LABEL_ISSUES) is None
