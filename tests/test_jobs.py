"""Background training jobs: live state, pause, resume, stop, failures, one job at a time."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import explain_failure
from tl_core.jobs import JobScheduler, TrainingJob


def wait_until(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def long_config(data):
    # Far more epochs than a test waits for: only a stop ends it.
    return tiny_config(data, epochs=500, batch_size=2)


def test_a_job_reports_batches_and_epochs_then_completes(tiny_dataset, tmp_path):
    job = TrainingJob(tiny_config(tiny_dataset, epochs=2), tmp_path / "run")
    job.start()
    snapshot = job.wait(timeout=60)

    assert snapshot.status == "completed" and not snapshot.is_active
    assert snapshot.progress == 1.0
    assert [row["epoch"] for row in snapshot.history] == [1, 2]
    assert snapshot.epoch == 2 and snapshot.step == snapshot.total_steps > 0
    epochs = [epoch for epoch, _ in snapshot.batch_losses]
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(2.0)
    assert snapshot.best_val_accuracy == max(r["val_accuracy"] for r in snapshot.history)
    assert snapshot.device == "cpu" and snapshot.finished_at is not None
    assert "test_efficientnet (random init)" in snapshot.plan
    assert "in 3 classes" in snapshot.plan
    assert snapshot.images_per_second > 0
    assert snapshot.speed[0] == "Training images/s" and snapshot.eta_seconds == 0.0
    assert snapshot.epochs_done == "2/2"


def test_stop_is_honoured_within_one_batch(tiny_dataset, tmp_path):
    job = TrainingJob(long_config(tiny_dataset), tmp_path / "run")
    job.start()
    wait_until(lambda: job.snapshot().step >= 3)
    job.stop()
    step_at_stop = job.snapshot().step
    snapshot = job.wait(timeout=10)

    assert snapshot.status == "stopped"
    assert snapshot.step <= step_at_stop + 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "stopped"


def test_pause_holds_training_and_resume_continues(tiny_dataset, tmp_path):
    job = TrainingJob(long_config(tiny_dataset), tmp_path / "run")
    job.start()
    wait_until(lambda: job.snapshot().step >= 2)
    job.pause()
    wait_until(lambda: job.snapshot().status == "paused")
    held = job.snapshot().step
    time.sleep(0.5)
    assert job.snapshot().step == held

    job.resume()
    wait_until(lambda: job.snapshot().step > held + 1)
    assert job.snapshot().status == "running"
    job.stop()
    assert job.wait(timeout=10).status == "stopped"


def test_a_paused_job_can_be_stopped(tiny_dataset, tmp_path):
    job = TrainingJob(long_config(tiny_dataset), tmp_path / "run")
    job.start()
    wait_until(lambda: job.snapshot().step >= 1)
    job.pause()
    wait_until(lambda: job.snapshot().status == "paused")
    job.stop()
    assert job.wait(timeout=10).status == "stopped"


def test_a_failure_is_reported_in_words(tmp_path):
    job = TrainingJob(tiny_config(tmp_path / "does-not-exist"), tmp_path / "run")
    job.start()
    snapshot = job.wait(timeout=30)
    assert snapshot.status == "failed"
    assert "does-not-exist" in snapshot.error
    assert snapshot.error_hint


def test_out_of_memory_gets_a_hint_about_batch_size():
    error, hint = explain_failure(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "out of memory" in error and "batch size" in hint


def test_the_registry_runs_one_job_at_a_time(tiny_dataset, tmp_path):
    registry = JobScheduler(tmp_path / "runs")
    first = registry.start(long_config(tiny_dataset))
    try:
        # A second job waits in line behind the first rather than being refused.
        second = registry.start(tiny_config(tiny_dataset, epochs=1))
        assert second.snapshot().status == "queued"
        assert "after Training test_efficientnet" in second.snapshot().message
        assert registry.active() is first
        assert registry.get(first.job_id) is first
    finally:
        first.stop()
        first.wait(timeout=10)
    assert second.wait(timeout=60).status == "completed"
    assert registry.active() is None
    assert registry.latest() is second
    assert first.run_dir != second.run_dir
    assert first.run_dir.parent == second.run_dir.parent == tmp_path / "runs"


def test_pause_shows_pausing_at_once_then_paused_where_the_loop_holds(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", epochs=2)
    job = TrainingJob(config, tmp_path / "run")
    job.pause()  # asked before the first batch: the status says so at once
    snapshot = job.snapshot()
    assert snapshot.status == "pausing" and snapshot.is_active
    assert snapshot.message == "Pausing after this batch"
    assert snapshot.headline.startswith("Pausing after this batch")

    job.start()
    snapshot = wait_until(lambda: (s := job.snapshot()).status == "paused" and s)
    # The loop holds before the first feature batch, with the phase and the bar's total known.
    total = sum(TINY_CLASSES.values())
    assert snapshot.phase == "features"
    assert snapshot.message == f"Computing backbone features: 0/{total} images"
    headline = f"Paused · Computing backbone features: 0/{total} images · ETA on hold"
    assert snapshot.headline == headline
    assert snapshot.step == 0 and snapshot.total_steps > 0 and snapshot.progress == 0.0
    assert snapshot.num_val_images == len(
        json.loads((tmp_path / "run" / "split.json").read_text())["val"]
    )
    assert snapshot.speed == ("Backbone images/s", "paused")  # not the pace before the pause

    job.resume()
    snapshot = job.snapshot()
    assert snapshot.status == "running" and snapshot.message.startswith("Computing backbone")
    assert job.wait(timeout=60).status == "completed"


def test_resume_before_the_loop_pauses_cancels_the_pause(tiny_dataset, tmp_path):
    job = TrainingJob(tiny_config(tiny_dataset, epochs=1), tmp_path / "run")
    job.pause()
    job.resume()
    assert job.snapshot().status == "starting"  # the data and model are not ready yet
    job.start()
    assert job.wait(timeout=60).status == "completed"


def test_head_only_training_reports_backbone_images_then_head_epochs(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", epochs=3)
    job = TrainingJob(config, tmp_path / "run")
    job.start()
    snapshot = job.wait(timeout=60)
    assert snapshot.status == "completed" and snapshot.caches_features
    # The head's epochs are not shown as images through the backbone.
    assert snapshot.images_per_second is None and snapshot.epochs_per_second > 0
    label, value = snapshot.speed
    assert label == "Head epochs/s" and value != "–"
    assert snapshot.epochs_done == "3/3"
    assert snapshot.best_accuracy_text.endswith(f"{snapshot.num_val_images} images)")
    assert "95 % CI" in snapshot.best_accuracy_text


def test_a_fine_tune_paused_before_its_first_batch_already_knows_its_length(tiny_dataset, tmp_path):
    job = TrainingJob(tiny_config(tiny_dataset, epochs=2), tmp_path / "run")
    job.pause()
    job.start()
    snapshot = wait_until(lambda: (s := job.snapshot()).status == "paused" and s)
    assert snapshot.phase == "training" and snapshot.message == "Epoch 1 of 2 in progress"
    assert snapshot.step == 0 and snapshot.total_steps == 2 * 2  # 15 images in batches of 8
    job.stop()
    assert job.wait(timeout=30).status == "stopped"
