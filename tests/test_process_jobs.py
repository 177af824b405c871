"""A job trained in processes of its own (the app's "use all N GPUs"), followed live.

The jobs are real: ``tl-studio train --nproc 2 --events`` in two gloo processes on this CPU,
their events replayed into the job the Train page draws.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app_pages.ui import state as ui_state
from tests.apptest_helpers import open_page
from tests.test_job_events import Recorder
from tests.training import tiny_config
from tl_core.cli.main import build_parser, main
from tl_core.cli.options import RECIPE_FIELDS, config_from_args
from tl_core.config import TrainConfig, read_train_config, write_train_config
from tl_core.jobs import TRAIN, ProcessJob, failure_from, replay

SAFETY_TIMEOUT = 600  # seconds: only so that a hang fails the test instead of blocking it


def wait_until(condition, what: str) -> None:
    """Polls state; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"mode": "gradual", "freeze": "2", "epochs": 4, "class_weighting": "on"},
        {"freeze": "3", "weights": "/w/model.safetensors", "val_data": "/data/val"},
        {"freeze": "all", "lr": 0.0123456789, "label_smoothing": 0.1, "image_size": None},
    ],
)
def test_train_reads_every_setting_of_a_config_from_its_file(changes, tmp_path):
    config = TrainConfig.from_dict({**tiny_config("/data/train").to_dict(), **changes})
    config_file = write_train_config(config, tmp_path / "train.json")
    args = build_parser().parse_args(["train", "--config", str(config_file), "--out", "/runs/r"])
    assert config_from_args(args) == config


def test_the_job_command_carries_the_config_as_a_file_and_no_option_of_it(tmp_path):
    config = tiny_config("/data/train", mode="gradual", freeze="2", epochs=4, lr=0.0123)
    job = ProcessJob(config, tmp_path / "run", nproc=2)
    config_file = write_train_config(config, tmp_path / "train.json")
    command = job.command(tmp_path / "run", config_file)
    assert command[command.index("--config") + 1] == str(config_file)
    assert read_train_config(config_file) == config
    recipe_options = {
        flag
        for action in build_parser().parse_args(["train", "--out", "x"]).train_parser._actions
        if action.dest in RECIPE_FIELDS
        for flag in action.option_strings
    }
    assert "--lr" in recipe_options and "--val-fraction" in recipe_options
    assert not recipe_options & set(command), "a setting was spelled as an option"
    assert config.data not in command
    args = build_parser().parse_args(command[command.index("train") :])
    assert config_from_args(args) == config and args.nproc == 2 and args.events


def test_train_events_replay_into_what_the_run_recorded(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    config = tiny_config(tiny_dataset)
    config_file = write_train_config(config, tmp_path / "train.json")
    assert main(["train", "--config", str(config_file), "--no-feature-cache", "--events",
                 "--quiet", "--out", str(run)]) == 0  # fmt: skip
    recorder = Recorder()
    replayed = [line for line in capsys.readouterr().out.splitlines() if replay(line, recorder)]
    assert replayed, "no event was written"
    epochs = [event[1] for event in recorder.events if event[0] == "epoch"]
    assert epochs == json.loads((run / "metrics.json").read_text())["history"]
    assert any(event[0] == "batch" for event in recorder.events)


def test_a_two_process_job_is_followed_batch_by_batch(module_workspace, tiny_dataset):
    job = ui_state.scheduler().start(tiny_config(tiny_dataset, epochs=3), TRAIN, nproc=2)
    assert isinstance(job, ProcessJob) and job.nproc == 2
    snap = job.wait(SAFETY_TIMEOUT)
    assert snap.status == "completed", snap.error
    recorded = json.loads((Path(snap.run_dir) / "metrics.json").read_text())
    assert recorded["status"] == "completed"
    assert list(snap.history) == recorded["history"] and snap.epoch == 3
    assert snap.batch_losses, "the live loss chart got no batch"
    assert snap.device == "2 × cpu"
    assert snap.result_run == snap.run_dir


def train_page_buttons(state: dict) -> set[str]:
    return {button.label for button in open_page(ui_state.TRAIN_PAGE, **state).button}


def test_pause_resume_and_stop_reach_every_process(module_workspace, tiny_dataset):
    config = tiny_config(tiny_dataset, epochs=10_000)
    job = ui_state.scheduler().start(config, TRAIN, nproc=2)
    wait_until(lambda: job.snapshot().epoch >= 1, "a first epoch")
    state = {
        ui_state.DATASET_KEY: str(tiny_dataset), ui_state.CONFIG_KEY: config.to_dict(),
        ui_state.JOB_KEY: job.job_id,
    }  # fmt: skip
    assert {"Pause", "Stop"} <= {
        button.label for button in open_page(ui_state.TRAIN_PAGE, **state).button
    }

    job.pause()
    # "paused" comes from rank 0's own event: it holds, and so do the others, which cannot
    # take a step without it.
    wait_until(lambda: job.snapshot().status == "paused", "the processes pausing")
    held_at = job.snapshot().step
    assert "Resume" in train_page_buttons(state)
    job.resume()
    wait_until(lambda: job.snapshot().step > held_at, "training going on after the resume")
    assert job.snapshot().status == "running"

    job.stop()
    snap = job.wait(SAFETY_TIMEOUT)
    assert snap.status == "stopped", snap.error
    recorded = json.loads((Path(snap.run_dir) / "metrics.json").read_text())
    assert recorded["status"] == "stopped" and len(recorded["history"]) < 10_000


def test_a_failure_in_the_processes_comes_back_in_words(module_workspace, tmp_path):
    lonely = tmp_path / "one-class"
    (lonely / "only").mkdir(parents=True)
    job = ui_state.scheduler().start(tiny_config(lonely), TRAIN, nproc=2)
    snap = job.wait(SAFETY_TIMEOUT)
    assert snap.status == "failed"
    assert "error:" not in snap.error and "Traceback" not in snap.error
    assert "class" in snap.error.lower()


def test_a_crash_without_words_is_still_explained():
    error = failure_from("Traceback (most recent call last):\n  ...\nSegmentation fault", -11)
    assert "exit code -11" in error.message and "Segmentation fault" in error.message
    error = failure_from("error: The disk is full.\nhint: Free some space.\n", 1)
    assert (error.message, error.hint) == ("The disk is full.", "Free some space.")


def test_the_train_page_offers_every_gpu_only_when_there_are_several(monkeypatch, tiny_dataset):
    state = {
        ui_state.DATASET_KEY: str(tiny_dataset),
        ui_state.CONFIG_KEY: tiny_config(tiny_dataset).to_dict(),
    }
    at = open_page(ui_state.TRAIN_PAGE, **state)
    assert not [t for t in at.toggle if t.label.startswith("Use all")]
    monkeypatch.setattr("tl_core.common.devices.gpu_count", lambda: 4)
    at = open_page(ui_state.TRAIN_PAGE, **state)
    assert [t.label for t in at.toggle if t.label.startswith("Use all")] == ["Use all 4 GPUs"]
