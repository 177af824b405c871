"""Crashes, full disks, unwritable places and concurrent runs: every fault ends in a sentence,
and a run folder never says something about its weights that is not true of them."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image, make_image_folder
from tests.training import tiny_config
from tl_core.cli.main import main
from tl_core.common import (
    REPORT_HINT,
    RunError,
    TLStudioError,
    check_output_file,
    check_output_folder,
    explain_failure,
    outputs,
)
from tl_core.jobs import TrainingJob
from tl_core.runs import Run, RunWriter, load_run, run_is_live, summarize_run, weights_metadata
from tl_core.runs import writer as runs
from tl_core.training import train, training_run
from tl_core.training import trainer as engine

TINY_FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--freeze", "none",
    "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--workers", "0",
]  # fmt: skip
DEADLINE = 240.0  # seconds: a subprocess imports torch and timm before its first epoch


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_process(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tl_core.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_metrics(run: Path) -> dict | None:
    try:
        return json.loads((run / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for(predicate, process: subprocess.Popen, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the process ended early: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("condition not met in time")


def disk_full(path="model.safetensors"):
    def fail(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return fail


def temp_extractions() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tl-studio-dataset-*")}


# ---- zips checked by the CLI leave nothing behind ----------------------------------------------


def test_check_of_a_zip_works_and_leaves_nothing_in_the_temp_folder(capsys, tiny_dataset_zip):
    before = temp_extractions()
    code, out, err = run_cli(capsys, "check", tiny_dataset_zip, "--val", tiny_dataset_zip)
    assert code == 0, err
    assert "Ready to train" in out
    code, out, err = run_cli(capsys, "check", tiny_dataset_zip, "--json")
    assert code == 0 and json.loads(out)["num_images"] == sum(TINY_CLASSES.values())
    assert temp_extractions() == before


# ---- kill -9 mid-training ----------------------------------------------------------------------


def test_a_killed_training_leaves_true_metrics_and_shows_as_interrupted(capsys, tmp_path):
    data = make_image_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8})
    run = tmp_path / "run"
    process = cli_process("train", data, "--out", run, *TINY_FLAGS, "--epochs", "100000",
                          "--patience", "0", "--quiet")  # fmt: skip
    try:
        wait_for(lambda: (m := read_metrics(run)) and len(m["history"]) >= 3, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.communicate()

    metrics = read_metrics(run)
    assert metrics["status"] == "running"  # what the killed process last wrote
    saved_epoch = int(weights_metadata(run / "model.safetensors")["epoch"])
    # metrics.json names the epoch whose weights are on disk, or none while they were replaced.
    assert metrics["best_epoch"] in (saved_epoch, None)
    if metrics["best_epoch"] is not None:
        row = metrics["history"][saved_epoch - 1]
        assert metrics["best_val_accuracy"] == row["val_accuracy"]

    assert not run_is_live(run)
    assert summarize_run(run).status == "interrupted"
    # The weights are used as they are, with a word that the run did not finish.
    code, out, err = run_cli(capsys, "evaluate", run, "--json", "--device", "cpu")
    assert code == 0, err
    assert "was interrupted" in err and f"epoch {saved_epoch}" in err
    recorded = metrics["history"][saved_epoch - 1]["val_accuracy"]
    assert json.loads(out)["accuracy"] == pytest.approx(recorded)


def test_metrics_never_name_weights_that_are_not_on_disk(tiny_dataset, tmp_path, monkeypatch):
    # Improvements wait in memory: only the first and the final save write weights.
    monkeypatch.setattr(engine, "SAVE_INTERVAL_SECONDS", 1e9)
    run = tmp_path / "run"
    seen = []

    def check_disk():
        metrics = read_metrics(run)
        weights = run / "model.safetensors"
        on_disk = int(weights_metadata(weights)["epoch"]) if weights.exists() else None
        named = metrics and metrics["best_epoch"]
        seen.append((named, on_disk))
        assert named is None or named == on_disk, (named, on_disk)

    for method in ("write_metrics", "write_weights"):
        original = getattr(RunWriter, method)

        def checked(self, *args, _original=original, **kwargs):
            _original(self, *args, **kwargs)
            check_disk()

        monkeypatch.setattr(RunWriter, method, checked)
    train(tiny_config(tiny_dataset, epochs=6, lr=1e-2), run)
    metrics = read_metrics(run)
    best = max(metrics["history"], key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert seen[-1] == (best["epoch"], best["epoch"])
    assert len(seen) >= 7


def test_a_live_run_holds_its_folder_and_releases_it_when_done(tmp_path):
    writer = RunWriter.create(tmp_path / "run")
    assert run_is_live(writer.path)
    with pytest.raises(RunError, match="Another training is already writing"):
        RunWriter._claim(writer.path, created=False)
    writer.close()
    assert not run_is_live(writer.path)
    assert not run_is_live(tmp_path / "no-lock-here")


# ---- two trainings on the same --out -----------------------------------------------------------


def test_two_trainings_on_one_out_folder_one_is_refused_the_other_is_whole(capsys, tmp_path):
    three = make_image_folder(tmp_path / "three", TINY_CLASSES)
    two = make_image_folder(tmp_path / "two", {"cats": 6, "dogs": 6}, seed=3)
    run = tmp_path / "run"
    flags = [*TINY_FLAGS, "--epochs", "2", "--quiet"]
    processes = [cli_process("train", data, "--out", run, *flags) for data in (three, two)]
    results = [(p.wait(timeout=DEADLINE), *p.communicate()) for p in processes]

    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, _, err in results if code == 1)
    assert "Another training is already writing" in refused or "already exists" in refused
    assert "Traceback" not in refused

    labels = json.loads((run / "labels.json").read_text())
    weights = load_file(str(run / "model.safetensors"))
    assert weights["classifier.weight"].shape[0] == len(labels)
    split = json.loads((run / "split.json").read_text())
    assert {label for _, label in split["train"]} == set(labels)
    image = tmp_path / "new.png"
    make_image(seed=5).save(image)
    code, out, err = run_cli(capsys, "predict", run, image, "--json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)[0]["predictions"][0]["label"] in labels


def test_a_failed_start_never_deletes_a_folder_it_did_not_create(tmp_path):
    data = make_image_folder(tmp_path / "one_class", {"only": 5})
    (tmp_path / "mine").mkdir()  # made by the user, empty
    with pytest.raises(TLStudioError):
        train(tiny_config(data), tmp_path / "mine")
    assert (tmp_path / "mine").is_dir() and not list((tmp_path / "mine").iterdir())
    # A folder the run created itself is removed again.
    with pytest.raises(TLStudioError):
        train(tiny_config(data), tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ---- full disks and unwritable places ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words", "hint"),
    [
        (errno.ENOSPC, "disk is full", "Free some disk space"),
        (errno.EDQUOT, "quota", "larger quota"),
        (errno.EROFS, "read-only", "writable disk"),
        (errno.EACCES, "Permission denied", "allowed to write"),
        (errno.EPERM, "not permitted", "allowed to write"),
        (errno.EISDIR, "folder is in the way", "not the name of an existing folder"),
        (errno.ENOTDIR, "file is in the way", "actually a file"),
        (errno.ENAMETOOLONG, "too long", "shorter"),
    ],
)
def test_foreseeable_os_errors_become_sentences(code, words, hint):
    error = OSError(code, os.strerror(code), "/runs/x/model.safetensors")
    message, advice = explain_failure(error)
    assert words in message and "/runs/x/model.safetensors" in message
    assert hint in advice and advice != REPORT_HINT
    # Also when a library wrapped it in an error of its own.
    try:
        try:
            raise error
        except OSError as exc:
            raise RuntimeError("DataLoader worker failed") from exc
    except RuntimeError as wrapped:
        assert explain_failure(wrapped) == (message, advice)


def test_a_full_disk_while_saving_weights_is_recorded_as_a_failure(
    tiny_dataset, tmp_path, monkeypatch
):
    monkeypatch.setattr(runs, "save_weights", disk_full())
    job = TrainingJob(tiny_config(tiny_dataset, epochs=2), tmp_path / "run")
    job.start()
    snapshot = job.wait(timeout=60)
    assert snapshot.status == "failed"
    assert "disk is full" in snapshot.error and "Free some disk space" in snapshot.error_hint
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed" and "disk is full" in metrics["error"]
    assert metrics["best_epoch"] is None  # no weights reached the disk
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_when_nothing_can_be_written_the_first_error_is_reported(
    tiny_dataset, tmp_path, monkeypatch
):
    job = TrainingJob(tiny_config(tiny_dataset, epochs=2), tmp_path / "run")
    monkeypatch.setattr(RunWriter, "write_weights", disk_full())
    monkeypatch.setattr(RunWriter, "write_metrics", disk_full("metrics.json"))
    job.start()
    snapshot = job.wait(timeout=60)
    assert snapshot.status == "failed" and not run_is_live(tmp_path / "run")
    assert snapshot.error.startswith("The disk is full") and "Training failed" not in snapshot.error


def test_the_cli_says_the_disk_is_full(capsys, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "save_weights", disk_full())
    code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run",
                           *TINY_FLAGS, "--epochs", "1", "--quiet")  # fmt: skip
    assert code == 1
    assert "error: The disk is full" in err and "hint: Free some disk space" in err
    assert "report it" not in err and "unexpected" not in err


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fails the test if a training starts to load its data or model."""

    def never(*_args, **_kwargs):
        raise AssertionError("the data and model were loaded before --out was checked")

    monkeypatch.setattr(training_run, "prepare_training", never)


