"""Live progress: phases in order, rates and ETA measured for the phase, pause time left out."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import (
    PHASE_FEATURES,
    PHASE_PREPARING,
    PHASE_TRAINING,
    JobControl,
    Progress,
    ProgressMeter,
    TrainingObserver,
)
from tl_core.training import train


class Recorder(TrainingObserver):
    """Keeps every phase and progress event, in order."""

    def __init__(self, on_event=None):
        self.events: list[tuple] = []
        self.phase = None
        self.on_event = on_event or (lambda recorder: None)

    def on_phase(self, message: str, phase: str | None = None) -> None:
        self.phase = phase or self.phase
        self.events.append(("phase", message, self.phase))
        self.on_event(self)

    def on_progress(self, progress: Progress) -> None:
        self.events.append(("progress", progress, self.phase))
        self.on_event(self)

    def progress(self, phase: str) -> list[Progress]:
        return [e[1] for e in self.events if e[0] == "progress" and e[2] == phase]

    def messages(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "phase"]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_adds_each_phase_at_its_own_pace_and_leaves_pauses_out():
    clock = FakeClock()
    meter = ProgressMeter(epochs=3, clock=clock)
    meter.expect_features(images=100, batches=4, steps_per_epoch=2)
    assert meter.progress().total_steps == 4 + 3 * 2
    assert meter.eta_seconds() is None  # no pace yet

    clock.now = 2.0
    meter.feature_batch(25)
    progress = meter.progress()
    assert progress.images_per_second == pytest.approx(12.5)  # images through the backbone
    assert progress.eta_seconds == pytest.approx(75 / 12.5)  # the head costs ~nothing yet

    clock.now = 12.0
    meter.exclude(10.0)  # ten seconds paused
    clock.now = 14.0
    meter.feature_batch(25)
    assert meter.progress().images_per_second == pytest.approx(12.5)
    assert meter.eta_seconds() == pytest.approx(50 / 12.5)

    clock.now = 18.0
    meter.feature_batch(25)
    meter.feature_batch(25)
    meter.expect_epochs(2)
    meter.start_epoch()
    clock.now = 18.5
    meter.train_batch(8)
    progress = meter.progress()
    # The head's steps are no backbone throughput.
    assert progress.images_per_second is None and progress.epochs_per_second is None
    clock.now = 19.0
    meter.train_batch(8)
    clock.now = 19.5
    assert meter.end_epoch() == pytest.approx(1.5)
    progress = meter.progress()
    assert progress.epochs_per_second == pytest.approx(1 / 1.5)
    assert progress.eta_seconds == pytest.approx(2 * 1.5)  # two epochs left at 1.5 s each
    assert progress.step == 6


def test_training_on_images_reports_its_own_images_per_second():
    clock = FakeClock()
    meter = ProgressMeter(epochs=2, clock=clock)
    meter.expect_epochs(steps_per_epoch=4)
    meter.start_epoch()
    clock.now = 1.0
    meter.train_batch(16)
    progress = meter.progress()
    assert progress.images_per_second == pytest.approx(16.0)
    assert progress.epochs_per_second is None
    # First epoch: its pace so far (4 s an epoch) for the 3 s left of it and the next one.
    assert progress.eta_seconds == pytest.approx(3.0 + 4.0)


def test_features_are_announced_before_their_first_batch(tiny_dataset, tmp_path):
    recorder = Recorder()
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", epochs=3)
    assert train(config, tmp_path / "run", recorder) == "completed"

    messages = recorder.messages()
    loading = next(i for i, m in enumerate(messages) if m.startswith("Loading the"))
    total = sum(TINY_CLASSES.values())
    # Straight after loading the backbone, before any batch: its own message, 0 done.
    assert messages[loading + 1] == f"Computing backbone features: 0/{total} images"
    # The first epoch computes them as it trains, and says so; the second only trains.
    epoch_1 = "Epoch 1 of 3 in progress; computing backbone features"
    assert messages[loading + 2] == f"{epoch_1}: 0/{total} images"
    second_epoch = messages.index("Epoch 2 of 3 in progress")
    assert messages[second_epoch - 1] == f"{epoch_1}: {total}/{total} images"

    features = recorder.progress(PHASE_FEATURES)
    first = features[0]
    assert first.step == 0 and first.total_steps > 0
    # The whole run's step count is known from the start and never changes.
    assert {p.total_steps for p in recorder.progress(PHASE_TRAINING)} == {first.total_steps}
    assert {p.total_steps for p in features} == {first.total_steps}
    steps = [p.step for p in features]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    # The backbone's rate shows while it computes, though head steps come between its batches.
    assert all(p.images_per_second > 0 for p in features if p.step > 0)

    training = recorder.progress(PHASE_TRAINING)
    assert all(p.images_per_second is None for p in training)
    assert training[-1].epochs_per_second > 0
    assert training[-1].step == first.total_steps
    assert training[-1].eta_seconds == pytest.approx(0.0)


def test_the_first_loss_comes_after_one_batch_of_backbone_features(tiny_dataset, tmp_path):
    class FirstLoss(Recorder):
        features_before_first_loss: int | None = None

        def on_batch(self, stats) -> None:
            if self.features_before_first_loss is None:
                self.features_before_first_loss = sum(
                    1 for p in self.progress(PHASE_FEATURES) if p.step > 0
                )

    recorder = FirstLoss()
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", batch_size=4, epochs=2)
    assert train(config, tmp_path / "run", recorder) == "completed"
    feature_batches = len([p for p in recorder.progress(PHASE_FEATURES) if p.step > 0])
    assert feature_batches >= 4  # many batches of features, only the first before a loss
    assert recorder.features_before_first_loss == 1


def test_epoch_messages_name_the_epoch_in_progress(tiny_dataset, tmp_path):
    recorder = Recorder()
    train(tiny_config(tiny_dataset, epochs=2), tmp_path / "run", recorder)
    epochs = [m for m in recorder.messages() if m.startswith("Epoch")]
    assert epochs == ["Epoch 1 of 2 in progress", "Epoch 2 of 2 in progress"]
    assert ("phase", "Checking the images", PHASE_PREPARING) in recorder.events


def test_a_stop_during_features_is_honoured_before_the_next_batch(tiny_dataset, tmp_path):
    control = JobControl()

    def stop_at_first_feature_batch(recorder: Recorder) -> None:
        if any(p.step >= 1 for p in recorder.progress(PHASE_FEATURES)):
            control.stop()

    recorder = Recorder(stop_at_first_feature_batch)
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", batch_size=4)
    assert train(config, tmp_path / "run", recorder, control) == "stopped"
    assert max(p.step for p in recorder.progress(PHASE_FEATURES)) == 1
    assert not recorder.progress(PHASE_TRAINING)


def test_a_stop_asked_before_the_features_start_computes_none(tiny_dataset, tmp_path):
    control = JobControl()
    control.stop()
    recorder = Recorder()
    config = tiny_config(tiny_dataset, freeze="all", augment="auto")
    assert train(config, tmp_path / "run", recorder, control) == "stopped"
    assert [p.step for p in recorder.progress(PHASE_FEATURES)] == [0]
