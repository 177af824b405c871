"""Near-duplicates: resized and re-encoded copies are grouped, conflicts are reported, and the
split never puts a copy on each side."""

from __future__ import annotations

import json

import numpy as np
import skimage.data
from PIL import Image

from tests.helpers import make_image_folder
from tl_core.cli.main import main
from tl_core.data import (
    Fingerprint,
    connected_groups,
    fingerprint,
    near_duplicate_groups,
    scan_dataset,
    similar_pairs,
    split_leakage,
    split_overlap,
    stratified_split,
)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "horse", "page")


def photo(name: str, size: int = 160) -> Image.Image:
    return (
        Image.fromarray(np.asarray(getattr(skimage.data, name)()))
        .convert("RGB")
        .resize((size, size))
    )


def quarters(name: str) -> list[Image.Image]:
    """Four different pictures cut from one real photograph."""
    image = photo(name, 320)
    return [image.crop((x, y, x + 160, y + 160)) for x in (0, 160) for y in (0, 160)]


def write_photo_dataset(root, copies: dict[str, list[str]]):
    """Two classes of real photo quarters; ``copies`` maps an original file to copy kinds."""
    for label, names in (("people", PHOTOS[:4]), ("things", PHOTOS[4:])):
        folder = root / label
        folder.mkdir(parents=True)
        for name in names:
            for index, image in enumerate(quarters(name)):
                image.save(folder / f"{name}_{index}.png")
    for original, kinds in copies.items():
        image = Image.open(root / original).convert("RGB")
        for kind in kinds:
            target_label, _, how = kind.partition(":")
            stem = (root / original).stem
            target = root / target_label / f"{stem}_{how}"
            if how == "small":
                image.resize((80, 80), Image.Resampling.BILINEAR).save(f"{target}.png")
            elif how == "jpeg":
                image.save(f"{target}.jpg", quality=40)
            elif how == "big":
                image.resize((250, 250), Image.Resampling.BICUBIC).save(f"{target}.jpg", quality=85)
    return root


def test_fingerprints_of_copies_are_close_and_of_different_photos_far():
    original = photo("astronaut")
    copies = [
        original.resize((80, 80), Image.Resampling.BILINEAR),
        original.resize((300, 300), Image.Resampling.BICUBIC),
    ]
    reference = fingerprint(original)
    assert all(reference.matches(fingerprint(copy)) for copy in copies)
    others = [fingerprint(photo(name)) for name in PHOTOS[1:]]
    assert not any(reference.matches(other) for other in others)
    # A blank image has nothing to fingerprint, so blanks are not all "copies" of each other.
    assert fingerprint(Image.new("RGB", (50, 50), (30, 30, 30))) is None


def test_matching_needs_close_hashes_and_close_colours():
    base = Fingerprint(0b1011, (100, 100, 100))
    assert base.matches(Fingerprint(0b1000, (104, 96, 100)))
    assert not base.matches(Fingerprint(0b1011, (100, 100, 160)))  # same layout, other colour
    assert not base.matches(Fingerprint(0b1011 ^ 0x7F0, (100, 100, 100)))  # 7 bits apart


def test_multi_index_search_finds_every_close_pair_that_brute_force_finds():
    rng = np.random.default_rng(0)
    bases = [int(b) for b in rng.integers(0, 2**63, 40)]
    prints = []
    for base in bases:
        prints.append(Fingerprint(base, (0, 0, 0)))
        flips = rng.choice(64, rng.integers(0, 9), replace=False)
        prints.append(Fingerprint(base ^ sum(1 << int(f) for f in flips), (0, 0, 0)))
    brute = [
        (i, j)
        for i in range(len(prints))
        for j in range(i + 1, len(prints))
        if prints[i].matches(prints[j])
    ]
    assert similar_pairs(prints) == brute
    assert len(brute) >= 20  # the copies within 6 bits were really there to find
    assert connected_groups(5, [(0, 3), (3, 4)]) == [[0, 3, 4]]