def test_an_out_folder_below_a_file_fails_before_anything_loads(
    capsys, tiny_dataset, tmp_path, nothing_loads
):
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "a-file" / "run",
                           *TINY_FLAGS, "--quiet")  # fmt: skip
    assert code == 1 and "A file is in the way" in err and "report it" not in err
    with pytest.raises(TLStudioError, match="too long"):
        check_output_folder(tmp_path / ("x" * 300) / "run")
    with pytest.raises(TLStudioError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "a-file")


def test_an_out_folder_in_a_read_only_folder_is_refused(
    capsys, tiny_dataset, tmp_path, nothing_loads
):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user can write anywhere (root): permissions do not bind")
        code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", locked / "run",
                               *TINY_FLAGS, "--quiet")  # fmt: skip
        assert code == 1 and "Permission denied" in err and "allowed to write" in err
    finally:
        locked.chmod(0o755)


def test_a_read_only_or_forbidden_place_is_named_for_what_it_is(tmp_path, monkeypatch):
    # As root, permissions do not bind: the answers of the operating system are simulated.
    monkeypatch.setattr(outputs.os, "access", lambda *_args, **_kwargs: False)
    with pytest.raises(TLStudioError, match="Permission denied") as refused:
        check_output_folder(tmp_path / "run")
    assert "allowed to write" in refused.value.hint
    read_only = os.statvfs_result((0,) * 8 + (os.ST_RDONLY, 255))
    monkeypatch.setattr(outputs.os, "statvfs", lambda _path: read_only)
    with pytest.raises(TLStudioError, match="read-only") as refused:
        check_output_file(tmp_path / "model.pt")
    assert "writable disk" in refused.value.hint


