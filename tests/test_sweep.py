"""Freeze-depth sweep: a run per depth, sweep.json, the reading in words, the chart, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image_folder
from tests.training import tiny_config
from tl_core import figures
from tl_core.analysis import (
    SweepObserver,
    SweepResult,
    SweepRow,
    best_row,
    default_depths,
    read_sweep,
    resolve_depths,
)
from tl_core.analysis.sweep import sweep
from tl_core.cli.main import main
from tl_core.common import JobControl, TLStudioError, UsageError
from tl_core.config import parse_freeze
from tl_core.runs import LOCK_FILE, SWEEP_FILE

# test_efficientnet has 6 layer groups before its head.
TINY_GROUPS = 6
CLI_FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--epochs", "1", "--batch-size", "8",
    "--image-size", "32", "--augment", "none", "--device", "cpu", "--workers", "0", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("sweep") / "data", TINY_CLASSES)


@pytest.fixture(scope="module")
def swept(data, tmp_path_factory) -> SweepResult:
    """A sweep over three depths, given out of order (and "none" for 0)."""
    out = tmp_path_factory.mktemp("swept") / "sweep"
    return sweep(tiny_config(data, epochs=1), out, ["all", "none", "3"])


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- running -----------------------------------------------------------------------------------


def test_one_run_per_depth_in_its_folder_with_the_same_split(swept):
    assert [r.freeze for r in swept.rows] == ["0", "3", "all"]
    assert [r.frozen_groups for r in swept.rows] == [0, 3, TINY_GROUPS]
    splits = []
    for row in swept.rows:
        folder = swept.path / row.run
        assert row.run == f"freeze-{row.freeze}" and row.status == "completed"
        config = _json(folder / "config.json")
        assert config["train"]["freeze"] == row.freeze
        # The depth is written once (the train setting); the groups resolve it.
        assert "frozen_groups" not in config["model"]["freeze"]
        groups = len(config["model"]["freeze"]["groups"]) - 1
        assert parse_freeze(config["train"]["freeze"], groups) == row.frozen_groups
        assert config["model"]["freeze"]["trainable_params"] == row.trainable_params
        assert _json(folder / "metrics.json")["status"] == "completed"
        splits.append(_json(folder / "split.json"))
    assert splits[0] == splits[1] == splits[2]
    # Only the head-only depth trains on backbone features computed once.
    cached = [
        _json(swept.path / r.run / "config.json")["model"]["feature_cache"] for r in swept.rows
    ]
    assert cached == [False, False, True]
    assert sorted(p.name for p in swept.path.iterdir()) == [
        "freeze-0", "freeze-3", "freeze-all", SWEEP_FILE,
    ]  # fmt: skip


def test_sweep_json_has_the_shared_format_and_the_best_row(swept):
    data = _json(swept.path / SWEEP_FILE)
    assert data["kind"] == "sweep"
    for row, stored in zip(swept.rows, data["rows"], strict=True):
        assert {"freeze", "run", "best_val_accuracy", "seconds"} <= stored.keys()
        assert stored["freeze"] == row.freeze and stored["run"] == row.run
        metrics = _json(swept.path / row.run / "metrics.json")
        assert stored["best_val_accuracy"] == metrics["best_val_accuracy"]
        assert isinstance(stored["seconds"], float) and stored["seconds"] > 0
        assert stored["num_val_images"] == len(_json(swept.path / row.run / "split.json")["val"])
    assert data["best"] == best_row(swept.rows).freeze
    assert data["num_backbone_groups"] == TINY_GROUPS
    assert read_sweep(swept.path).to_dict() == data
    # A group folder is no run, and the sweep let go of it when it ended.
    assert not (swept.path / "config.json").exists()
    assert not (swept.path / LOCK_FILE).exists()


class _StopAt(SweepObserver):
    """Asks the sweep to stop at a given moment: the end of a run, or an epoch of a run."""

    def __init__(self, control: JobControl, after_run: int | None = None, in_run: int = 0):
        self.control, self.after_run, self.in_run = control, after_run, in_run
        self.started: list[str] = []

    def on_run_start(self, index, total, row) -> None:
        self.started.append(row.freeze)

    def on_run_end(self, index, total, row) -> None:
        if index == self.after_run:
            self.control.stop()

    def on_epoch(self, row, improved) -> None:
        if len(self.started) == self.in_run:
            self.control.stop()


def test_stop_between_runs_cancels_the_rest_of_the_queue(data, tmp_path):
    control = JobControl()
    observer = _StopAt(control, after_run=1)
    result = sweep(
        tiny_config(data, epochs=1), tmp_path / "s", ["0", "3", "all"], observer, control
    )
    assert observer.started == ["0"]
    assert [r.status for r in result.rows] == ["completed", "not run", "not run"]
    assert [r.run for r in result.rows] == ["freeze-0", None, None]
    assert sorted(p.name for p in result.path.iterdir()) == ["freeze-0", SWEEP_FILE]
    stored = _json(result.path / SWEEP_FILE)
    assert [r["status"] for r in stored["rows"]] == ["completed", "not run", "not run"]
    assert stored["best"] == "0"
    assert "Not run (the sweep was stopped): freeze 3 and all." in result.summary()


def test_stop_during_a_run_stops_it_and_cancels_the_rest(data, tmp_path):
    control = JobControl()
    observer = _StopAt(control, in_run=2)
    result = sweep(
        tiny_config(data, epochs=2), tmp_path / "s", ["0", "3", "all"], observer, control
    )
    assert observer.started == ["0", "3"]
    assert [r.status for r in result.rows] == ["completed", "stopped", "not run"]
    assert _json(result.path / "freeze-3" / "metrics.json")["status"] == "stopped"
    # A stopped run trained fewer epochs: it is shown, but it cannot be the best.
    assert result.best == "0"


def test_an_interrupt_leaves_a_true_sweep_json(data, tmp_path):
    class Interrupt(SweepObserver):
        def on_run_end(self, index, total, row) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(tiny_config(data, epochs=1), tmp_path / "s", ["0", "all"], Interrupt())
    stored = _json(tmp_path / "s" / SWEEP_FILE)
    assert [r["status"] for r in stored["rows"]] == ["completed", "not run"]
    assert not (tmp_path / "s" / LOCK_FILE).exists()


def test_a_depth_that_fails_while_training_is_recorded_and_the_sweep_goes_on(data, tmp_path):
    class FailFirst(SweepObserver):
        def __init__(self):
            self.runs = 0

        def on_run_start(self, index, total, row) -> None:
            self.runs = index

        def on_epoch(self, row, improved) -> None:
            if self.runs == 1:
                raise RuntimeError("out of memory")

    result = sweep(tiny_config(data, epochs=1), tmp_path / "s", ["0", "all"], FailFirst())
    failed, done = result.rows
    assert (failed.status, done.status) == ("failed", "completed")
    assert failed.run == "freeze-0" and "out of memory" in failed.error
    assert result.failed == [failed] and result.best == "all"
    assert "Failed: freeze 0" in result.summary()
    assert _json(tmp_path / "s" / SWEEP_FILE)["rows"][0]["status"] == "failed"


def test_a_failure_before_training_raises_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(TLStudioError):
        sweep(tiny_config(tmp_path / "nowhere", epochs=1), tmp_path / "s", ["0", "all"])
    assert not (tmp_path / "s").exists()


def test_a_folder_that_holds_files_is_refused(data, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("mine")
    with pytest.raises(TLStudioError, match="not empty"):
        sweep(tiny_config(data, epochs=1), tmp_path / "s", ["0", "all"])
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["keep.txt"]


# ---- depths ------------------------------------------------------------------------------------


def test_depths_are_checked_against_the_backbone_and_put_in_order():
    groups, resolved = resolve_depths("test_efficientnet", ["all", "02", "none"])
    assert groups == TINY_GROUPS
    assert resolved == [("0", 0), ("2", 2), ("all", TINY_GROUPS)]
    with pytest.raises(UsageError, match="from 0 to 6"):
        resolve_depths("test_efficientnet", ["0", "9"])
    with pytest.raises(UsageError, match="from 0 to 6"):
        resolve_depths("test_efficientnet", ["half"])
    with pytest.raises(UsageError, match="same"):
        resolve_depths("test_efficientnet", ["none", "0"])
    with pytest.raises(UsageError, match="same"):
        resolve_depths("test_efficientnet", ["6", "all"])


def test_default_depths_span_full_fine_tuning_to_head_only():
    assert default_depths(8) == ["0", "2", "4", "6", "all"]
    assert default_depths(1) == ["0", "all"]
    assert resolve_depths("test_efficientnet")[1][0] == ("0", 0)


# ---- reading -----------------------------------------------------------------------------------


def _result(accuracies, groups=8, params=None, seconds=None, pretrained=True) -> SweepResult:
    """A finished sweep over depths 0, 2, 4, ... with these accuracies on 200 images."""
    rows = [
        SweepRow(
            freeze="all" if 2 * i == groups else str(2 * i),
            frozen_groups=2 * i,
            run=f"freeze-{2 * i}",
            best_val_accuracy=accuracy,
            seconds=(seconds or [10.0] * len(accuracies))[i],
            status="completed",
            trainable_params=(params or [1000 - 100 * i for i in range(len(accuracies))])[i],
            num_val_images=200,
        )
        for i, accuracy in enumerate(accuracies)
    ]
    return SweepResult(Path("s"), "tf_efficientnet_lite0", pretrained, groups, rows)


def test_the_best_row_is_the_most_accurate_and_ties_go_to_fewer_trainable_parameters():
    result = _result([0.80, 0.90, 0.85])
    assert result.best == "2"
    tied = _result([0.90, 0.90, 0.85], params=[1000, 400, 100])
    assert tied.best == "2"
    same_size = _result([0.90, 0.90], params=[400, 400], seconds=[20.0, 5.0])
    assert same_size.best == "2"


def test_the_summary_names_the_best_depth_with_its_interval_and_meaning():
    summary = _result([0.70, 0.75, 0.95, 0.80, 0.78]).summary()
    assert summary.startswith("Freezing the first 4 of 8 groups did best, with 95.0%")
    assert "95 % CI" in summary and "200 images" in summary
    assert "later layers had to adapt" in summary
    head_only = _result([0.70, 0.80, 0.85, 0.88, 0.95]).summary()
    assert head_only.startswith("Training only the head (all 8 layer groups frozen) did best")
    full = _result([0.95, 0.80, 0.70]).summary()
    assert full.startswith("Fine-tuning every layer (no group frozen) did best")


def test_a_mid_depth_dip_is_explained_as_split_co_adapted_layers():
    result = _result([0.90, 0.80, 0.92])
    assert result.dip().freeze == "2"
    assert "layers that only work together were split" in result.summary()
    assert "freeze 2: 80.0%" in result.summary()
    for no_dip in ([0.90, 0.85, 0.80], [0.80, 0.85, 0.90], [0.90, 0.895, 0.92]):
        assert _result(no_dip).dip() is None
        assert "split" not in _result(no_dip).summary()


def test_close_results_are_called_possibly_chance():
    summary = _result([0.90, 0.91, 0.60]).summary()
    assert "Freeze 0 scored within its 95 % interval" in summary
    assert "may be chance" in summary
    assert "Freeze 0 and" not in summary  # 60 % is clearly worse, not within the interval


# ---- figure ------------------------------------------------------------------------------------

ROWS = [
    {"freeze": "0", "run": "freeze-0", "best_val_accuracy": 0.8, "seconds": 30.0,
     "frozen_groups": 0, "status": "completed", "num_val_images": 50},
    {"freeze": "all", "run": "freeze-all", "best_val_accuracy": 0.9, "seconds": 3.0,
     "frozen_groups": 8, "status": "completed", "num_val_images": 50},
    {"freeze": "4", "run": "freeze-4", "best_val_accuracy": 0.7, "seconds": 12.0,
     "frozen_groups": 4, "status": "completed", "num_val_images": 50},
    {"freeze": "6", "run": None, "best_val_accuracy": None, "seconds": 0.0,
     "frozen_groups": 6, "status": "not run", "num_val_images": None},
]  # fmt: skip


def test_sweep_figure_plots_accuracy_and_time_by_frozen_groups_and_marks_the_best():
    fig = figures.sweep_figure(ROWS, best="all")
    accuracy, time, best = fig.data
    assert [t.name for t in fig.data] == ["validation accuracy", "training time", "best"]
    assert list(accuracy.x) == [0, 4, 8] and list(accuracy.y) == [0.8, 0.7, 0.9]
    assert accuracy.error_y.array is not None and "50 images" in accuracy.text[0]
    assert list(time.x) == [0, 4, 8] and list(time.y) == [30.0, 12.0, 3.0]
    assert time.yaxis == "y2" and fig.layout.yaxis2.overlaying == "y"
    assert list(best.x) == [8] and list(best.y) == [0.9]
    assert list(fig.layout.xaxis.ticktext) == ["0", "4", "6", "all"]
    assert fig.layout.yaxis.tickformat == ".0%"


def test_sweep_figure_without_a_best_or_image_counts_draws_plain_points():
    rows = [{k: v for k, v in r.items() if k != "num_val_images"} for r in ROWS]
    fig = figures.sweep_figure(rows)
    assert [t.name for t in fig.data] == ["validation accuracy", "training time"]
    assert fig.data[0].error_y.array is None


# ---- command line ------------------------------------------------------------------------------


def test_cli_refuses_a_depth_the_backbone_does_not_have(capsys, data, tmp_path):
    code = main(["sweep", str(data), "--out", str(tmp_path / "s"), "--freeze", "0,9", *CLI_FLAGS])
    err = capsys.readouterr().err
    assert code == 2
    assert "'9'" in err and "from 0 to 6" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_cli_json_prints_sweep_json(capsys, data, tmp_path):
    out = tmp_path / "s"
    code = main(["sweep", str(data), "--out", str(out), "--freeze", "all,0", "--json", *CLI_FLAGS])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed == _json(out / SWEEP_FILE)
    assert printed["kind"] == "sweep"
    assert [(r["freeze"], r["run"]) for r in printed["rows"]] == [
        ("0", "freeze-0"), ("all", "freeze-all"),
    ]  # fmt: skip
    assert printed["best"] in ("0", "all")
    assert all(0 <= r["best_val_accuracy"] <= 1 for r in printed["rows"])


def test_cli_prints_a_line_per_depth_a_table_and_the_summary(capsys, data, tmp_path):
    flags = [f for f in CLI_FLAGS if f != "--quiet"]
    code = main(["sweep", str(data), "--out", str(tmp_path / "s"), "--freeze", "0,all", *flags])
    captured = capsys.readouterr()
    assert code == 0
    assert "[1/2] freeze 0: completed" in captured.err
    assert "[2/2] freeze all: completed" in captured.err
    assert "best validation accuracy" in captured.out and "95 % CI" in captured.out
    assert "Best depth: freeze" in captured.out and "did best" in captured.out
