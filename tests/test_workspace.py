"""Workspace folders: where uploads, datasets and runs live, and how uploads reach the disk."""

import io
import os
import zipfile

import pytest

from tests.helpers import make_image_folder
from tests.helpers import make_zip as zip_folder
from tl_core.datasets import scan_dataset
from tl_core.errors import DatasetError
from tl_core.workspace import (
    WORKSPACE_ENV,
    Workspace,
    folder_signature,
    safe_name,
    save_stream,
    unique_path,
)


class ChunkCounter(io.BytesIO):
    """A stream that records the size of every read, to show the copy is chunked."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "ws"))
    return Workspace.from_env()


def test_from_env_creates_the_folders(ws, tmp_path):
    assert ws.root == (tmp_path / "ws").resolve()
    for folder in (ws.datasets, ws.runs, ws.uploads, ws.weights):
        assert folder.is_dir() and folder.parent == ws.root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cats", "cats"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "item"),
        ("  ", "item"),
        ("a/b\\c", "a_b_c"),
        ("Golden retriever", "Golden retriever"),
    ],
)
def test_safe_name_never_leaves_the_folder(text, expected):
    assert safe_name(text) == expected


def test_unique_path_numbers_taken_names(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"")
    (tmp_path / "a-1.zip").write_bytes(b"")
    assert unique_path(tmp_path, "a.zip") == tmp_path / "a-2.zip"
    assert unique_path(tmp_path, "b.zip") == tmp_path / "b.zip"


def test_save_stream_copies_in_chunks_and_leaves_no_temp_file(tmp_path):
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than two chunks
    source = ChunkCounter(data)
    source.read(10)  # a stream already read from is rewound
    out = save_stream(source, tmp_path / "sub" / "big.bin")
    assert out.read_bytes() == data
    assert max(source.reads) <= 1 << 20 and len(source.reads) >= 3
    assert [p.name for p in out.parent.iterdir()] == ["big.bin"]


def test_save_upload_keeps_both_files_with_the_same_name(ws):
    first = ws.save_upload(io.BytesIO(b"one"), "photo.jpg")
    second = ws.save_upload(io.BytesIO(b"two"), "photo.jpg")
    assert first != second and first.parent == second.parent == ws.uploads
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"


def test_add_class_images_builds_a_folder_per_class(ws):
    dataset = ws.dataset_dir("my set")
    ws.add_class_images(dataset, "cats", [("a.png", io.BytesIO(b"1")), ("a.png", io.BytesIO(b"2"))])
    ws.add_class_images(dataset, "dogs/../x", [("b.jpg", io.BytesIO(b"3"))])
    assert sorted(p.name for p in (dataset / "cats").iterdir()) == ["a-1.png", "a.png"]
    assert (dataset / "dogs_.._x" / "b.jpg").is_file()
    with pytest.raises(DatasetError):
        ws.add_class_images(dataset, " ", [])


def make_zip(path, names):
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return path


def test_import_zip_extracts_into_a_new_dataset_folder(ws, tmp_path):
    archive = make_zip(tmp_path / "pets.zip", ["pets/cats/1.jpg", "pets/dogs/2.jpg"])
    first, second = ws.import_zip(archive), ws.import_zip(archive)
    assert first != second and first.parent == ws.datasets
    assert (first / "pets" / "cats" / "1.jpg").is_file()
    (entry, _) = ws.list_datasets()
    assert entry.classes == ("cats", "dogs") and entry.path.name == "pets"


def test_import_zip_refuses_paths_outside_the_target_and_cleans_up(ws, tmp_path):
    archive = make_zip(tmp_path / "evil.zip", ["../escape.jpg"])
    with pytest.raises(DatasetError, match="unsafe"):
        ws.import_zip(archive)
    assert not (tmp_path / "escape.jpg").exists()
    assert list(ws.datasets.iterdir()) == []


def test_extract_upload_goes_under_uploads(ws, tmp_path):
    folder = ws.extract_upload(make_zip(tmp_path / "new.zip", ["x/1.jpg", "2.png"]))
    assert folder.parent == ws.uploads
    assert sorted(p.name for p in folder.rglob("*.*")) == ["1.jpg", "2.png"]


def test_import_zip_of_a_non_zip_raises_and_leaves_nothing(ws, tmp_path):
    bogus = tmp_path / "not.zip"
    bogus.write_text("hello")
    with pytest.raises(DatasetError, match="could not be read"):
        ws.import_zip(bogus)
    assert list(ws.datasets.iterdir()) == []


def test_list_datasets_counts_classes_and_images(ws, tmp_path):
    ws.import_zip(
        make_zip(tmp_path / "a.zip", ["cats/1.jpg", "cats/2.png", "dogs/3.jpg", "dogs/notes.txt"])
    )
    ws.new_dataset_dir("empty")
    (entry,) = ws.list_datasets()
    assert entry.name == "a" and entry.classes == ("cats", "dogs") and entry.num_images == 3
    assert "2 classes" in entry.title


def test_list_datasets_finds_the_classes_of_a_zip_wrapped_twice_as_the_scan_does(ws, tmp_path):
    folder = make_image_folder(tmp_path / "src", {"cats": 3, "dogs": 3})
    ws.import_zip(zip_folder(folder, tmp_path / "pets.zip", wrap="pets/data"), "pets")
    (entry,) = ws.list_datasets()
    report = scan_dataset(entry.path)
    assert entry.path.name == "data" and entry.path == report.root
    assert entry.classes == report.class_names == ("cats", "dogs")
    assert entry.num_images == report.num_images == 6
    assert entry.title == "pets · 2 classes · 6 images"


def test_list_datasets_counts_nested_images_and_says_one_class(ws):
    solo = ws.dataset_dir("solo")
    make_image_folder(solo, {"owls": 1})
    (solo / ".hidden").mkdir()
    nested = ws.dataset_dir("nested")
    make_image_folder(nested / "owls" / "night", {"a": 2})  # owls/night/a/a_0.png ...
    make_image_folder(nested, {"cats": 1})
    entries = {entry.name: entry for entry in ws.list_datasets()}
    assert entries["solo"].classes == ("owls",)
    assert entries["solo"].title == "solo · 1 class · 1 image"
    # Images in a class's subfolders belong to the class, as in the scan.
    assert entries["nested"].classes == ("cats", "owls") and entries["nested"].num_images == 3


def test_folder_signature_changes_when_a_class_gains_a_file(ws, tmp_path):
    dataset = ws.dataset_dir("d")
    ws.add_class_images(dataset, "cats", [("a.png", io.BytesIO(b"1"))])
    # Age the folder first, so the new file's timestamp differs even on coarse file systems.
    os.utime(dataset / "cats", (1_000_000, 1_000_000))
    before = folder_signature(dataset)
    ws.add_class_images(dataset, "cats", [("b.png", io.BytesIO(b"1"))])
    assert folder_signature(dataset) != before
    assert folder_signature(tmp_path / "missing") == ()


def test_save_upload_once_keeps_one_copy_per_upload(ws):
    first = ws.save_upload_once(io.BytesIO(b"one"), "id1", "a.jpg", ws.weights)
    again = ws.save_upload_once(io.BytesIO(b"changed"), "id1", "a.jpg", ws.weights)
    other = ws.save_upload_once(io.BytesIO(b"two"), "id2", "a.jpg", ws.weights)
    assert first == again and first.read_bytes() == b"one"
    assert other != first and first.name == other.name == "a.jpg"
    assert first.parent.parent == ws.weights
