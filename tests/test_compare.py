"""Comparing runs without a browser: runs inside group folders, groups read from their files,
the table of every run, the settings that differ, overlaid curves, deleting runs and groups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.training import train_tiny_run
from tl_core.common import RunError, write_json
from tl_core.figures import overlay_figure
from tl_core.runs import (
    DIFFERS,
    METRICS_FILE,
    SWEEP_FILE,
    TRANSFER_FILE,
    FolderLock,
    Workspace,
    delete_run_or_group,
    deletion_targets,
    differing_settings,
    group_outcome,
    groups_frame,
    histories,
    list_groups,
    list_runs,
    load_runs,
    read_group,
    runs_frame,
    settings_frame,
)

VERDICT = "The pretrained weights bought 40 points: transfer helped."


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny runs that differ in their learning rate and label smoothing only."""
    return (
        train_tiny_run(tmp_path_factory),
        train_tiny_run(tmp_path_factory, lr=1e-3, label_smoothing=0.1),
    )


def copy_run(run: Path, to: Path, status: str | None = None) -> Path:
    shutil.copytree(run, to)
    if status is not None:  # e.g. "running": a run whose training process is gone
        metrics = json.loads((to / METRICS_FILE).read_text())
        write_json(to / METRICS_FILE, {**metrics, "status": status})
    return to


def make_transfer_check(folder: Path, pretrained: Path, scratch: Path) -> Path:
    copy_run(scratch, folder / "scratch")  # written first: the file's order still wins
    copy_run(pretrained, folder / "pretrained")
    write_json(
        folder / TRANSFER_FILE,
        {
            "kind": "transfer-check",
            "pretrained": 0.9,
            "scratch": 0.5,
            "gain": 40.0,
            "verdict": VERDICT,
            "runs": {"pretrained": "pretrained", "scratch": "scratch"},
        },
    )
    return folder


def make_sweep(folder: Path, runs: dict[str, Path], best: str, accuracies: dict[str, float]):
    rows = []
    for freeze, run in runs.items():
        copy_run(run, folder / f"freeze-{freeze}")
        rows.append(
            {
                "freeze": freeze,
                "run": f"freeze-{freeze}",
                "best_val_accuracy": accuracies[freeze],
                "seconds": 1.5,
            }
        )
    write_json(folder / SWEEP_FILE, {"kind": "sweep", "rows": rows, "best": best})
    return folder


@pytest.fixture
def root(tmp_path: Path, trained) -> Path:
    """A runs folder as the app keeps it: two single runs, a transfer check, a sweep, and an
    unrelated folder holding no runs."""
    first, second = trained
    runs = tmp_path / "runs"
    copy_run(first, runs / "single-a")
    copy_run(second, runs / "single-b", status="running")  # no process holds it
    make_transfer_check(runs / "check", first, second)
    make_sweep(runs / "sweep", {"all": second, "none": first}, "none", {"all": 0.4, "none": 0.8})
    (runs / "not-a-run" / "images").mkdir(parents=True)
    return runs


# ----------------------------------------------------------------------------- runs and groups

# Every run in the fixture's root, single or inside a group, relative to the root.
EVERY_RUN = {
    "single-a",
    "single-b",
    "check/pretrained",
    "check/scratch",
    "sweep/freeze-all",
    "sweep/freeze-none",
}


def test_list_runs_finds_runs_inside_groups_only_when_asked(root):
    assert sorted(run.name for run in list_runs(root)) == ["single-a", "single-b"]
    inside = {run.path.relative_to(root).as_posix() for run in list_runs(root, in_groups=True)}
    assert inside == EVERY_RUN


def test_groups_are_read_from_their_files_with_runs_in_the_files_order(root):
    groups = {group.name: group for group in list_groups(root)}
    assert set(groups) == {"check", "sweep"}  # a folder without runs is no group
    check, sweep = groups["check"], groups["sweep"]
    assert check.kind == "transfer-check" and check.result["gain"] == 40.0
    assert [run.name for run in check.runs] == ["pretrained", "scratch"]
    assert sweep.kind == "sweep"
    assert [run.name for run in sweep.runs] == ["freeze-all", "freeze-none"]
    assert read_group(root / "single-a") is None  # a run is not a group


def test_a_group_says_what_it_found(root):
    groups = {group.name: group for group in list_groups(root)}
    check = group_outcome(groups["check"])
    assert check.startswith(VERDICT)
    assert "pretrained 90.0%, from scratch 50.0% (+40.0 points)" in check
    # The best depth in words, as its run describes it, with its accuracy.
    assert group_outcome(groups["sweep"]) == "Best depth: full fine-tune (80.0%)."
    frame = groups_frame(list_groups(root)).set_index("group")
    assert frame.loc["check", "kind"] == "transfer check"
    assert frame.loc["sweep", "kind"] == "freeze-depth sweep"
    assert frame.loc["sweep", "runs"] == 2


def test_a_group_still_training_is_listed_before_its_file_is_written(tmp_path, trained):
    copy_run(trained[0], tmp_path / "sweep" / "freeze-2")
    (group,) = list_groups(tmp_path)
    assert group.kind == "group" and group.result == {}
    assert group_outcome(group).startswith("No result yet: 1 run so far")
    assert groups_frame([group]).loc[0, "kind"] == "unfinished group"


# ----------------------------------------------------------------------------- the table


