"""Dataset ingestion: folder and zip layouts, the health report, splits and the torch Dataset."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_image, make_image_folder, make_zip
from tl_core.common import DatasetError
from tl_core.data import (
    SKIP_CORRUPT,
    SKIP_EMPTY,
    SKIP_LOOSE,
    SKIP_NOT_IMAGE,
    SKIP_NOT_REGULAR,
    DatasetReport,
    ImageFolderDataset,
    ImageItem,
    archives,
    check_validation_classes,
    extract_zip,
    images,
    load_image,
    scan_dataset,
    scanned_dataset,
    stratified_split,
)
from tl_core.data import sample as sample_data

# ----------------------------------------------------------------------------- helpers


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def reasons(report: DatasetReport) -> dict[str, str]:
    return {report.relative(s.path): s.reason for s in report.skipped}


def codes(issues) -> set[str]:
    return {issue.code for issue in issues}


def relative_items(report: DatasetReport) -> set[tuple[str, str]]:
    return {(report.relative(i.path), i.label) for i in report.items}


# ----------------------------------------------------------------------------- layouts


def test_good_folder_reports_classes_counts_and_items(tmp_path):
    root = make_image_folder(tmp_path / "data", {"dog": 12, "cat": 10, "bird": 11})

    report = scan_dataset(root)

    assert report.class_names == ("bird", "cat", "dog")
    assert report.counts == {"bird": 11, "cat": 10, "dog": 12}
    assert report.num_images == 33
    assert report.can_train and not report.errors
    assert report.skipped == () and report.duplicates == () and report.warnings == ()
    assert report.root == root.resolve()
    assert all(item.path.is_absolute() and item.path.is_file() for item in report.items)
    assert all(item.path.parent.name == item.label for item in report.items)
    assert report.imbalance_ratio == pytest.approx(12 / 10)

    data = json.loads(json.dumps(report.to_dict()))
    assert data["can_train"] is True
    assert data["counts"] == {"bird": 11, "cat": 10, "dog": 12}
    assert {"path": "cat/cat_0.png", "label": "cat"} in data["items"]

    frame = report.counts_frame()
    assert list(frame.columns) == ["class", "images"]
    assert frame.set_index("class")["images"].to_dict() == {"bird": 11, "cat": 10, "dog": 12}


def test_nested_subfolders_take_the_class_folder_label(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    nested = root / "cat" / "indoor"
    nested.mkdir()
    make_image(seed=99).save(nested / "x.png")

    report = scan_dataset(root)

    assert ("cat/indoor/x.png", "cat") in relative_items(report)
    assert report.counts == {"cat": 3, "dog": 2}


@pytest.mark.parametrize("wrap", ["animals", None], ids=["wrapping-folder", "classes-at-root"])
def test_zip_with_or_without_wrapping_folder(tmp_path, wrap):
    folder = make_image_folder(tmp_path / "animals", {"cat": 3, "dog": 4})
    archive = make_zip(folder, tmp_path / "animals.zip", wrap=wrap)
    dest = tmp_path / "workspace" / "animals"

    report = scan_dataset(archive, extract_to=dest)

    assert report.source == archive.resolve()
    assert report.class_names == ("cat", "dog")
    assert report.counts == {"cat": 3, "dog": 4}
    assert report.root.is_relative_to(dest.resolve())
    assert report.can_train
    # Nothing else is left next to the destination (no temporary folders).
    assert [p.name for p in dest.parent.iterdir()] == ["animals"]


def test_a_temporary_scan_of_a_zip_leaves_nothing_behind(tiny_dataset_zip):
    with scanned_dataset(tiny_dataset_zip) as report:
        assert report.counts == {"blue": 6, "green": 6, "red": 6}
        extraction = report.root.parent.parent
        assert extraction.name.startswith("tl-studio-dataset-") and report.items[0].path.is_file()
    assert not extraction.exists()

    # Also when the block fails half-way.
    with pytest.raises(RuntimeError), scanned_dataset(tiny_dataset_zip) as report:
        extraction = report.root.parent.parent
        raise RuntimeError("the caller failed")
    assert not extraction.exists()

    # A bare scan of a zip must say where the images go: nothing is left in the temp folder.
    with pytest.raises(ValueError, match="extract_to"):
        scan_dataset(tiny_dataset_zip)


def test_a_named_pipe_is_skipped_not_opened(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    os.mkfifo(root / "cat" / "x.png")  # opening it for reading would block forever
    (root / "dog" / "link.png").symlink_to(root / "cat" / "x.png")

    report = scan_dataset(root)  # returns: the test would hang here before

    assert {(s.path.name, s.reason) for s in report.skipped} == {
        ("x.png", SKIP_NOT_REGULAR),
        ("link.png", SKIP_NOT_REGULAR),
    }
    assert report.counts == {"cat": 3, "dog": 3}
    with pytest.raises(DatasetError, match="not a regular file"):
        load_image(root / "cat" / "x.png")


def test_files_over_the_size_limit_are_skipped_with_the_reason(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    with open(root / "cat" / "huge.png", "wb") as huge:  # sparse: takes no disk space
        huge.truncate(images.MAX_IMAGE_BYTES + 1)

    report = scan_dataset(root)

    reasons = {s.path.name: s.reason for s in report.skipped}
    assert reasons.keys() == {"huge.png"} and "file too large" in reasons["huge.png"]
    with pytest.raises(DatasetError, match="file too large"):
        load_image(root / "cat" / "huge.png")


def test_files_are_hashed_in_chunks_not_read_whole(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})

    def refuse(self, *args, **kwargs):
        raise AssertionError("a whole file was read into memory")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    report = scan_dataset(root)
    assert report.num_images == 6 and not report.skipped


def test_hidden_class_folders_are_reported_not_dropped_silently(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3, ".bird": 3})

    report = scan_dataset(root)

    assert report.class_names == ("cat", "dog")
    assert report.hidden_folders == (".bird",)
    assert any(".bird" in w.message and "dot" in w.message for w in report.warnings)
    assert report.to_dict()["hidden_folders"] == [".bird"]


def test_a_zip_bomb_under_the_size_cap_is_refused_by_its_ratio(tmp_path):
    folder = make_image_folder(tmp_path / "ok", {"cat": 2, "dog": 2})
    archive = make_zip(folder, tmp_path / "bomb.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/zeros.png", b"\0" * (40 * 1024**2))  # 40 MB from about 40 kB
    assert archive.stat().st_size < 200_000
    dest = tmp_path / "out"

    with pytest.raises(DatasetError, match="expands .* times") as caught:
        scan_dataset(archive, extract_to=dest)

    assert "hostile" in caught.value.hint
    assert (
        not dest.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    )


def test_extraction_refuses_to_fill_the_disk(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "ok", {"cat": 2, "dog": 2})
    archive = make_zip(folder, tmp_path / "data.zip")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        archives.shutil, "disk_usage", lambda path: usage._replace(free=10 * 1024**2)
    )
    dest = tmp_path / "out"

    with pytest.raises(DatasetError, match="only 0.01 GB are free") as caught:
        scan_dataset(archive, extract_to=dest)

    assert "Free some disk space" in caught.value.hint and not dest.exists()


def test_clutter_is_ignored_silently(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    good_jpeg = jpeg_bytes(make_image(seed=7))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "cat" / "._cat_0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "dog" / "Thumbs.db").write_bytes(b"junk")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes(good_jpeg)
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._cat_0.png").write_bytes(b"junk")
    (root / "dog" / ".cache").mkdir()
    (root / "dog" / ".cache" / "thumb.jpg").write_bytes(good_jpeg)

    report = scan_dataset(root)

    assert report.class_names == ("cat", "dog")
    assert report.counts == {"cat": 3, "dog": 3}
    assert report.skipped == ()
    assert "skipped_files" not in codes(report.warnings)


def test_macos_zip_clutter_is_not_extracted_or_reported(tmp_path):
    folder = make_image_folder(tmp_path / "animals", {"cat": 3, "dog": 3})
    archive = make_zip(
        folder,
        tmp_path / "animals.zip",
        wrap="animals",
        extra={
            "__MACOSX/animals/cat/._cat_0.png": b"resource fork",
            "animals/.DS_Store": b"Bud1",
            "animals/dog/._dog_1.png": b"resource fork",
        },
    )

    report = scan_dataset(archive, extract_to=tmp_path / "out")

    assert report.counts == {"cat": 3, "dog": 3}
    assert report.skipped == ()
    assert not (tmp_path / "out" / "__MACOSX").exists()
    assert not (tmp_path / "out" / "animals" / ".DS_Store").exists()


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    full = jpeg_bytes(make_image((64, 64), seed=5))
    (root / "cat" / "notes.jpg").write_text("this is not a picture")
    (root / "cat" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "readme.txt").write_text("hello")
    (root / "dog" / "broken-link.jpg").symlink_to(root / "missing.jpg")
    make_image(seed=6).save(root / "loose.png")

    report = scan_dataset(root)

    assert reasons(report) == {
        "cat/notes.jpg": SKIP_NOT_IMAGE,
        "cat/truncated.jpg": SKIP_CORRUPT,
        "dog/empty.png": SKIP_EMPTY,
        "dog/readme.txt": SKIP_NOT_IMAGE,
        "dog/broken-link.jpg": "unreadable: No such file or directory",
        "loose.png": SKIP_LOOSE,
    }
    assert report.counts == {"cat": 3, "dog": 3}
    assert report.can_train
    assert "skipped_files" in codes(report.warnings)
    assert {"path": "loose.png", "reason": SKIP_LOOSE} in report.to_dict()["skipped"]


def test_formats_are_detected_by_content(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    make_image(seed=11).save(root / "cat" / "really_a_png.jpg", "PNG")
    (root / "cat" / "no_extension").write_bytes(jpeg_bytes(make_image(seed=12)))
    for i, fmt in enumerate(["BMP", "GIF", "WEBP", "TIFF"]):
        make_image(seed=20 + i).save(root / "dog" / f"img_{i}.{fmt.lower()}", fmt)
    make_image(seed=30).save(root / "dog" / "picture.ppm", "PPM")

    report = scan_dataset(root)

    assert report.counts == {"cat": 4, "dog": 6}
    assert reasons(report) == {"dog/picture.ppm": "unsupported image format: PPM"}


def test_progress_reports_every_file(tiny_dataset):
    calls = []
    scan_dataset(tiny_dataset, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (18, 18)
    assert [done for done, _ in calls] == list(range(1, 19))


# ----------------------------------------------------------------------------- image decoding


def test_exif_orientation_is_applied(tmp_path):
    # Left half red, right half blue; orientation 6 means "rotate 90 degrees clockwise to view".
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, "JPEG", exif=exif, quality=95)

    image = load_image(path)

    assert image.size == (20, 40)
    top, bottom = np.asarray(image)[2, 10], np.asarray(image)[-3, 10]
    assert top[0] > 200 and top[2] < 60  # The left (red) side is now on top.
    assert bottom[2] > 200 and bottom[0] < 60


def _sixteen_bit_gray() -> Image.Image:
    return Image.fromarray(np.full((10, 12), 30000, dtype=np.uint16))


@pytest.mark.parametrize(
    ("make", "fmt", "expected"),
    [
        (lambda: Image.new("RGBA", (12, 10), (255, 0, 0, 0)), "PNG", (255, 255, 255)),
        (lambda: Image.new("RGBA", (12, 10), (255, 0, 0, 255)), "PNG", (255, 0, 0)),
        (lambda: Image.new("LA", (12, 10), (0, 0)), "PNG", (255, 255, 255)),
        (lambda: Image.new("L", (12, 10), 100), "PNG", (100, 100, 100)),
        (lambda: Image.new("1", (12, 10), 1), "PNG", (255, 255, 255)),
        (lambda: Image.new("RGB", (12, 10), (0, 200, 0)).convert("P"), "GIF", (0, 200, 0)),
        (lambda: Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (lambda: Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
        (lambda: Image.new("RGBA", (12, 10), (0, 0, 255, 0)), "WEBP", (255, 255, 255)),
        # 16-bit gray must be rescaled (30000 / 257), not clipped to 255.
        (_sixteen_bit_gray, "PNG", (117, 117, 117)),
    ],
    ids=["rgba-clear", "rgba-opaque", "la", "l", "1bit", "palette", "cmyk-jpeg", "cmyk-tiff",
         "webp-alpha", "gray16"],
)  # fmt: skip
def test_every_mode_loads_as_rgb(tmp_path, make, fmt, expected):
    path = tmp_path / f"image.{fmt.lower()}"
    make().save(path, fmt)

    image = load_image(path)

    assert image.mode == "RGB" and image.size == (12, 10)
    assert np.abs(np.asarray(image, int)[5, 6] - expected).max() <= 6


def test_palette_transparency_becomes_white(tmp_path):
    image = Image.new("P", (12, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    path = tmp_path / "p.png"
    image.save(path, transparency=0)

    pixels = np.asarray(load_image(path))

    assert tuple(pixels[5, 6]) == (255, 255, 255)
    assert tuple(pixels[0, 0]) == (255, 0, 0)


def test_load_image_is_fully_loaded_and_detached(tmp_path):
    path = tmp_path / "a.png"
    make_image(seed=1).save(path)
    image = load_image(path)
    path.unlink()  # Fails on platforms that lock open files; the pixels must be in memory.
    assert np.asarray(image).shape == (40, 48, 3)


def test_load_image_draft_decodes_large_jpegs_smaller(tmp_path):
    path = tmp_path / "big.jpg"
    make_image((800, 600), seed=2).save(path, quality=90)
    assert load_image(path).size == (800, 600)
    small = load_image(path, draft_size=100)
    assert min(small.size) >= 100 and small.size[0] < 800


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not an image", SKIP_NOT_IMAGE), (b"", SKIP_EMPTY), (None, "unreadable")],
)
def test_load_image_errors_name_the_file(tmp_path, content, reason):
    path = tmp_path / "holiday-photo.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match="holiday-photo.jpg") as caught:
        load_image(path)
    assert reason in caught.value.message and caught.value.hint


def test_load_image_truncated_jpeg(tmp_path):
    data = jpeg_bytes(make_image((64, 64), seed=3))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DatasetError, match=f"cut.jpg: {SKIP_CORRUPT}"):
        load_image(path)


# ----------------------------------------------------------------------------- health report


def test_duplicates_within_and_across_classes(tmp_path):
    root = make_image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    (root / "cat" / "copy.png").write_bytes((root / "cat" / "cat_0.png").read_bytes())
    (root / "dog" / "mislabelled.png").write_bytes((root / "cat" / "cat_1.png").read_bytes())

    report = scan_dataset(root)

    groups = {
        frozenset(report.relative(p) for p in g.paths): g.across_classes for g in report.duplicates
    }
    assert groups == {
        frozenset({"cat/cat_0.png", "cat/copy.png"}): False,
        frozenset({"cat/cat_1.png", "dog/mislabelled.png"}): True,
    }
    assert {"duplicates_across_classes", "duplicates_within_class"} <= codes(report.warnings)
    assert report.can_train  # Duplicates warn; they do not block.
    assert report.counts == {"cat": 4, "dog": 4}


def test_imbalance_warning_starts_at_ratio_three(tmp_path):
    balanced_enough = scan_dataset(make_image_folder(tmp_path / "a", {"a": 29, "b": 10}))
    imbalanced = scan_dataset(make_image_folder(tmp_path / "b", {"a": 30, "b": 10}))

    assert balanced_enough.imbalance_ratio == pytest.approx(2.9)
    assert "imbalance" not in codes(balanced_enough.warnings)
    assert imbalanced.imbalance_ratio == pytest.approx(3.0)
    assert "imbalance" in codes(imbalanced.warnings)
    assert imbalanced.can_train


def test_tiny_classes_warn(tmp_path):
    report = scan_dataset(make_image_folder(tmp_path / "d", {"big": 10, "small": 9}))
    assert report.tiny_classes == ["small"]
    assert "tiny_class" in codes(report.warnings)
    assert report.can_train


def test_one_class_blocks_training(tmp_path):
    report = scan_dataset(make_image_folder(tmp_path / "d", {"cat": 5}))
    assert codes(report.errors) == {"too_few_classes"}
    assert not report.can_train
    assert report.to_dict()["can_train"] is False
    with pytest.raises(DatasetError, match="at least 2"):
        report.require_trainable()


def test_class_with_one_readable_image_blocks_training(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 5, "dog": 1})
    (root / "dog" / "broken.jpg").write_text("nope")
    (root / "empty").mkdir()

    report = scan_dataset(root)

    assert report.counts == {"cat": 5, "dog": 1, "empty": 0}
    assert codes(report.errors) == {"class_too_small"}
    assert "'dog'" in " ".join(e.message for e in report.errors)
    assert "'empty'" in " ".join(e.message for e in report.errors)
    assert not report.can_train


def test_nothing_readable_blocks_training(tmp_path):
    root = tmp_path / "d"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_text("text")
    make_image().save(root / "loose.png")

    report = scan_dataset(root)

    assert codes(report.errors) == {"no_images"}
    assert "top level" in report.errors[0].message
    assert not report.can_train


# ----------------------------------------------------------------------------- bad sources


def test_missing_path_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as caught:
        scan_dataset(tmp_path / "nope")
    assert caught.value.hint


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("data.txt", b"hello", "neither a folder nor a .zip"),
        ("data.zip", b"PK junk", "not a valid zip"),
    ],
)
def test_non_zip_files_are_dataset_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as caught:
        scan_dataset(path, extract_to=tmp_path / "out")
    assert caught.value.hint
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "evil", ["../evil.png", "/tmp/evil.png", "a/../../evil.png", "..\\evil.png", "C:/evil.png"]
)
def test_zip_slip_is_rejected(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat/a.png", b"x")
        zf.writestr(evil, b"payload")
    dest = tmp_path / "sub" / "out"

    with pytest.raises(DatasetError, match="unsafe path"):
        scan_dataset(archive, extract_to=dest)

    assert not dest.exists()
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "sub" / "evil.png").exists()


def test_zip_bomb_is_stopped(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/zeros.bin", bytes(8 * 1024 * 1024))
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "out"

    with pytest.raises(DatasetError, match="limit"):
        extract_zip(archive, dest, max_bytes=1024 * 1024)

    assert list(tmp_path.iterdir()) == [archive]


def test_zip_with_a_header_that_lies_about_its_size_is_stopped(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cat/big.bin", bytes(2 * 1024 * 1024))
    # Rewrite the central directory's uncompressed size (offset 24 in the entry) to 1 KiB.
    data = bytearray(archive.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1024).to_bytes(4, "little")
    archive.write_bytes(bytes(data))

    # Whichever check fires first (the size count or the CRC), nothing may be left behind.
    with pytest.raises(DatasetError, match="damaged|limit"):
        extract_zip(archive, tmp_path / "out", max_bytes=1024 * 1024)

    assert list(tmp_path.iterdir()) == [archive]


def test_too_many_files_is_stopped(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(20):
            zf.writestr(f"cat/{i}.png", b"x")
    with pytest.raises(DatasetError, match="more than the limit of 10"):
        extract_zip(archive, tmp_path / "out", max_files=10)


def test_failed_extraction_leaves_no_half_folder(tmp_path):
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cat/a.bin", b"A" * 1000)
        zf.writestr("dog/b.bin", b"B" * 1000)
    data = archive.read_bytes().replace(b"B" * 1000, b"C" * 1000)  # Breaks dog/b.bin's CRC.
    archive.write_bytes(data)
    dest = tmp_path / "work" / "out"

    with pytest.raises(DatasetError, match="damaged"):
        extract_zip(archive, dest)

    assert list((tmp_path / "work").iterdir()) == []


def test_file_and_folder_name_clash_is_a_dataset_error(tmp_path):
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat", b"a file")
        zf.writestr("cat/a.png", b"a file inside a folder of the same name")

    with pytest.raises(DatasetError, match="Could not extract cat/a.png"):
        extract_zip(archive, tmp_path / "out")

    assert list(tmp_path.iterdir()) == [archive]


def test_password_protected_zip_is_a_dataset_error(tmp_path):
    archive = tmp_path / "locked.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat/a.png", b"x")
    data = bytearray(archive.read_bytes())
    data[data.rindex(b"PK\x01\x02") + 8] |= 1  # Set the "encrypted" flag in the central record.
    archive.write_bytes(bytes(data))

    with pytest.raises(DatasetError, match="password-protected"):
        extract_zip(archive, tmp_path / "out")


def test_extract_refuses_a_non_empty_destination(tmp_path, tiny_dataset_zip):
    dest = tmp_path / "occupied"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        extract_zip(tiny_dataset_zip, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_extract_into_an_existing_empty_folder(tmp_path, tiny_dataset_zip):
    dest = tmp_path / "empty"
    dest.mkdir()
    assert extract_zip(tiny_dataset_zip, dest) == dest
    assert sorted(p.name for p in (dest / "tiny").iterdir()) == ["blue", "green", "red"]


# ----------------------------------------------------------------------------- splits


def _items(counts: dict[str, int]) -> list[ImageItem]:
    return [
        ImageItem(Path(f"/data/{label}/{i:03d}.jpg"), label)
        for label, n in counts.items()
        for i in range(n)
    ]


def test_stratified_split_holds_out_each_class():
    items = _items({"a": 50, "b": 20, "c": 2, "d": 3})

    train, val = stratified_split(items, val_fraction=0.2, seed=0)

    def per_class(subset):
        return {label: sum(i.label == label for i in subset) for label in "abcd"}

    assert per_class(val) == {"a": 10, "b": 4, "c": 1, "d": 1}
    assert per_class(train) == {"a": 40, "b": 16, "c": 1, "d": 2}
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(items)


def test_stratified_split_keeps_one_of_each_side_at_extreme_fractions():
    items = _items({"a": 5, "b": 2})
    for fraction in (0.01, 0.99):
        train, val = stratified_split(items, val_fraction=fraction)
        assert {i.label for i in train} == {i.label for i in val} == {"a", "b"}


def test_stratified_split_is_deterministic_by_seed_and_order_free():
    items = _items({"a": 30, "b": 30})
    first = stratified_split(items, seed=1)
    again = stratified_split(list(reversed(items)), seed=1)
    other = stratified_split(items, seed=2)

    assert first == again
    assert set(first[1]) != set(other[1])


def test_stratified_split_of_one_class_ignores_the_others():
    base = stratified_split(_items({"a": 30, "b": 30}), seed=0)[1]
    grown = stratified_split(_items({"a": 30, "b": 30, "c": 30}), seed=0)[1]
    assert [i for i in grown if i.label != "c"] == base


def test_stratified_split_rejects_single_image_classes():
    with pytest.raises(DatasetError, match="'b'"):
        stratified_split(_items({"a": 5, "b": 1}))
    with pytest.raises(ValueError):
        stratified_split(_items({"a": 5}), val_fraction=1.0)


def test_validation_folder_classes_must_be_known(tmp_path):
    train = scan_dataset(make_image_folder(tmp_path / "train", {"cat": 3, "dog": 3, "eel": 3}))
    subset = scan_dataset(make_image_folder(tmp_path / "val", {"cat": 2, "dog": 1}, seed=1))
    extra = scan_dataset(make_image_folder(tmp_path / "val2", {"cat": 2, "fox": 2}, seed=2))
    empty_root = tmp_path / "val3"
    (empty_root / "cat").mkdir(parents=True)
    empty = scan_dataset(empty_root)

    assert check_validation_classes(train, subset) == ["eel"]
    with pytest.raises(DatasetError, match="'fox'"):
        check_validation_classes(train, extra)
    with pytest.raises(DatasetError, match="no readable images"):
        check_validation_classes(train, empty)


# ----------------------------------------------------------------------------- torch dataset


def test_image_folder_dataset_yields_tensors_and_indices(tiny_dataset):
    report = scan_dataset(tiny_dataset)
    dataset = ImageFolderDataset(report.items, report.class_names)

    image, index = dataset[0]
    assert len(dataset) == 18
    assert image.shape == (3, 40, 48) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert index == report.class_names.index(report.items[0].label)
    assert dataset.targets == [report.class_names.index(i.label) for i in report.items]


def test_image_folder_dataset_pickles_and_batches(tiny_dataset):
    from torchvision import transforms

    report = scan_dataset(tiny_dataset)
    transform = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
    dataset = pickle.loads(
        pickle.dumps(ImageFolderDataset(report.items, ["red", "green", "blue"], transform))
    )

    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=18)))

    assert images.shape == (18, 3, 32, 32)
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    # Class colours survive: the red class is reddest on average.
    red = images[labels == 0].mean(dim=(0, 2, 3))
    assert red[0] > red[1] and red[0] > red[2]


def test_image_folder_dataset_rejects_unknown_labels(tiny_dataset):
    report = scan_dataset(tiny_dataset)
    with pytest.raises(DatasetError, match="'red'"):
        ImageFolderDataset(report.items, ["green", "blue"])


# ----------------------------------------------------------------------------- sample dataset


def test_sample_dataset_scans_clean():
    report = scan_dataset(sample_data.sample_dataset_path())

    assert len(report.class_names) >= 3
    assert report.can_train
    assert report.skipped == () and report.duplicates == () and report.warnings == ()
    assert min(report.counts.values()) >= 20
    sizes = {load_image(item.path).size for item in report.items}
    assert all(min(s) >= 96 * 0.6 and max(s) <= 160 for s in sizes)
    assert any(w != h for w, h in sizes)  # Some canvases are not square.
    total = sum(os.path.getsize(item.path) for item in report.items)
    assert total < 1.5 * 1024 * 1024


def test_missing_sample_dataset_is_a_dataset_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_data, "SAMPLE_DATASET_DIR", tmp_path / "missing")
    with pytest.raises(DatasetError, match="sample dataset") as caught:
        sample_data.sample_dataset_path()
    assert "make_sample_dataset.py" in caught.value.hint
