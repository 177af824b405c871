"""A trainer's events written as JSON lines and replayed in another observer, as a job in
another process (torchrun's rank 0) is followed live."""

from __future__ import annotations

import io

from tests.training import tiny_config
from tl_core.common import TrainingObserver
from tl_core.jobs import EVENT_PREFIX, EventWriter, replay, summary_of
from tl_core.training import train


class Recorder(TrainingObserver):
    """Keeps every event as plain data; forwards each one to ``forward`` if given."""

    def __init__(self, forward: TrainingObserver | None = None):
        self.events: list[tuple] = []
        self.forward = forward or TrainingObserver()

    def on_phase(self, message, phase=None):
        self.events.append(("phase", message, phase))
        self.forward.on_phase(message, phase)

    def on_plan(self, plan):
        self.events.append(("plan", summary_of(plan)))
        self.forward.on_plan(plan)

    def on_progress(self, progress):
        self.events.append(("progress", progress))
        self.forward.on_progress(progress)

    def on_batch(self, stats):
        self.events.append(("batch", stats))
        self.forward.on_batch(stats)

    def on_epoch(self, row, improved):
        self.events.append(("epoch", row, improved))
        self.forward.on_epoch(row, improved)

    def on_pause(self, paused):
        self.events.append(("pause", paused))
        self.forward.on_pause(paused)


def test_a_replayed_run_gives_the_observer_exactly_the_trainers_events(tiny_dataset, tmp_path):
    stream = io.StringIO()
    direct = Recorder(EventWriter(stream))
    assert train(tiny_config(tiny_dataset), tmp_path / "run", direct) == "completed"

    replayed = Recorder()
    lines = stream.getvalue().splitlines()
    assert all(replay(line, replayed) for line in lines)
    assert replayed.events == direct.events
    kinds = {event[0] for event in direct.events}
    assert {"phase", "plan", "progress", "batch", "epoch"} <= kinds
    plan = next(event[1] for event in replayed.events if event[0] == "plan")
    assert "test_efficientnet" in plan.description and plan.num_val_images > 0


def test_ordinary_output_and_a_line_cut_short_are_not_events():
    recorder = Recorder()
    assert not replay("Epoch 1 of 2: loss 0.3", recorder)
    assert not replay(EVENT_PREFIX + '{"event": "batch", "epo', recorder)
    assert not replay(EVENT_PREFIX + '{"event": "something new"}', recorder)
    assert recorder.events == []
