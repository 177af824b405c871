"""The Compare page, driven headlessly with AppTest: every run and group listed, picked runs
overlaid with their differing settings highlighted, notes, and deletion once confirmed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app_pages.ui import state
from tests.apptest_helpers import button, open_page, texts
from tests.test_compare import copy_run, make_sweep
from tests.training import train_tiny_run
from tl_core.runs import WORKSPACE_ENV, Workspace, read_note

PAGE = state.COMPARE_PAGE


@pytest.fixture(scope="module")
def runs(module_workspace: Workspace, tmp_path_factory) -> Path:
    """Two single runs that differ in their learning rate, and a sweep of two depths."""
    first = train_tiny_run(tmp_path_factory)
    second = train_tiny_run(tmp_path_factory, lr=1e-3)
    root = module_workspace.runs
    copy_run(first, root / "fast")
    copy_run(second, root / "slow")
    make_sweep(root / "depths", {"all": second, "none": first}, "none", {"all": 0.4, "none": 0.8})
    return root


def table(at, name: str):
    """The page's table whose key starts with ``name`` ("compare_runs", "compare_groups")."""
    return next(frame for frame in at.dataframe if (frame.key or "").startswith(name))


def pick(at, name: str, labels: list[str], column: str):
    """Ticks the rows of a table whose ``column`` holds ``labels``, then reruns."""
    frame = table(at, name)
    rows = [i for i, value in enumerate(frame.value[column]) if value in labels]
    assert len(rows) == len(labels)
    at.session_state[frame.key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def chart_traces(at) -> list[list[str]]:
    return [
        [trace["name"] for trace in json.loads(chart.proto.spec)["data"]]
        for chart in at.get("plotly_chart")
    ]


def test_the_page_lists_every_run_and_every_group(runs):
    at = open_page(PAGE)
    groups = table(at, "compare_groups").value
    assert list(groups["group"]) == ["depths"]
    assert groups["kind"][0] == "freeze-depth sweep"
    assert groups["outcome"][0] == "Best depth: full fine-tune (80.0%)."
    listed = table(at, "compare_runs").value
    assert set(listed["run"]) == {"fast", "slow", "depths/freeze-all", "depths/freeze-none"}
    assert set(listed["status"]) == {"completed"}
    assert not at.get("plotly_chart")  # nothing picked yet
    assert "Tick two or more runs" in texts(at.info)


def test_picking_two_runs_overlays_their_curves_and_highlights_what_differs(runs):
    at = pick(open_page(PAGE), "compare_runs", ["fast", "slow"], "run")
    assert not at.exception
    # Accuracy and loss, one line per run, in the table's order.
    assert [sorted(names) for names in chart_traces(at)] == [["fast", "slow"]] * 2
    settings = at.dataframe[-1].value
    assert sorted(settings.columns) == ["differs", "fast", "slow"]
    assert settings.loc["lr", "differs"] and not settings.loc["backbone", "differs"]
    assert "2 settings differ" in texts(at.caption)  # the learning rate and the data folder
    next(t for t in at.toggle if t.label == "Only the settings that differ").set_value(True).run()
    assert set(at.dataframe[-1].value.index) == {"lr", "data"}


def test_picking_a_group_shows_and_overlays_its_runs(runs):
    at = pick(open_page(PAGE), "compare_groups", ["depths"], "group")
    assert not at.exception
    assert set(table(at, "compare_runs").value["run"]) == {
        "depths/freeze-all",
        "depths/freeze-none",
    }
    assert sorted(chart_traces(at)[0]) == ["depths/freeze-all", "depths/freeze-none"]
    settings = at.dataframe[-1].value
    assert set(settings.index[settings["differs"]]) == {"lr", "data"}  # copies of two runs
    # The group is deleted whole, never one of its runs on its own.
    assert "the group depths and its 2 runs" in texts(at.markdown)


def test_a_run_inside_a_group_is_not_offered_for_deletion_alone(runs):
    at = pick(open_page(PAGE), "compare_runs", ["depths/freeze-all"], "run")
    assert "deleted with its group" in texts(at.caption)
    assert not at.get("form")


def test_a_note_is_saved_and_shown_in_the_table(runs):
    at = pick(open_page(PAGE), "compare_runs", ["fast"], "run")
    note = next(t for t in at.text_input if t.key == f"run_note:{runs / 'fast'}")
    note.set_value("clean data").run()
    assert not at.exception
    assert read_note(runs / "fast") == "clean data"
    listed = table(at, "compare_runs").value.set_index("run")
    assert listed.loc["fast", "note"] == "clean data"


def test_deleting_a_run_asks_for_confirmation_first(runs):
    doomed = copy_run(runs / "slow", runs / "doomed")
    try:
        at = pick(
            open_page(PAGE, **{state.RUN_KEY: str(doomed)}), "compare_runs", ["doomed"], "run"
        )
        assert "the run doomed" in texts(at.markdown)
        button(at, "Delete").click().run()  # not confirmed: nothing happens
        assert "Nothing was deleted" in texts(at.warning) and doomed.is_dir()

        next(c for c in at.checkbox if c.label == "Yes, delete them for good").check()
        button(at, "Delete").click().run()
        assert not at.exception
        assert not doomed.exists() and (runs / "slow").is_dir()
        assert "Deleted the run doomed." in texts(at.success)
        assert "doomed" not in set(table(at, "compare_runs").value["run"])
        assert state.RUN_KEY not in at.session_state  # the session forgets what is gone
        assert not at.get("plotly_chart")  # the selection started afresh
    finally:
        shutil.rmtree(doomed, ignore_errors=True)


def test_with_no_runs_the_page_points_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "empty"))
    at = open_page(PAGE)
    assert "No runs yet" in texts(at.info)
    assert at.page_link[0].label == "Go to Train"
