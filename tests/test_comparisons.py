"""Backbone comparisons in the background: state, stop, failures, and one at a time.

Comparisons are jobs like training (``comparison_job``) run by the one scheduler: a second
comparison now waits in line instead of being refused, and a failure is a snapshot's
``error`` and ``error_hint`` (``failure`` as an error), like every job's.
"""

from __future__ import annotations

import threading

import pytest

from tl_core.analysis import AdvisorStopped
from tl_core.common import WeightsError
from tl_core.jobs import JobScheduler, comparison_job


class HeldAdvise:
    """Stands in for ``advise``: reports progress, then waits for the test before finishing."""

    def __init__(self, outcome=None):
        self.reported = threading.Event()
        self.release = threading.Event()
        self.outcome = outcome

    def __call__(self, data, progress, stop, **options):
        self.options = options
        progress(3, 12, "net: features of 3/6 images")
        self.reported.set()
        assert self.release.wait(30)
        if stop.is_set():
            raise AdvisorStopped
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_the_snapshot_follows_the_progress_and_the_result(tmp_path):
    advise = HeldAdvise(outcome="the ranking")
    comparison = comparison_job("data", "data", tmp_path, advise, backbones=["a"])
    comparison.start()
    assert advise.reported.wait(30)

    snap = comparison.snapshot()
    assert (snap.status, snap.step, snap.total_steps) == ("running", 3, 12)
    assert snap.message == "net: features of 3/6 images" and snap.progress == 0.25
    assert advise.options == {"backbones": ["a"], "cache_dir": tmp_path}
    advise.release.set()
    done = comparison.wait(30)
    assert (done.status, done.result, done.progress) == ("completed", "the ranking", 1.0)
    assert not done.is_active and done.finished_at is not None


def test_stop_says_so_at_once_and_ends_as_stopped(tmp_path):
    advise = HeldAdvise()
    comparison = comparison_job("data", "data", tmp_path, advise)
    comparison.start()
    assert advise.reported.wait(30)

    comparison.stop()
    assert comparison.snapshot().status == "stopping"
    assert comparison.snapshot().message == "Stopping after this batch"
    advise.release.set()
    snap = comparison.wait(30)
    assert snap.status == "stopped" and snap.result is None and snap.error is None


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (WeightsError("No weights for net.", "Install them."), "No weights for net."),
        (RuntimeError("boom"), "The comparison failed: RuntimeError: boom"),
    ],
)
def test_a_failure_ends_in_words_for_the_user(tmp_path, failure, message):
    advise = HeldAdvise(outcome=failure)
    advise.release.set()
    comparison = comparison_job("data", "data", tmp_path, advise)
    comparison.start()

    snap = comparison.wait(30)
    assert snap.status == "failed" and snap.error == message
    assert snap.error_hint and snap.failure.message == message


def test_the_registry_runs_one_at_a_time_and_keeps_the_newest_of_each_dataset(tmp_path):
    registry = JobScheduler(tmp_path / "runs")
    first = HeldAdvise(outcome="first")
    running = registry.submit(comparison_job("a", "a", tmp_path, first))
    assert first.reported.wait(30)

    # A second comparison waits in line (it used to be refused) and runs once the first ends.
    waiting = registry.submit(comparison_job("b", "b", tmp_path, HeldAdvise(outcome="b")))
    assert waiting.snapshot().status == "queued"
    assert registry.active() is running and registry.latest(dataset="b") is waiting
    assert registry.cancel(waiting.job_id)
    first.release.set()
    running.wait(30)
    assert registry.active() is None and registry.latest(dataset="a") is running

    second = HeldAdvise(outcome="second")
    second.release.set()
    again = registry.submit(comparison_job("a", "a", tmp_path, second))
    assert again.wait(30).result == "second"
    assert registry.latest(dataset="a") is again and registry.get(running.job_id) is None
    assert registry.get(again.job_id) is again
