"""The one scheduler: one heavy job at a time, the rest in line, in order; cancel; restarts."""

from __future__ import annotations

import json
import threading

from tests.test_comparisons import HeldAdvise
from tests.test_jobs import long_config, wait_until
from tests.training import tiny_config
from tl_core.jobs import (
    COMPARISON,
    Job,
    JobScheduler,
    comparison_job,
    label_search_job,
    ordinal,
)


class HeldJob(Job):
    """Stands in for heavy work: notes that it started, then waits for the test."""

    def __init__(self, name: str, started: list[str], failure: Exception | None = None):
        super().__init__(COMPARISON, name, f"/data/{name}")
        self.started_order = started
        self.running = threading.Event()
        self.release = threading.Event()
        self.failure = failure

    def _work(self) -> str:
        self.started_order.append(self.title)
        self.running.set()
        assert self.release.wait(30)
        if self.failure is not None:
            raise self.failure
        return "stopped" if self._control.stop_requested else "completed"


def held_jobs(*names: str, failing: str = "") -> tuple[list[str], list[HeldJob]]:
    started: list[str] = []
    jobs = [
        HeldJob(name, started, RuntimeError("boom") if name == failing else None) for name in names
    ]
    return started, jobs


def test_a_second_job_waits_second_in_line_and_starts_when_the_first_ends(tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    started, (first, second, third) = held_jobs("first", "second", "third")
    for job in (first, second, third):
        scheduler.submit(job)
    assert first.running.wait(30)

    snap = second.snapshot()
    assert (snap.status, snap.place_in_line) == ("queued", 2)
    assert snap.message == "Queued, 2nd in line, after first"
    assert third.snapshot().message == "Queued, 3rd in line, after second"
    assert not snap.is_active and snap.is_queued
    assert scheduler.line() == [first, second, third] and scheduler.next_place() == 4

    first.release.set()
    assert first.wait(30).status == "completed"
    assert second.running.wait(30)  # its turn came when the first ended
    assert third.snapshot().message == "Queued, 2nd in line, after second"
    second.release.set()
    third.release.set()
    assert third.wait(30).status == "completed"
    assert started == ["first", "second", "third"]  # in the order they were submitted
    assert scheduler.line() == [] and scheduler.active() is None


def test_a_cancelled_job_leaves_the_line_and_never_runs(tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    started, (first, second, third) = held_jobs("first", "second", "third")
    for job in (first, second, third):
        scheduler.submit(job)

    assert scheduler.cancel(second.job_id)
    assert second.snapshot().status == "cancelled" and second.wait(1).finished_at
    assert scheduler.get(second.job_id) is None and scheduler.latest() is third
    assert third.snapshot().message == "Queued, 2nd in line, after first"
    assert not scheduler.cancel(second.job_id)  # out of the line already
    assert not scheduler.cancel(first.job_id)  # running: Stop ends it, not Cancel

    first.release.set()
    third.release.set()
    assert third.wait(30).status == "completed"
    assert started == ["first", "third"]
    assert second.snapshot().status == "cancelled"


def test_a_failed_job_does_not_block_the_next(tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    started, (broken, after) = held_jobs("broken", "after", failing="broken")
    scheduler.submit(broken)
    scheduler.submit(after)
    broken.release.set()
    after.release.set()

    failed = broken.wait(30)
    assert failed.status == "failed" and "boom" in failed.error
    assert after.wait(30).status == "completed"
    assert started == ["broken", "after"]


def test_stop_stops_only_its_own_job(tiny_dataset, tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    running = scheduler.start(long_config(tiny_dataset))
    waiting = scheduler.start(tiny_config(tiny_dataset, epochs=1))
    wait_until(lambda: running.snapshot().step >= 1, timeout=60)

    running.stop()
    assert waiting.snapshot().status == "queued"  # still waiting, not stopping
    assert running.wait(60).status == "stopped"
    done = waiting.wait(120)
    assert done.status == "completed" and done.epochs_done == "1/1"


def test_a_comparison_and_a_training_never_run_together(tiny_dataset, tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    advise = HeldAdvise(outcome="the ranking")
    comparison = scheduler.submit(
        comparison_job(str(tiny_dataset), str(tiny_dataset), None, advise)
    )
    assert advise.reported.wait(30)

    training = scheduler.start(tiny_config(tiny_dataset, epochs=1))
    snap = training.snapshot()
    assert snap.status == "queued" and snap.place_in_line == 2
    assert snap.message == "Queued, 2nd in line, after Backbone comparison on tiny"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    advise.release.set()
    assert comparison.wait(30).result == "the ranking"
    assert training.wait(120).status == "completed"


def test_a_label_search_waits_for_the_training_that_runs(tiny_dataset, tmp_path):
    scheduler = JobScheduler(tmp_path / "runs")
    training = scheduler.start(long_config(tiny_dataset))
    try:
        search = scheduler.submit(label_search_job(str(tiny_dataset), str(tiny_dataset), None))
        snap = search.snapshot()
        assert snap.status == "queued"
        assert snap.message == "Queued, 2nd in line, after Training test_efficientnet on tiny"
        assert scheduler.active() is training
        assert scheduler.datasets_in_use() == [str(tiny_dataset), str(tiny_dataset)]
        assert scheduler.cancel(search.job_id)
    finally:
        training.stop()
        training.wait(60)


def test_a_new_scheduler_reports_left_over_jobs_as_interrupted(tmp_path):
    queue_file = tmp_path / "jobs.json"
    before = JobScheduler(tmp_path / "runs", queue_file=queue_file)
    _, (running, waiting) = held_jobs("running", "waiting")
    before.submit(running)
    before.submit(waiting)
    saved = json.loads(queue_file.read_text())["jobs"]
    assert [(job["title"], job["status"]) for job in saved] == [
        ("running", "running"),
        ("waiting", "queued"),
    ]

    # The server stops here; a new one starts over the same workspace.
    after = JobScheduler(tmp_path / "runs", queue_file=queue_file)
    lost = after.interrupted()
    assert [(job.job_id, job.was) for job in lost] == [
        (running.job_id, "running"),
        (waiting.job_id, "queued"),
    ]
    assert lost[1].sentence == (
        "Interrupted: the server stopped while this job was queued; start it again."
    )
    assert after.get(running.job_id) is None and after.line() == []

    after.dismiss(running.job_id)
    again = JobScheduler(tmp_path / "runs", queue_file=queue_file)
    assert [job.title for job in again.interrupted()] == ["waiting"]
    for job in (running, waiting):
        job.release.set()
    running.wait(30)


def test_a_damaged_queue_file_is_ignored(tmp_path):
    queue_file = tmp_path / "jobs.json"
    queue_file.write_text("{not json")
    scheduler = JobScheduler(tmp_path / "runs", queue_file=queue_file)
    assert scheduler.interrupted() == []
    assert json.loads(queue_file.read_text()) == {"jobs": []}


def test_ordinals():
    words = [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)]
    assert words == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
    ]