# ---- CLI: bad usage, outputs checked first, warnings before training -------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--epochs", "0"],
        ["--val-fraction", "2"],
        ["--val-fraction", "0"],
        ["--lr", "-1"],
        ["--patience", "-1"],
        ["--image-size", "8"],
        ["--freeze", "some"],
    ],
)
def test_invalid_settings_exit_2(capsys, tiny_dataset, tmp_path, flags):
    args = ["train", str(tiny_dataset), "--out", str(tmp_path / "run"), *TINY_FLAGS, *flags]
    try:
        code = main(args)
    except SystemExit as exited:  # argparse's own usage errors
        code = exited.code
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_check_with_an_invalid_fraction_exits_2(tiny_dataset):
    with pytest.raises(SystemExit) as exited:
        main(["check", str(tiny_dataset), "--val-fraction", "2"])
    assert exited.value.code == 2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tests.training import train_tiny_run

    return train_tiny_run(tmp_path_factory)


def test_export_to_an_existing_folder_fails_before_building_the_model(
    capsys, finished_run, tmp_path, monkeypatch
):
    def never(*_args, **_kwargs):
        raise AssertionError("the model was built before the output was checked")

    monkeypatch.setattr(Run, "build_model", never)
    (tmp_path / "out").mkdir()
    for fmt in ("torchscript", "zip"):
        code, _, err = run_cli(capsys, "export", finished_run, "--format", fmt,
                               "--out", tmp_path / "out")  # fmt: skip
        assert code == 1 and "is a folder" in err and "unexpected" not in err
    (tmp_path / "f.pt").write_text("a file")
    with pytest.raises(TLStudioError, match="A file is in the way"):
        check_output_file(tmp_path / "f.pt" / "deeper.pt")


def test_train_prints_the_health_warnings_and_the_real_split_overlap(capsys, tmp_path):
    # Every image has an identical copy in its class, and every "red" file is one picture: the
    # split keeps copies on one side, but "red" cannot be split without seeing copies twice.
    data = make_image_folder(tmp_path / "data", {"red": 5, "blue": 5})
    for path in list(data.rglob("*.png")):
        path.with_name(f"copy_{path.name}").write_bytes(path.read_bytes())
    red = sorted((data / "red").glob("*.png"))
    for path in red[1:]:
        path.write_bytes(red[0].read_bytes())
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", data, "--out", run, *TINY_FLAGS, "--epochs", "1",
                           "--quiet")  # fmt: skip
    assert code == 0, err

    split = json.loads((run / "split.json").read_text())
    train_bytes = {Path(path).read_bytes() for path, _ in split["train"]}
    overlap = sum(Path(path).read_bytes() in train_bytes for path, _ in split["val"])
    assert overlap > 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any("exact copies" in line for line in warnings)  # the scan's own warning
    expected = f"identical copy in the training set: {overlap} of {len(split['val'])}."
    assert any(expected in line for line in warnings), warnings
    # check shows the same overlap for the same split.
    code, out, _ = run_cli(capsys, "check", data)
    assert code == 0 and expected in out


def test_a_run_still_training_is_used_with_a_note(capsys, finished_run, tmp_path):
    # As if its training were still under way: metrics say "running" and the lock is held.
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns(".lock"))
    metrics = read_metrics(run)
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "running"}))
    lock = runs.FolderLock.acquire(run)
    try:
        image = tmp_path / "x.png"
        make_image(seed=1).save(image)
        code, _, err = run_cli(capsys, "predict", run, image, "--device", "cpu")
        assert code == 0 and "is still training" in err
        assert summarize_run(run).status == "running"
    finally:
        lock.release(remove=True)
    assert summarize_run(run).status == "interrupted"
    assert load_run(run).build_model() is not None