def test_the_table_lists_every_run_with_its_settings_and_results(root, trained):
    runs, groups = load_runs(root)
    assert len(groups) == 2
    frame = runs_frame(runs).set_index("run")
    assert set(frame.index) == EVERY_RUN
    assert frame.loc["sweep/freeze-none", "group"] == "sweep"
    assert frame.loc["single-a", "group"] == ""
    single = frame.loc["single-a"]
    assert single["backbone"] == "test_efficientnet" and single["what trains"] == "full fine-tune"
    assert single["epochs"] == "3/3"
    assert single["augmentation"] == "none" and not single["pretrained"]
    history = json.loads((trained[0] / METRICS_FILE).read_text())["history"]
    assert single["training time (s)"] == pytest.approx(sum(r["seconds"] for r in history))
    assert single["best val accuracy"] == pytest.approx(
        json.loads((trained[0] / METRICS_FILE).read_text())["best_val_accuracy"]
    )
    assert "95 % CI" in single["accuracy (95 % interval)"]
    assert single["status"] == "completed"
    assert frame.loc["single-b", "status"] == "interrupted"
    assert frame.loc["single-a", "path"] == str(root / "single-a")


def test_an_empty_folder_gives_an_empty_table(tmp_path):
    runs, groups = load_runs(tmp_path / "missing")
    assert runs == [] and groups == []
    assert runs_frame(runs).empty and groups_frame(groups).empty


def test_the_settings_that_differ_are_found_and_flagged(root):
    runs, _ = load_runs(root)
    by_label = {run.label: run for run in runs}
    picked = [by_label["single-a"], by_label["single-b"]]
    differing = differing_settings(picked)
    assert set(differing) == {"lr", "label_smoothing", "data"}
    assert "backbone" not in differing and "augmentation used" not in differing
    frame = settings_frame(picked)
    assert list(frame.columns) == ["single-a", "single-b", DIFFERS]
    assert frame.loc["lr", "single-a"] == "0.003" and frame.loc["lr", "single-b"] == "0.001"
    assert frame.loc["lr", DIFFERS] and not frame.loc["backbone", DIFFERS]
    assert set(frame.index[frame[DIFFERS]]) == set(differing)
    same = settings_frame([by_label["single-a"], by_label["check/pretrained"]])
    assert not same.loc[same.index != "data", DIFFERS].any()  # a copy: only its data differs


# ----------------------------------------------------------------------------- the overlay


def test_the_overlay_draws_one_line_per_run():
    curves = {
        "a": [{"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0}],
        "b": [{"epoch": 1, "val_accuracy": 0.7}, {"epoch": 2, "val_accuracy": 0.9}],
        "no epochs yet": [],
    }
    accuracy = overlay_figure(curves, "val_accuracy")
    assert [trace.name for trace in accuracy.data] == ["a", "b"]
    assert list(accuracy.data[1].y) == [0.7, 0.9]
    assert accuracy.layout.yaxis.tickformat == ".0%"
    assert accuracy.layout.title.text == "Validation accuracy"
    loss = overlay_figure(curves, "val_loss")
    assert [trace.name for trace in loss.data] == ["a"]  # b has no loss column
    assert loss.layout.yaxis.tickformat is None and loss.layout.title.text == "Validation loss"


def test_runs_with_the_same_label_keep_separate_curves(root):
    runs, _ = load_runs(root)
    run = runs[0]
    assert list(histories([run, run])) == [run.label, f"{run.label} (2)"]


# ----------------------------------------------------------------------------- deleting


@pytest.fixture
def ws(tmp_path: Path, root: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    assert workspace.runs == root
    return workspace


def test_a_single_run_and_a_whole_group_are_deleted(ws, root):
    delete_run_or_group(ws, root / "single-a")
    assert not (root / "single-a").exists()
    delete_run_or_group(ws, root / "sweep")
    assert not (root / "sweep").exists() and (root / "check" / "pretrained").is_dir()


def test_a_run_inside_a_group_is_only_deleted_with_its_group(ws, root):
    with pytest.raises(RunError, match="belongs to the group check"):
        delete_run_or_group(ws, root / "check" / "scratch")
    assert (root / "check" / "scratch").is_dir()


def test_a_group_a_training_writes_to_is_not_deleted(ws, root):
    member = root / "sweep" / "freeze-all"
    copy_run(member, root / "sweep" / "freeze-2", status="running")
    lock = FolderLock.acquire(root / "sweep" / "freeze-2")
    try:
        with pytest.raises(RunError, match="still training \\(freeze-2\\)"):
            delete_run_or_group(ws, root / "sweep")
        assert member.is_dir()
    finally:
        lock.release(remove=True)
    delete_run_or_group(ws, root / "sweep")  # once the training is over
    assert not (root / "sweep").exists()


def test_picked_groups_are_deleted_whole_and_runs_inside_groups_never_alone(root):
    runs, groups = load_runs(root)
    by_label = {run.label: run for run in runs}
    check = next(group for group in groups if group.name == "check")
    picked = [by_label["single-a"], by_label["sweep/freeze-all"]]
    assert deletion_targets(picked, []) == {root / "single-a": "the run single-a"}
    assert deletion_targets(picked, [check]) == {
        root / "check": "the group check and its 2 runs",
        root / "single-a": "the run single-a",
    }


def test_a_sweep_still_training_says_so(tmp_path, trained):
    folder = make_sweep(tmp_path / "sweep", {"none": trained[0]}, "none", {"none": 0.6})
    result = json.loads((folder / SWEEP_FILE).read_text())
    pending = {"freeze": "2", "run": None, "best_val_accuracy": None, "status": "pending"}
    write_json(folder / SWEEP_FILE, {**result, "rows": [*result["rows"], pending]})
    (group,) = list_groups(tmp_path)
    assert group_outcome(group) == "Best depth: full fine-tune (60.0%) so far; 1 depth to go."
    write_json(folder / SWEEP_FILE, {**result, "rows": [pending], "best": None})
    (group,) = list_groups(tmp_path)
    assert group_outcome(group) == "Still training: no depth has finished yet."
