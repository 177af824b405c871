"""Bounded memory at scale: what a scan keeps per image, grouping without all pairs, feature
files memory-mapped past a budget, and progress on long counts. ``bench/scale.py`` measures
the same at 1,000 to 50,000 images."""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_image_folder
from tl_core.common import CountProgress, describe
from tl_core.data import Fingerprint, connected_groups, scan_dataset, similar_pairs
from tl_core.features import FeatureKey, FeatureRows, FeatureStore, StoredFeatures
from tl_core.models import Preprocessing


def retained_bytes(folder: Path) -> tuple[int, object]:
    """Bytes still allocated once the scan of ``folder`` returned, and its report."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        report = scan_dataset(folder, max_workers=2)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, report
    finally:
        tracemalloc.stop()


def test_a_scan_keeps_a_small_bounded_record_per_image_and_no_pixels(tmp_path):
    scan_dataset(make_image_folder(tmp_path / "warm", {"a": 2, "b": 2}))  # one-off caches
    small, small_report = retained_bytes(make_image_folder(tmp_path / "s", {"a": 20, "b": 20}))
    large, large_report = retained_bytes(make_image_folder(tmp_path / "l", {"a": 120, "b": 120}))
    per_image = (large - small) / (large_report.num_images - small_report.num_images)
    # A path, a label, a 32-character digest and a 64-bit fingerprint: well under 2 KB. A
    # decoded 48 x 40 image alone would be 5.8 KB.
    assert 0 < per_image < 2048, per_image
    item = large_report.items[0]
    assert not hasattr(item, "__dict__") and not hasattr(item.fingerprint, "__dict__")
    assert {type(v).__name__ for v in (item.label, item.digest)} == {"str"}
    assert isinstance(item.fingerprint, Fingerprint)


def test_scan_progress_counts_up_to_the_total(tmp_path):
    folder = make_image_folder(tmp_path / "d", {"a": 30, "b": 25})
    calls = []
    scan_dataset(folder, progress=lambda done, total: calls.append((done, total)), max_workers=2)
    assert [done for done, _ in calls] == list(range(1, 56))
    assert {total for _, total in calls} == {55}


def brute_force_pairs(prints):
    return [
        (i, j)
        for i in range(len(prints))
        for j in range(i + 1, len(prints))
        if prints[i] is not None and prints[j] is not None and prints[i].matches(prints[j])
    ]


@pytest.mark.parametrize("crowded", [False, True])
def test_similar_pairs_finds_every_matching_pair(crowded):
    """Spread-out hashes, and a crowd of near-identical ones sharing every band (the case where
    one bucket holds a large share of the images)."""
    rng = random.Random(7)
    base = rng.getrandbits(64)
    prints = []
    for index in range(400):
        if index % 17 == 0:
            prints.append(None)
        elif crowded and index % 2:
            bits = base ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))
            prints.append(Fingerprint(bits, (100, 100, 100 + rng.randrange(30))))
        else:
            colour = tuple(rng.randrange(256) for _ in range(3))
            prints.append(Fingerprint(rng.getrandbits(64), colour))
    expected = brute_force_pairs(prints)
    assert similar_pairs(prints) == expected
    assert (len(expected) > 1000) == crowded


def test_connected_groups_track_only_the_paired_indices():
    assert connected_groups(10**9, []) == []
    assert connected_groups(10**9, [(5, 7), (7, 999_999_999), (2, 3)]) == [
        [2, 3],
        [5, 7, 999_999_999],
    ]


def feature_key() -> FeatureKey:
    prep = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    return FeatureKey("tiny", "package x", prep, "float32")


def test_features_past_the_budget_come_back_memory_mapped_and_equal(tmp_path):
    digests = [f"{i:032x}" for i in range(300)]
    features = torch.randn(300, 24)
    key = feature_key()
    FeatureStore(tmp_path).save(key, StoredFeatures({}), digests, features, 50.0)

    in_memory = FeatureStore(tmp_path).load(key)
    mapped = FeatureStore(tmp_path, memory_budget=1024).load(key)
    assert isinstance(mapped.rows, FeatureRows) and mapped.rows.memory_mapped
    assert not in_memory.rows.memory_mapped
    assert torch.equal(mapped.rows.matrix, features)
    assert torch.equal(in_memory.rows.stack(digests[::-1]), features.flip(0))
    assert torch.equal(mapped.rows[digests[7]], features[7])
    assert mapped.images_per_second == 50.0
    # The file stays a plain safetensors file.
    assert torch.equal(load_file(str(FeatureStore(tmp_path).path(key)))["features"], features)

    # Adding rows to a mapped store keeps the old ones and the new ones, and the mapping's
    # copy-on-write never lets a write to the tensor reach the file.
    scratch = FeatureStore(tmp_path, memory_budget=1024).load(key)
    scratch.rows.matrix[0] = 0
    assert torch.equal(FeatureStore(tmp_path).load(key).rows.matrix, features)
    more = torch.randn(10, 24)
    new_digests = [f"{i:032x}" for i in range(300, 310)]
    FeatureStore(tmp_path, memory_budget=1024).save(key, mapped, new_digests, list(more), 9.0)
    reloaded = FeatureStore(tmp_path, memory_budget=1024).load(key).rows
    assert list(reloaded) == digests + new_digests
    assert torch.equal(reloaded.matrix, torch.cat([features, more]))


def test_a_cut_short_feature_file_is_ignored(tmp_path):
    key = feature_key()
    store = FeatureStore(tmp_path, memory_budget=0)
    store.save(key, StoredFeatures({}), ["a" * 32, "b" * 32], torch.ones(2, 8), None)
    path = store.path(key)
    path.write_bytes(path.read_bytes()[:-8])
    assert store.load(key).rows == {}


def test_count_progress_reports_growing_counts_with_time_left_and_always_the_end():
    now = [0.0]
    lines = []
    progress = CountProgress(
        "Scanning", "files", lambda *line: lines.append(line), 1.0, lambda: now[0]
    )
    for done in range(1, 101):
        now[0] = done * 0.1
        progress(done, 100)
    # One line at the start, then at most one a second, and the last one.
    assert 10 <= len(lines) <= 12
    assert lines[-1] == ("Scanning: 100/100 files, done in 10 s", True)
    assert all(not final for _, final in lines[:-1])
    counts = [int(line.split(": ")[1].split("/")[0]) for line, _ in lines]
    assert counts == sorted(set(counts)) and all("left" in line for line, _ in lines[1:-1])
    assert describe("Scanning", 12_000, 50_000, "files", 12.6) == (
        "Scanning: 12,000/50,000 files, 40 s left"
    )
