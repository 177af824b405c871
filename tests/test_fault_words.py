"""Faults the code handles end in words on the real command line: one line per warning (the
traceback only with --debug), a run that could not be saved marked failed with the reason, the
files of a dataset that cannot be used listed by ``advise``, and a training process that died
named as such. ``Traceback`` never appears in the output of a fault without --debug.

Where the old output went through Python's last-resort log handler, only a process of its own
shows it (pytest installs log handlers of its own), so those cases run ``tl-studio`` in a
subprocess; a fault that a real disk cannot be made to show here (a full disk) is injected
into that process before the command line starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder, make_zip
from tests.test_advisor import known_factory
from tl_core.analysis import advisor
from tl_core.cli.main import main
from tl_core.common import setup_logging
from tl_core.jobs.processes import failure_from
from tl_core.models import create_model
from tl_core.runs import list_runs, preferred_run, summarize_run
from tl_core.runs.reader import NO_WEIGHTS_REASON

TINY_FLAGS = [
    "--backbone", "test_efficientnet", "--batch-size", "8", "--image-size", "32",
    "--device", "cpu", "--workers", "0", "--quiet",
]  # fmt: skip
DEADLINE = 300  # seconds: only so that a hang fails the test instead of blocking the suite
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
DISK_FULL = "The disk is full: there was no space left to write"

# The command line in a process of its own, with the disk full for the files named in argv[1]
# (comma-separated: "model.safetensors", "metrics.json"); the rest of argv is the command's.
FULL_DISK_CLI = """
import errno, os, sys
from pathlib import Path
from tl_core.runs import writer

full = set(sys.argv[1].split(","))

def refusing(write):
    def checked(path, *args, **kwargs):
        if Path(path).name in full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), Path(path).name)
        return write(path, *args, **kwargs)
    return checked

writer.save_weights = refusing(writer.save_weights)
writer.write_json = refusing(writer.write_json)
from tl_core.cli.main import main
from tl_core.common import setup_logging
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(autouse=True)
def plain_logging():
    """Leaves logging as a command without --debug sets it up, whatever a test ran."""
    yield
    setup_logging()


