"""Workspace folders: where uploads, datasets and runs live, and how uploads reach the disk."""

import io
import os
import time
import zipfile

import pytest

from tests.helpers import make_image_folder
from tests.helpers import make_zip as zip_folder
from tl_core.common import (
    MAX_NAME_BYTES,
    DatasetError,
    RunError,
    TLStudioError,
    safe_name,
    unique_path,
)
from tl_core.data import SAMPLE_DATASET_DIR, scan_dataset
from tl_core.runs import (
    WORKSPACE_ENV,
    FolderLock,
    Workspace,
    folder_access,
    folder_signature,
    is_loopback,
    save_stream,
)
from tl_core.runs import workspace as workspace_module


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


# ----------------------------------------------------------------------------- long names

LONG = "x" * 300  # over the 255 bytes a file system allows in one name


def test_safe_name_cuts_long_names_keeping_the_extension_and_distinct_names_apart():
    name = safe_name(LONG + ".png")
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".png")
    assert safe_name(LONG + "a.png") != safe_name(LONG + "b.png")
    assert safe_name(LONG + ".png") == name  # the same name always cuts the same way
    # Cut on bytes without splitting a character: still valid UTF-8, still within the limit.
    accented = safe_name("é" * 300 + ".jpeg")
    assert len(accented.encode()) <= MAX_NAME_BYTES and accented.endswith(".jpeg")
    assert safe_name("short.png") == "short.png"


def test_a_file_and_a_class_with_300_character_names_are_saved(ws):
    saved = ws.save_upload(io.BytesIO(b"1"), LONG + ".jpg")
    assert saved.read_bytes() == b"1" and saved.suffix == ".jpg"
    again = ws.save_upload(io.BytesIO(b"2"), LONG + ".jpg")
    assert again != saved and again.read_bytes() == b"2"  # unique, and still short enough
    dataset = ws.dataset_dir(LONG)
    (image,) = ws.add_class_images(dataset, LONG, [(LONG + ".png", io.BytesIO(b"3"))])
    assert image.read_bytes() == b"3" and image.parent.parent == dataset
    once = ws.save_upload_once(io.BytesIO(b"4"), LONG, LONG + ".pt", ws.weights)
    assert once.read_bytes() == b"4"


def test_a_zip_with_a_300_character_name_is_imported_and_extracted(ws, tmp_path):
    archive = make_zip(tmp_path / "a.zip", ["cats/1.jpg", "dogs/2.jpg"])
    folder = ws.import_zip(archive, LONG)
    assert (folder / "cats" / "1.jpg").is_file() and folder.parent == ws.datasets
    long_zip = ws.save_upload(io.BytesIO(archive.read_bytes()), LONG + ".zip")
    assert (ws.extract_upload(long_zip) / "dogs" / "2.jpg").is_file()


# ----------------------------------------------------------------------------- clean-up


def age(path, days: float) -> None:
    old = time.time() - days * 86400
    os.utime(path, (old, old))


def test_clean_uploads_deletes_only_uploads_older_than_a_day(ws):
    old_folder = ws.uploads / "extracted"
    (old_folder / "deep").mkdir(parents=True)
    (old_folder / "deep" / "a.png").write_bytes(b"x")
    old_csv = ws.uploads / "predictions-x.csv"
    old_csv.write_text("image\n")
    half = ws.uploads / ".upload-123.part"  # an upload cut off two days ago
    half.write_bytes(b"x")
    old_image = ws.save_upload_once(io.BytesIO(b"x"), "id-old", "a.png", ws.predict_uploads)
    new_image = ws.save_upload_once(io.BytesIO(b"x"), "id-new", "b.png", ws.predict_uploads)
    fresh = ws.uploads / "fresh.csv"
    fresh.write_text("image\n")
    for path in (old_folder, old_csv, half, old_image.parent):
        age(path, 2)
    dataset = ws.dataset_dir("kept")
    age(dataset, 30)  # datasets and runs are never cleaned up by age

    removed = ws.clean_uploads()
    assert set(removed) == {old_folder, old_csv, half, old_image.parent}
    assert not any(p.exists() for p in removed)
    assert new_image.is_file() and fresh.is_file() and dataset.is_dir()
    assert ws.predict_uploads.is_dir()  # the folder of all predict uploads stays
    assert ws.clean_uploads() == []


