"""The automatic recipe search: the plan fitted to a budget, decisions from evidence, the
budget kept, Stop keeping the best run, auto.json, the job, the group on Compare, the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import make_image_folder
from tests.test_progress import FakeClock
from tests.training import tiny_config
from tl_core.analysis import CandidateScore, rank_candidates
from tl_core.auto import Budget, SearchObserver, SearchSettings, parse_budget, run_search
from tl_core.auto.budget import StepControl
from tl_core.auto.decisions import (
    Measured,
    choose_augment,
    choose_backbones,
    choose_freeze,
    choose_lr,
)
from tl_core.auto.plan import DataShape, Throughput, plan_search
from tl_core.auto.result import BEST_KEYS
from tl_core.cli.main import main
from tl_core.common import JobControl, TrainingStopped, UsageError
from tl_core.inference import Predictor
from tl_core.jobs import JobScheduler
from tl_core.models import create_model
from tl_core.runs import WEIGHTS_FILE, list_groups
from tl_core.runs.groups import AUTO_FILE

# The steps, by the names auto.json gives them.
BACKBONES, FREEZE, LR, AUGMENT, FINAL, TRANSFER = (
    "backbones", "freeze", "lr", "augment", "final", "transfer"
)  # fmt: skip
CLASSES = {"red": 10, "green": 10, "blue": 10}
TINY = ("test_efficientnet", "test_resnet")


def _unpretrained(name: str, classes: int):
    return create_model(name, classes, pretrained=False)


def _settings(data: Path, budget: float, **changes) -> SearchSettings:
    return SearchSettings(
        data=str(data),
        budget_seconds=budget,
        base=tiny_config(data, freeze="all", early_stopping_patience=3),
        **{"backbones": TINY, "model_factory": _unpretrained, **changes},
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("auto") / "colours", CLASSES)


# ---- the plan ----------------------------------------------------------------------------------

SLOW = Throughput("slow", infer_images_per_second=6.0, train_images_per_second=2.0, groups=6)
FAST = Throughput("fast", infer_images_per_second=3000.0, train_images_per_second=1000.0, groups=6)
SHAPE = DataShape(images=600, classes=3)


@pytest.mark.parametrize("speed", [SLOW, FAST], ids=["slow", "fast"])
@pytest.mark.parametrize("budget", [120.0, 600.0, 3600.0])
def test_the_plan_fits_the_budget_on_a_slow_and_a_fast_machine(speed, budget):
    plan = plan_search(budget, 5.0, [speed], SHAPE)
    assert plan.seconds <= budget
    assert [s.step for s in plan.steps] == [BACKBONES, FREEZE, LR, AUGMENT, FINAL, TRANSFER]
    assert plan.runs(FINAL)  # a model always comes out
    for step in plan.skipped:  # what is skipped says why
        assert step.seconds == 0 and (
            "needs about" in step.skipped or "only one backbone" in step.skipped
        )
    assert plan.lines()[-1].startswith("In all about")


def test_a_fast_machine_searches_what_a_slow_one_must_skip():
    slow = plan_search(600.0, 5.0, [SLOW, SLOW], SHAPE)
    fast = plan_search(600.0, 5.0, [FAST, FAST], SHAPE)
    assert all(s.runs for s in fast.steps)
    assert len(fast.depths) == 4
    skipped = {s.step for s in slow.skipped}
    assert {FREEZE, AUGMENT, TRANSFER} <= skipped
    assert "searching time is left" in slow.step(FREEZE).skipped
    assert "0" in fast.depths and fast.step(FREEZE).seconds > 0


def test_a_big_dataset_skips_augmentation_and_says_why():
    plan = plan_search(3600.0, 1.0, [FAST], DataShape(images=20_000, classes=10))
    assert "enough without it" in plan.step(AUGMENT).skipped
    assert "only one backbone to compare" in plan.step(BACKBONES).skipped


def test_budgets_are_read_as_durations():
    assert parse_budget("10m") == 600
    assert parse_budget("1h30m") == 5400
    assert parse_budget("90s") == parse_budget("90") == 90
    with pytest.raises(UsageError, match="not a duration"):
        parse_budget("ten minutes")


# ---- the budget's clock and limits -------------------------------------------------------------


def test_a_step_stops_before_an_epoch_that_would_end_past_its_limit():
    clock = FakeClock()
    budget = Budget(100.0, clock)
    control = StepControl(JobControl(), budget, limit=50.0, hard_limit=80.0)
    clock.now = 30.0
    control.after_epoch(15.0)  # would end at 45: carries on
    assert not control.stop_requested
    clock.now = 40.0
    control.after_epoch(15.0)  # would end at 55, past 50
    assert control.stop_requested and control.out_of_time


def test_a_step_stops_at_its_hard_limit_and_pauses_do_not_count():
    clock = FakeClock()
    budget = Budget(100.0, clock)
    control = StepControl(JobControl(), budget, limit=50.0, hard_limit=80.0)
    clock.now = 70.0
    budget.pause(True)
    clock.now = 500.0  # paused for 430 s
    budget.pause(False)
    assert budget.used() == pytest.approx(70.0)
    control.checkpoint()
    clock.now = 511.0
    with pytest.raises(TrainingStopped):
        control.checkpoint()


def test_the_users_stop_reaches_every_step():
    outer = JobControl()
    control = StepControl(outer, Budget(100.0, FakeClock()), 50.0, 80.0)
    outer.stop()
    assert control.is_set()
    with pytest.raises(TrainingStopped):
        control.checkpoint()


# ---- decisions from evidence -------------------------------------------------------------------


def _candidate(name: str, folds: tuple[float, ...], speed: float) -> CandidateScore:
    return CandidateScore(name, folds, 0.0, speed, 5.0, 224, None, "test")


def test_backbones_within_chance_of_the_best_are_kept_fastest_first():
    ranked = rank_candidates(
        [
            _candidate("big", (0.90, 0.92, 0.95), 20.0),
            _candidate("small", (0.86, 0.90, 0.93), 80.0),
            _candidate("poor", (0.40, 0.45, 0.50), 200.0),
        ]
    )
    kept, decision = choose_backbones(ranked)
    assert kept == ["small", "big"]
    assert decision.decision.startswith("small: expected head-only accuracy")
    assert "4.0 times as fast" in decision.decision and "Left out" in decision.decision
    assert "poor" in decision.decision and len(decision.evidence) == 3


def test_the_freeze_depth_with_the_best_accuracy_wins_and_ties_are_said():
    rows = [
        Measured("freeze 0", "0", 0.70, 200, "a"),
        Measured("freeze 2", "2", 0.92, 200, "b"),
        Measured("freeze all", "all", 0.90, 200, "c"),
    ]
    best, decision = choose_freeze(rows, "net")
    assert best.value == "2"
    assert decision.decision.startswith("net: freeze 2 cannot be told apart from freeze all")
    assert "freeze 2 is kept, the best of 0/2/all, 92 % (" in decision.decision
    assert "freeze 0" not in decision.decision.split("apart from")[1]
    assert decision.runs == ("a", "b", "c")
    # Equal accuracies: the more frozen depth (cheaper) is kept.
    tied = [Measured("freeze 0", "0", 0.8, 50, "a"), Measured("freeze all", "all", 0.8, 50, "c")]
    assert choose_freeze(tied, "net")[0].value == "all"


def test_the_learning_rate_comes_from_lr_finds_valley_when_it_is_sensible():
    assert choose_lr(2e-3, 3e-3, points=60)[0] == 2e-3
    lr, decision = choose_lr(5.0, 3e-3, points=60)
    assert lr == 3e-3 and "outside" in decision.decision
    lr, decision = choose_lr(None, 3e-3)
    assert lr == 3e-3 and "too short" in decision.decision


def test_augmentation_follows_the_measured_runs():
    off = Measured("augmentation none", "none", 0.60, 400, "off")
    on = Measured("augmentation light", "light", 0.80, 400, "on")
    assert choose_augment(off, on)[0] == "light"
    close = Measured("augmentation light", "light", 0.62, 400, "on")
    chosen, decision = choose_augment(off, close)
    assert chosen == "light" and "cannot be told apart" in decision.decision
    worse = Measured("augmentation light", "light", 0.40, 400, "on")
    assert choose_augment(off, worse)[0] == "none"


# ---- the whole search --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(data, tmp_path_factory):
    """A search through the scheduler, as the app runs it."""
    root = tmp_path_factory.mktemp("runs")
    scheduler = JobScheduler(root)
    job = scheduler.start_auto(_settings(data, 15.0))
    snapshot = job.wait(timeout=300)
    return snapshot, Path(snapshot.group_dir)


def test_the_search_runs_as_a_job_and_hands_over_an_ordinary_run(searched):
    snapshot, folder = searched
    assert snapshot.status == "completed", snapshot.error
    live = snapshot.result
    assert live["plan_lines"][-1].startswith("In all about")
    assert live["step_index"] == live["step_total"] >= 2
    assert 0 < live["used_seconds"] <= 15 + 10
    best = Path(snapshot.result_run)
    assert best.parent == folder
    predictor = Predictor.from_run(best, device="cpu")
    rankings = predictor.predict_images([Image.new("RGB", (40, 40), (220, 40, 40))], top_k=1)
    assert len(rankings) == 1


def test_auto_json_follows_its_schema(searched):
    _, folder = searched
    content = json.loads((folder / AUTO_FILE).read_text())
    assert {"budget_seconds", "seconds", "steps", "best"} <= set(content)
    assert content["budget_seconds"] == 15.0
    assert 0 < content["seconds"] <= 15 + 10
    assert content["steps"], "every search decides something"
    for step in content["steps"]:
        assert set(step) == {"step", "decision", "evidence", "runs"}
        assert isinstance(step["decision"], str) and step["decision"]
        assert all(isinstance(line, str) for line in step["evidence"])
        assert all((folder / run / "config.json").is_file() for run in step["runs"])
    best = content["best"]
    assert list(best) == list(BEST_KEYS)
    assert best["val_low"] <= best["val_accuracy"] <= best["val_high"]
    assert best["backbone"] in TINY and (folder / best["run"] / "config.json").is_file()


def test_the_steps_runs_are_one_group_on_compare(searched):
    _, folder = searched
    (group,) = list_groups(folder.parent)
    assert group.kind == "auto"
    content = json.loads((folder / AUTO_FILE).read_text())
    named = {run for step in content["steps"] for run in step["runs"]}
    assert named <= {run.name for run in group.runs}
    assert group.runs[0].name == content["best"]["run"]


def test_the_search_ends_within_its_budget_plus_one_epoch(data, tmp_path):
    """With a budget too small for the search it skips what does not fit and still ends in
    time: its budget, plus at most the longest epoch it trained (on the clock, a head-only
    run's features included)."""
    marks: list[float] = []

    class Epochs(SearchObserver):
        def on_run(self, label, run_dir):
            marks.append(time.monotonic())

        def on_epoch(self, row, improved):
            marks.append(time.monotonic())

    result = run_search(_settings(data, 6.0), tmp_path / "auto", Epochs())
    assert result.status == "completed"
    longest = max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=0.0)
    # Measuring one backbone cannot be skipped (on a loaded machine it may take the whole
    # budget); then a second of slack for writing the run's files.
    start = max(6.0, result.plan.measured_seconds)
    assert result.seconds <= start + longest + 1.0
    # What the plan left out is said (how much fits in 6 s depends on the machine's speed).
    for step in result.plan.skipped:
        assert any(sentence.startswith(step.title) for sentence in result.not_tried)
    assert result.best is not None


