"""Multi-label datasets: labels.csv, the health report, the iterative split, copies, versions."""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tests.multilabel_data import make_shapes_dataset, shapes_image
from tl_core.common import DatasetError
from tl_core.data import (
    read_labels_csv,
    retag_images,
    scan_dataset,
    scanned_dataset,
    split_leakage,
    stratified_split,
)
from tl_core.data.retagging import current_tags


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    return make_shapes_dataset(tmp_path / "shapes", per_kind=5)


def write_csv(folder: Path, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_bytes(text.encode(encoding))
    return folder / "labels.csv"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file,tags\na.png,x\n", "lacks the columns image and labels"),
        ("image,labels\na.png,x\na.png,y\n", "lists a.png twice (again in row 3)"),
        ("image,labels\n,x\n", "Row 2 of labels.csv has no image name"),
    ],
)
def test_bad_csvs_are_named_in_a_sentence(tmp_path, text, expected):
    with pytest.raises(DatasetError, match=re.escape(expected)):
        read_labels_csv(write_csv(tmp_path, text))


def test_a_csv_not_in_utf8_says_how_to_save_it(tmp_path):
    path = write_csv(tmp_path, "image,labels\nété.png,chat\n", encoding="utf-16")
    with pytest.raises(DatasetError, match="not UTF-8") as raised:
        read_labels_csv(path)
    assert "CSV UTF-8" in raised.value.hint


def test_tags_are_read_stripped_sorted_and_empty_cells_mean_none(tmp_path):
    path = write_csv(tmp_path, "\ufeffImage,Labels\n./a.png, dog ;cat;dog\nb.png,\n")
    assert read_labels_csv(path) == {"a.png": ("cat", "dog"), "b.png": ()}


def test_health_report_counts_tags_pairs_untagged_and_left_out_files(shapes):
    shapes_image(("circle",), 999).save(shapes / "images" / "stray.png")
    with open(shapes / "labels.csv", "a") as file:
        file.write("images/gone.png,square\n")
    report = scan_dataset(shapes)
    assert report.multi_label and report.can_train
    assert report.class_names == ("circle", "square")
    assert report.counts == {"circle": 10, "square": 10}
    summary = report.to_dict()["multi_label"]
    assert summary["tags_per_image"] == {"0": 5, "1": 10, "2": 5}
    assert summary["co_occurrence"] == [{"tags": ["circle", "square"], "images": 5}]
    assert len(summary["untagged"]) == 5
    assert summary["not_listed"] == ["images/stray.png"]
    assert summary["listed_missing"] == ["images/gone.png"]
    codes = {issue.code for issue in report.warnings}
    assert {"untagged_images", "not_listed", "listed_missing"} <= codes


def test_a_zip_with_a_wrapping_folder_is_multi_label_too(shapes, tmp_path):
    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in shapes.rglob("*"):
            zf.write(path, Path("wrap") / path.relative_to(shapes))
    with scanned_dataset(archive) as report:
        assert report.multi_label and report.num_images == 20


def test_a_tag_on_one_image_blocks_training(shapes):
    with open(shapes / "labels.csv", "a") as file:
        file.write("images/none_0.png,triangle\n")
    with pytest.raises(DatasetError, match="lists images/none_0.png twice"):
        scan_dataset(shapes)
    text = (shapes / "labels.csv").read_text().splitlines()
    text = [row for row in text if not row.startswith("images/none_0.png")]
    (shapes / "labels.csv").write_text("\n".join(text) + "\nimages/none_0.png,triangle\n")
    report = scan_dataset(shapes)
    assert not report.can_train
    assert any("Tag 'triangle' is on 1 readable image" in e.message for e in report.errors)


def test_iterative_split_holds_out_each_tag_in_proportion_and_is_seeded(tmp_path):
    # A rare tag (square on 4 of 40 images) still reaches both sides.
    data = make_shapes_dataset(tmp_path / "d", per_kind=12)
    rows = (data / "labels.csv").read_text().splitlines()
    squares = [r for r in rows if r.endswith(",square")]
    rows = [r for r in rows if r not in squares[4:]]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    report = scan_dataset(data)
    train, val = stratified_split(report.items, 0.25, seed=3, copies=report.near_duplicates)
    again = stratified_split(list(reversed(report.items)), 0.25, seed=3)
    assert [i.path for i in val] == [i.path for i in again[1]]
    assert len(train) + len(val) == report.num_images
    per_tag = Counter(t for item in val for t in item.tags)
    totals = report.counts
    for tag, total in totals.items():
        assert 1 <= per_tag[tag] < total
        assert abs(per_tag[tag] - 0.25 * total) <= 1.5, (tag, per_tag[tag], total)
    other = stratified_split(report.items, 0.25, seed=4)[1]
    assert {i.path for i in other} != {i.path for i in val}


def test_copies_stay_on_one_side(shapes):
    image = shapes / "images" / "circle_0.png"
    for n in range(3):
        (shapes / "images" / f"copy_{n}.png").write_bytes(image.read_bytes())
    with open(shapes / "labels.csv", "a") as file:
        file.writelines(f"images/copy_{n}.png,circle\n" for n in range(3))
    report = scan_dataset(shapes)
    assert report.duplicates and report.near_duplicates
    for seed in range(6):
        train, val = stratified_split(report.items, 0.3, seed, copies=report.near_duplicates)
        copies_in_val = sum(i.path.name.startswith(("copy_", "circle_0")) for i in val)
        assert copies_in_val in (0, 4), seed
    assert split_leakage(report, 0.3, 0).after == 0


def test_retagging_writes_a_version_with_a_new_labels_csv(shapes, tmp_path):
    original = (shapes / "labels.csv").read_text()
    version = retag_images(
        shapes,
        tmp_path / "datasets",
        add={"images/none_0.png": ["circle"]},
        remove={"images/circle_square_1.png": ["square"]},
    )
    assert (shapes / "labels.csv").read_text() == original  # the user's file untouched
    tags = current_tags(version.path)
    assert tags["images/none_0.png"] == ("circle",)
    assert tags["images/circle_square_1.png"] == ("circle",)
    assert scan_dataset(version.path).counts == {"circle": 11, "square": 9}
    later = retag_images(
        version.path, tmp_path / "datasets", remove={"images/none_0.png": ["circle"]}
    )
    assert later.number == 3 and current_tags(later.path)["images/none_0.png"] == ()
    assert current_tags(later.path)["images/circle_square_1.png"] == ("circle",)


def test_retagging_refuses_unknown_tags_and_no_change(shapes, tmp_path):
    with pytest.raises(DatasetError, match="Unknown tag 'triangle'"):
        retag_images(shapes, tmp_path, add={"images/none_0.png": ["triangle"]})
    with pytest.raises(DatasetError, match="nothing to save"):
        retag_images(shapes, tmp_path, add={"images/circle_0.png": ["circle"]})


def test_imbalanced_and_rare_tags_are_worded_as_tags(tmp_path):
    data = make_shapes_dataset(tmp_path / "d", per_kind=12)
    rows = (data / "labels.csv").read_text().splitlines()
    rows = [
        r
        for r in rows
        if not r.startswith(
            ("images/circle_square", *(f"images/square_{n}." for n in range(4, 12)))
        )
    ]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    report = scan_dataset(data)
    assert report.counts == {"circle": 12, "square": 4}
    messages = " ".join(issue.message for issue in report.warnings)
    assert "Tags are imbalanced (3.0x): 'circle' is on 12 images, 'square' on only 4" in messages
    assert "Tag 'square' is on only 4 images" in messages