def test_scan_groups_resized_and_reencoded_copies_and_reports_conflicts(tmp_path):
    data = write_photo_dataset(
        tmp_path / "data",
        {
            "people/astronaut_0.png": ["people:small", "people:jpeg"],
            "things/coins_1.png": ["things:big"],
            "things/camera_2.png": ["people:jpeg"],  # the same picture labelled twice: conflict
        },
    )
    report = scan_dataset(data)

    groups = {frozenset(report.relative(p) for p in g.paths): g for g in report.near_duplicates}
    assert set(groups) == {
        frozenset(
            {
                "people/astronaut_0.png",
                "people/astronaut_0_small.png",
                "people/astronaut_0_jpeg.jpg",
            }
        ),
        frozenset({"things/coins_1.png", "things/coins_1_big.jpg"}),
        frozenset({"things/camera_2.png", "people/camera_2_jpeg.jpg"}),
    }
    conflicts = [g for g in report.near_duplicates if g.across_classes]
    assert [sorted(g.labels) for g in conflicts] == [["people", "things"]]
    codes = {issue.code for issue in report.warnings}
    assert {"near_duplicates_across_classes", "near_duplicates_within_class"} <= codes
    # Only these: quarters of one photograph are different pictures, not copies.
    assert report.duplicates == ()


def test_split_keeps_every_group_of_copies_on_one_side_for_every_seed(tmp_path):
    copies = {
        f"{label}/{name}_{i}.png": [f"{label}:small", f"{label}:jpeg", f"{label}:big"]
        for label, names in (("people", PHOTOS[:4]), ("things", PHOTOS[4:]))
        for name in names
        for i in (0, 2)
    }
    copies["things/coins_3.png"] = ["people:jpeg"]  # a conflict
    report = scan_dataset(write_photo_dataset(tmp_path / "data", copies))
    groups = report.near_duplicates
    assert len(groups) == len(copies)

    leaked_before = 0
    for seed in range(6):
        train, val = stratified_split(report.items, 0.25, seed)
        sides = {item.path: "train" for item in train} | {item.path: "val" for item in val}
        for group in groups:
            assert len({sides[p] for p in group.paths}) == 1, (seed, group.paths)
        conflict = next(g for g in groups if g.across_classes)
        assert {sides[p] for p in conflict.paths} == {"train"}
        # Still stratified: each class holds out about a quarter, never all or nothing.
        for label in report.class_names:
            n_val = sum(i.label == label for i in val)
            n_all = report.counts[label]
            assert 1 <= n_val < n_all and abs(n_val - 0.25 * n_all) <= 3
        assert split_overlap(report, train, val) == []
        assert stratified_split(list(reversed(report.items)), 0.25, seed) == (train, val)
        leakage = split_leakage(report, 0.25, seed)
        assert leakage.after == 0 and leakage.num_val == len(val)
        plain = stratified_split(report.items, 0.25, seed, keep_copies_together=False)
        assert leakage.before == len(split_overlap(report, *plain))
        leaked_before += leakage.before
    assert leaked_before > 0  # the plain split did leak copies: the fix had work to do


def test_a_dataset_without_copies_splits_exactly_as_before(tmp_path):
    report = scan_dataset(make_image_folder(tmp_path / "data", {"a": 12, "b": 9}))
    assert report.near_duplicates == ()
    grouped = stratified_split(report.items, 0.3, 4)
    assert grouped == stratified_split(report.items, 0.3, 4, keep_copies_together=False)


def test_hand_made_items_are_never_grouped(tmp_path):
    report = scan_dataset(make_image_folder(tmp_path / "data", {"a": 3, "b": 3}))
    items = [type(item)(item.path, item.label) for item in report.items]
    assert near_duplicate_groups(items) == ()


def test_check_json_reports_copies_conflicts_and_leakage(tmp_path, capsys):
    data = write_photo_dataset(
        tmp_path / "data",
        {
            "people/astronaut_0.png": ["people:small", "people:jpeg", "people:big"],
            "people/chelsea_1.png": ["people:small", "people:jpeg", "people:big"],
            "things/camera_2.png": ["people:jpeg"],
        },
    )
    assert main(["check", str(data), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)  # stdout is one JSON object and nothing else

    assert {"classes", "skipped", "near_duplicates", "leakage"} <= report.keys()
    assert report["classes"] == [{"name": "people", "images": 23}, {"name": "things", "images": 16}]
    groups = {frozenset(g["images"]): g for g in report["near_duplicates"]}
    conflict = groups[frozenset({"things/camera_2.png", "people/camera_2_jpeg.jpg"})]
    assert sorted(conflict["labels"]) == ["people", "things"] and conflict["conflict"]
    assert report["leakage"]["after"] == 0
    assert report["leakage"]["num_val"] == report["split"]["val"]
    assert "label_issues" not in report

    assert main(["check", str(data)]) == 0
    text = capsys.readouterr().out
    assert "Near-identical images" in text and "a conflict!" in text