def cli_process(*args, script: str | None = None, extra: tuple = ()) -> tuple[int, str]:
    """Runs ``tl-studio ARGS`` (or ``script`` with ``extra`` then ARGS) in a process of its
    own; returns its exit code and its stdout and stderr together."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    command = ["-c", script, *extra] if script else ["-m", "tl_core.cli"]
    done = subprocess.run(
        [sys.executable, *command, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=DEADLINE,
    )
    return done.returncode, done.stdout


def read_metrics(run: Path) -> dict | None:
    try:
        return json.loads((run / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---- 1. one line per warning -------------------------------------------------------------------


@pytest.fixture
def weights_file(tmp_path) -> Path:
    """Backbone weights from a file, so a head-only run keeps its features in the cache."""
    torch.manual_seed(0)
    model, _ = create_model("test_efficientnet", len(TINY_CLASSES), pretrained=False)
    path = tmp_path / "backbone.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def head_only(data: Path, out: Path, weights: Path, cache: Path) -> list:
    return ["train", data, "--out", out, *TINY_FLAGS, "--weights", weights, "--freeze", "all",
            "--epochs", "1", "--cache-dir", cache]  # fmt: skip


def test_an_unreadable_feature_cache_is_one_warning_line(
    tiny_dataset, weights_file, tmp_path, capsys
):
    cache = tmp_path / "cache"
    assert main(list(map(str, head_only(tiny_dataset, tmp_path / "a", weights_file, cache)))) == 0
    (kept,) = cache.glob("*.safetensors")
    kept.write_bytes(kept.read_bytes()[:100])  # cut short, as by a crash or a full disk
    capsys.readouterr()

    code, output = cli_process(*head_only(tiny_dataset, tmp_path / "b", weights_file, cache))

    assert code == 0, output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "feature cache" in line]
    assert line.startswith(f"warning: Ignoring the unreadable feature cache {kept}")
    # With --debug, the same warning keeps its traceback.
    kept.write_bytes(kept.read_bytes()[:100])
    argv = head_only(tiny_dataset, tmp_path / "c", weights_file, cache)
    assert main(["--debug", *map(str, argv)]) == 0
    assert "Traceback" in capsys.readouterr().err


def test_an_unwritable_feature_cache_folder_is_one_warning_line(
    tiny_dataset, weights_file, tmp_path
):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")

    code, output = cli_process(*head_only(tiny_dataset, tmp_path / "run", weights_file, blocked))

    assert code == 0, output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "Could not keep features" in line]
    assert line.startswith(f"warning: Could not keep features in {blocked}; the next run")
    assert "File exists" in line  # the cause, in one clause at the end


# ---- 1. a full disk while a run is saved -------------------------------------------------------


def train_on_a_full_disk(data: Path, run: Path, *full: str) -> str:
    """Trains in a process of its own that finds the disk full when it writes the files
    named ``full``; checks that it failed with a sentence, and returns what it printed."""
    code, output = cli_process(
        "train", data, "--out", run, *TINY_FLAGS, "--no-pretrained", "--epochs", "2",
        script=FULL_DISK_CLI, extra=(",".join(full),),
    )  # fmt: skip
    assert code == 1 and "Traceback" not in output, output
    assert f"error: {DISK_FULL} (model.safetensors)." in output
    return output


def test_a_full_disk_at_the_weights_ends_in_sentences_and_a_run_marked_failed(
    tiny_dataset, tmp_path
):
    run = tmp_path / "run"
    output = train_on_a_full_disk(tiny_dataset, run, "model.safetensors")

    assert (
        "warning: The best weights (epoch 1) could not be saved; the run folder keeps no "
        f"weights ({DISK_FULL} (model.safetensors))"
    ) in output
    assert "hint: Free some disk space" in output
    # Nothing in the folder claims weights that are not there, and it lists as failed.
    assert not (run / "model.safetensors").exists()
    metrics = read_metrics(run)
    assert metrics["status"] == "failed" and metrics["best_epoch"] is None
    assert metrics["best_val_accuracy"] is None and DISK_FULL in metrics["error"]
    summary = summarize_run(run)
    assert summary.status == "failed" and DISK_FULL in summary.error
    assert f"failed ({DISK_FULL}" in summary.title
    assert preferred_run(list_runs(tmp_path)) is None  # never offered as a usable run


def test_when_not_even_the_failure_can_be_recorded_the_run_lists_as_failed(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    output = train_on_a_full_disk(tiny_dataset, run, "model.safetensors", "metrics.json")

    assert "warning: The failure could not be recorded in the run's metrics.json (" in output
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "labels.json", "split.json"]
    (summary,) = list_runs(tmp_path)
    assert summary.status == "failed" and summary.error == NO_WEIGHTS_REASON
    assert not summary.has_weights and preferred_run([summary]) is None


def test_a_completed_run_whose_weights_are_gone_lists_as_failed(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    argv = ["train", tiny_dataset, "--out", run, *TINY_FLAGS, "--no-pretrained", "--epochs", "1"]
    assert main(list(map(str, argv))) == 0
    assert summarize_run(run).status == "completed"
    (run / "model.safetensors").unlink()
    summary = summarize_run(run)
    assert summary.status == "failed" and summary.error == NO_WEIGHTS_REASON


# ---- 2. advise lists the files it cannot use --------------------------------------------------


def test_advise_lists_the_files_it_cannot_use_in_text_and_json(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(advisor, "pretrained_factory", known_factory)
    whole = (tiny_dataset / "red" / "red_0.png").read_bytes()
    (tiny_dataset / "red" / "broken.png").write_bytes(whole[: len(whole) // 2])
    (tiny_dataset / "blue" / "notes.txt").write_text("not an image")
    data = make_zip(tiny_dataset, tmp_path / "tiny.zip", wrap="tiny")
    flags = ["--backbones", "test_efficientnet", "--folds", "3", "--no-cache"]
    expected = [
        {"path": "blue/notes.txt", "reason": "not an image"},
        {"path": "red/broken.png", "reason": "truncated or corrupt image"},
    ]

    assert main(["advise", str(data), *flags, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert sorted(answer["skipped_files"], key=lambda s: s["path"]) == expected

    assert main(["advise", str(data), *flags]) == 0
    text = capsys.readouterr().out
    assert "Skipped 2 files:" in text
    for skipped in expected:
        assert f"  {skipped['path']}: {skipped['reason']}" in text


# ---- 2. a training process that dies ----------------------------------------------------------


DDP_FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--freeze", "all", "--lr", "0.05",
    "--image-size", "32", "--device", "cpu", "--workers", "0", "--patience", "0",
    "--no-feature-cache", "--quiet", "--batch-size", "8", "--epochs", "100000", "--nproc", "2",
]  # fmt: skip


def training_processes(main_pid: int) -> list[int]:
    """Rank 0's process id and its sibling's (torchrun starts both)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    parents = dict(tuple(map(int, line.split())) for line in table.splitlines())
    launcher = parents[main_pid]
    siblings = [pid for pid, parent in parents.items() if parent == launcher and pid != main_pid]
    return [main_pid, *siblings]


@pytest.mark.parametrize(
    ("killed", "sentence"),
    [
        (1, "Process 2 of 2 stopped unexpectedly (killed, or out of memory)"),
        (0, "Process 1 of 2 stopped unexpectedly (ended by SIGKILL: killed, or out of memory)"),
    ],
)
def test_a_training_process_that_dies_is_named_in_words(tmp_path, killed, sentence):
    data = make_image_folder(tmp_path / "data", {"red": 12, "green": 12, "blue": 12})
    run, log = tmp_path / "run", tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tl_core.cli", "train", data, "--out", run, *DDP_FLAGS],
            stdout=output, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + DEADLINE
            while not ((metrics := read_metrics(run)) and len(metrics["history"]) >= 2):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no epoch finished"
                time.sleep(0.1)
            main_pid = int((run / ".lock").read_text())
            os.kill(training_processes(main_pid)[killed], signal.SIGKILL)  # as the OOM killer
            code = process.wait(timeout=DEADLINE)
        finally:
            process.kill()
    text = log.read_text()

    assert code == 1 and "Traceback" not in text, text
    epochs = len(read_metrics(run)["history"])
    said = f"{sentence}; the run was stopped after epoch {epochs}."
    assert f"error: {said}" in text and "hint: The run folder keeps the best weights" in text
    assert text.count("error: ") == 1, text
    if killed == 1:  # rank 0 survived and recorded it
        assert read_metrics(run)["error"] == said
    # The app's multi-GPU job reads the same sentence from this output.
    assert failure_from(text, code).message == said
