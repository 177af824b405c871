"""Group jobs: a freeze-depth sweep or a transfer check trained in the background, run after run,
with a live state that follows the current run and keeps the finished ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder
from tests.test_jobs import wait_until
from tests.test_transfer import pretrained_config, weights_file
from tests.training import tiny_config
from tl_core.analysis import SweepRow
from tl_core.common import Progress
from tl_core.jobs import SWEEP, TRAIN, TRANSFER_CHECK, JobScheduler, TrainingJob
from tl_core.runs import SWEEP_FILE, TRANSFER_FILE


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("group-jobs") / "data", TINY_CLASSES)


def _progress(step: int, total: int) -> Progress:
    return Progress(
        step=step,
        total_steps=total,
        images_per_second=None,
        epochs_per_second=None,
        eta_seconds=None,
    )


def test_each_run_of_a_group_is_followed_from_scratch_and_kept_when_it_ends(data, tmp_path):
    # The events a sweep sends, fed by hand: the state machine alone, no training.
    job = TrainingJob(tiny_config(data), tmp_path / "sweep", SWEEP)
    events = job._observer
    first = SweepRow("0", 0, run="freeze-0")
    events.on_run_start(1, 2, first)
    events.on_progress(_progress(5, 10))
    events.on_epoch({"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0}, True)
    mid_first = job.snapshot()
    assert mid_first.run_dir == str(tmp_path / "sweep" / "freeze-0")
    assert mid_first.progress == pytest.approx(0.25)  # half of the first of two runs
    assert mid_first.queue_position == "Run 1 of 2 (freeze 0)"

    events.on_run_end(1, 2, first)
    events.on_run_start(2, 2, SweepRow("all", 6, run="freeze-all"))
    second = job.snapshot()
    assert second.progress == pytest.approx(0.5)
    assert second.history == () and second.epoch == 0 and second.best_val_accuracy is None
    assert [(r.label, len(r.history)) for r in second.finished_runs] == [("freeze 0", 1)]
    assert second.finished_runs[0].history[0]["val_accuracy"] == 0.5
    assert second.run_dir == str(tmp_path / "sweep" / "freeze-all")
    assert second.name == "sweep"  # the group's folder names the job, whichever run trains


def test_a_sweep_job_trains_each_depth_and_picks_the_best_run(data, tmp_path):
    registry = JobScheduler(tmp_path / "runs")
    job = registry.start(tiny_config(data, epochs=1), SWEEP, ["0", "all"])
    snapshot = job.wait(timeout=120)

    assert snapshot.status == "completed" and snapshot.progress == 1.0
    group = Path(snapshot.group_dir)
    assert group.parent == tmp_path / "runs" and "sweep-test_efficientnet" in group.name
    sweep_json = json.loads((group / SWEEP_FILE).read_text())
    assert [row["status"] for row in sweep_json["rows"]] == ["completed", "completed"]
    assert [run.label for run in snapshot.finished_runs] == ["freeze 0", "freeze all"]
    assert [len(run.history) for run in snapshot.finished_runs] == [1, 1]
    assert snapshot.result_run == str(group / f"freeze-{sweep_json['best']}")
    assert (snapshot.run_index, snapshot.run_total) == (2, 2)


def test_stopping_a_sweep_job_cancels_the_depths_still_waiting(data, tmp_path):
    registry = JobScheduler(tmp_path / "runs")
    job = registry.start(tiny_config(data, epochs=500, batch_size=2), SWEEP, ["0", "3", "all"])
    wait_until(lambda: job.snapshot().step >= 2, timeout=60)
    waiting = registry.start(tiny_config(data), TRAIN)  # the group holds the one slot
    assert waiting.snapshot().status == "queued"
    assert registry.cancel(waiting.job_id)
    job.stop()
    snapshot = job.wait(timeout=60)

    assert snapshot.status == "stopped"
    rows = json.loads((Path(snapshot.group_dir) / SWEEP_FILE).read_text())["rows"]
    assert [row["status"] for row in rows] == ["stopped", "not run", "not run"]
    assert [run.status for run in snapshot.finished_runs] == ["stopped"]


def test_a_transfer_check_job_trains_both_runs_and_concludes(data, tmp_path):
    config = pretrained_config(data, weights_file(tmp_path / "weights.safetensors"))
    registry = JobScheduler(tmp_path / "runs", feature_cache=tmp_path / "cache")
    snapshot = registry.start(config, TRANSFER_CHECK).wait(timeout=180)

    assert snapshot.status == "completed", snapshot.error
    group = Path(snapshot.group_dir)
    assert [run.label for run in snapshot.finished_runs] == [
        "with pretrained weights",
        "from random weights",
    ]
    assert all(run.status == "completed" and run.history for run in snapshot.finished_runs)
    verdict = json.loads((group / TRANSFER_FILE).read_text())
    assert verdict["outcome"] in ("gain", "negative", "same")
    assert snapshot.result_run == str(group / "pretrained")


def test_a_group_that_cannot_start_leaves_no_empty_folder(tmp_path):
    registry = JobScheduler(tmp_path / "runs")
    missing = tiny_config(tmp_path / "no-such-data", epochs=1)
    snapshot = registry.start(missing, SWEEP, ["0", "all"]).wait(timeout=60)

    assert snapshot.status == "failed" and snapshot.error
    assert list((tmp_path / "runs").iterdir()) == []