def test_clean_uploads_leaves_what_it_cannot_delete_and_goes_on(ws, monkeypatch):
    stuck, gone = ws.uploads / "stuck", ws.uploads / "gone.csv"
    stuck.mkdir()
    gone.write_text("image\n")
    for path in (stuck, gone):
        age(path, 2)
    remove = workspace_module._remove

    def refuse_one(path):
        if path == stuck:
            raise PermissionError(13, "Permission denied", str(path))
        remove(path)

    monkeypatch.setattr(workspace_module, "_remove", refuse_one)
    assert ws.clean_uploads() == [gone]  # no error: tidying never stops the app
    assert stuck.is_dir() and not gone.exists()


def test_discard_upload_deletes_only_inside_uploads(ws, tmp_path):
    extracted = ws.uploads / "batch"
    extracted.mkdir()
    ws.discard_upload(extracted)
    assert not extracted.exists()
    outside = make_image_folder(tmp_path / "mine", {"a": 1})
    ws.discard_upload(outside)
    ws.discard_upload(ws.uploads)
    ws.discard_upload(ws.uploads / ".." / "datasets")
    assert outside.is_dir() and ws.uploads.is_dir() and ws.datasets.is_dir()


def test_usage_counts_each_part_of_the_workspace(ws):
    (ws.dataset_dir("d") / "a.bin").write_bytes(b"x" * 1000)
    (ws.runs / "r").mkdir()
    (ws.runs / "r" / "model.safetensors").write_bytes(b"x" * 300)
    (ws.uploads / "u.csv").write_bytes(b"x" * 20)
    (ws.weights / "w.pt").write_bytes(b"x" * 4)
    usage = ws.usage()
    assert (usage.datasets, usage.runs, usage.uploads, usage.weights) == (1000, 300, 20, 4)
    assert usage.feature_cache == 0  # no comparison has run: the folder does not exist yet
    assert usage.total == 1324

    ws.feature_cache.mkdir()
    (ws.feature_cache / "net.safetensors").write_bytes(b"x" * 50_000)
    usage = ws.usage()
    assert usage.feature_cache == 50_000 and usage.total == 51_324
    assert ws.feature_cache.parent == ws.root


def make_run(ws, name: str):
    run = ws.runs / name
    run.mkdir()
    (run / "config.json").write_text("{}")
    return run


def test_a_run_a_live_training_writes_to_is_never_deleted(ws):
    live, done = make_run(ws, "live"), make_run(ws, "done")
    lock = FolderLock.acquire(live)
    try:
        stored = {folder.path.name: folder for folder in ws.stored_runs()}
        assert stored["live"].live and not stored["done"].live
        assert "still training" in stored["live"].title
        with pytest.raises(RunError, match="still training"):
            ws.delete_run(live)
        assert (live / "config.json").is_file()
    finally:
        lock.release()
    ws.delete_run(done)
    ws.delete_run(live)  # once its training has ended
    assert not done.exists() and not live.exists()


def test_only_folders_of_the_workspace_are_deleted(ws, tmp_path):
    outside = make_image_folder(tmp_path / "mine", {"a": 1})
    with pytest.raises(RunError, match="not a run of this workspace"):
        ws.delete_run(outside)
    with pytest.raises(DatasetError, match="not a dataset of this workspace"):
        ws.delete_dataset(ws.datasets)
    with pytest.raises(DatasetError, match="not a dataset"):
        ws.delete_dataset(ws.datasets / ".." / "runs")
    assert outside.is_dir() and ws.runs.is_dir()