def test_a_stop_keeps_the_best_run_so_far_and_says_what_was_not_tried(data, tmp_path):
    control = JobControl()

    class StopAfterTwoRuns(SearchObserver):
        runs = 0

        def on_run_done(self, label, run_dir, status):
            self.runs += 1
            if self.runs == 2:
                control.stop()

    result = run_search(
        _settings(data, 60.0, backbones=TINY[:1]), tmp_path / "auto", StopAfterTwoRuns(), control
    )
    assert result.status == "stopped"
    content = json.loads((tmp_path / "auto" / AUTO_FILE).read_text())
    tried = [run for run in (tmp_path / "auto").iterdir() if (run / "config.json").is_file()]
    assert len(tried) == 2
    assert content["best"]["run"] in {run.name for run in tried}
    accuracies = [
        json.loads((run / "metrics.json").read_text())["best_val_accuracy"] for run in tried
    ]
    assert content["best"]["val_accuracy"] == pytest.approx(max(accuracies), abs=1e-4)
    assert any("stopped before it" in sentence for sentence in content["not_tried"])
    assert (tmp_path / "auto" / content["best"]["run"] / WEIGHTS_FILE).is_file()


def test_the_search_keeps_the_backbone_whose_features_tell_the_classes_apart(
    data, tmp_path, monkeypatch
):
    """The advisor's stand-ins: test_vit's features are noise, test_efficientnet's the
    image's colour, so only test_efficientnet is within chance of the best, and the freeze
    depths are tried on it alone (the search is stopped after that decision)."""
    from tests.test_advisor import known_factory
    from tl_core.auto import search

    monkeypatch.setattr(search, "MEASURE_SHARE", 1.0)  # both measured, however loaded the CPU
    control = JobControl()

    class StopAfterFreeze(SearchObserver):
        def on_decision(self, decision, result):
            if decision.step == FREEZE:
                control.stop()

    settings = _settings(
        data, 120.0, backbones=("test_vit", "test_efficientnet"), model_factory=known_factory
    )
    result = run_search(settings, tmp_path / "auto", StopAfterFreeze(), control)
    backbones, freeze = result.decisions[:2]
    assert backbones.step == BACKBONES
    assert backbones.decision.startswith("test_efficientnet: highest expected")
    assert "Left out (below the best beyond chance): test_vit" in backbones.decision
    assert freeze.step == FREEZE and re.match(r"test_efficientnet(,|:) freeze ", freeze.decision)
    assert all(run.startswith("test_efficientnet-") for run in freeze.runs)
    assert result.best.backbone == "test_efficientnet"


# ---- the command line --------------------------------------------------------------------------


def test_the_cli_prints_the_plan_progress_decisions_and_the_best_run(data, tmp_path, capsys):
    out = tmp_path / "auto"
    flags = [
        "--budget", "12s", "--backbones", "test_efficientnet", "--no-pretrained",
        "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--workers", "0",
        "--no-feature-cache",
    ]  # fmt: skip
    assert main(["auto", str(data), "--out", str(out), *flags]) == 0
    captured = capsys.readouterr()
    assert "The plan, fitted to this computer's measured speed:" in captured.err
    assert "Step 1 of" in captured.err and "used)" in captured.err
    assert "Decisions:" in captured.out and "Best run:" in captured.out
    assert (out / AUTO_FILE).is_file()
    assert main(["auto", str(data), "--out", str(tmp_path / "b"), "--budget", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_the_final_runs_first_epoch_always_finishes():
    clock = FakeClock()
    budget = Budget(10.0, clock)
    control = StepControl(JobControl(), budget, 10.0, 11.0, first_epoch_runs=True)
    clock.now = 50.0
    control.checkpoint()  # past every limit, but no epoch has finished yet
    control.after_epoch(40.0)
    with pytest.raises(TrainingStopped):
        control.checkpoint()