def test_the_built_in_sample_dataset_is_never_deleted(ws, monkeypatch):
    with pytest.raises(DatasetError):  # where it ships: outside every workspace
        ws.delete_dataset(SAMPLE_DATASET_DIR)
    # A sample installed inside the workspace is refused by name.
    sample = make_image_folder(ws.datasets / "sample", {"a": 1})
    monkeypatch.setattr(workspace_module, "SAMPLE_DATASET_DIR", sample)
    with pytest.raises(DatasetError, match="sample dataset cannot be deleted"):
        ws.delete_dataset(sample / "a")
    assert sample.is_dir() and SAMPLE_DATASET_DIR.is_dir()


def test_delete_dataset_removes_the_whole_folder_unless_a_training_reads_it(ws, tmp_path):
    folder = ws.import_zip(make_zip(tmp_path / "a.zip", ["pets/cats/1.jpg", "pets/dogs/2.jpg"]))
    root = folder / "pets"  # what the picker and a training name: the class root
    with pytest.raises(DatasetError, match="being trained on"):
        ws.delete_dataset(root, in_use=[root])
    (stored,) = ws.stored_datasets()
    assert stored.path == folder and stored.size == 2
    ws.delete_dataset(root)
    assert not folder.exists() and ws.stored_datasets() == []


# ----------------------------------------------------------------------------- folders typed


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("192.168.1.20", False),
        ("myhost.example", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_a_server_for_this_computer_reads_folders_but_never_system_ones(ws, tmp_path):
    folder = make_image_folder(tmp_path / "photos", {"a": 1})
    assert ws.readable_folder(f"  {folder}  ", "127.0.0.1") == folder.resolve()
    for system in ("/", "/etc", "/proc", "/usr/share"):
        with pytest.raises(TLStudioError, match="system folder"):
            ws.readable_folder(system, "127.0.0.1")
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    with pytest.raises(TLStudioError, match="system folder"):
        ws.readable_folder(str(link), "127.0.0.1")  # a link is judged by where it leads
    with pytest.raises(TLStudioError, match="not a folder"):
        ws.readable_folder(str(tmp_path / "missing"), "127.0.0.1")
    with pytest.raises(TLStudioError, match="not a full path"):
        ws.readable_folder("photos", "127.0.0.1")


def test_a_server_for_other_computers_reads_only_home_and_workspace_folders(
    ws, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    in_home = make_image_folder(home / "photos", {"a": 1})
    in_workspace = make_image_folder(ws.uploads / "batch", {"a": 1})
    elsewhere = make_image_folder(tmp_path / "shared", {"a": 1})
    assert ws.readable_folder("~/photos", "0.0.0.0") == in_home.resolve()
    assert ws.readable_folder(str(in_workspace), "0.0.0.0") == in_workspace.resolve()
    with pytest.raises(TLStudioError, match="outside your home folder and the workspace") as caught:
        ws.readable_folder(str(elsewhere), "0.0.0.0")
    assert str(home) in caught.value.hint
    assert ws.readable_folder(str(elsewhere), "127.0.0.1") == elsewhere.resolve()


def test_a_workspace_or_home_under_a_system_folder_is_still_read(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(folder_access, "SYSTEM_FOLDERS", (tmp_path,))  # as /var/lib/...
    ws = Workspace(tmp_path / "ws").ensure()
    batch = make_image_folder(ws.uploads / "batch", {"a": 1})
    photos = make_image_folder(home / "photos", {"a": 1})
    assert ws.readable_folder(str(batch), "0.0.0.0") == batch.resolve()
    assert ws.readable_folder(str(photos), "0.0.0.0") == photos.resolve()
    with pytest.raises(TLStudioError, match="system folder"):
        ws.readable_folder(str(tmp_path), "127.0.0.1")
