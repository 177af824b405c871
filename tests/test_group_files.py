"""Group files (sweep.json, transfer.json) are read in one place: every user gets the same answer
for a missing, broken or edited file."""

from __future__ import annotations

import pytest

from tl_core.analysis import read_sweep, read_transfer
from tl_core.common import RunError
from tl_core.runs import (
    SWEEP_FILE,
    SWEEP_KIND,
    TRANSFER_FILE,
    TRANSFER_KIND,
    read_group,
    read_group_file,
    write_group_file,
)
from tl_core.runs.groups import group_kind, named_runs

SWEEP = {"kind": SWEEP_KIND, "rows": [{"freeze": "0", "run": "freeze-0", "frozen_groups": 0}]}


def test_what_is_written_is_read_back(tmp_path):
    write_group_file(tmp_path, SWEEP_KIND, SWEEP)
    assert (tmp_path / SWEEP_FILE).is_file() and group_kind(tmp_path) == SWEEP_KIND
    assert read_group_file(tmp_path, SWEEP_KIND) == SWEEP
    assert [row.run for row in read_sweep(tmp_path).rows] == ["freeze-0"]
    assert named_runs(SWEEP_KIND, SWEEP) == ["freeze-0"]


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "missing"), ("{not json", "not valid JSON"), ("[1, 2]", "should be a JSON object")],
)
def test_a_missing_or_broken_file_is_one_sentence_for_every_reader(tmp_path, content, says):
    if content is not None:
        (tmp_path / SWEEP_FILE).write_text(content)
        (tmp_path / TRANSFER_FILE).write_text(content)
    for read in (
        lambda: read_group_file(tmp_path, SWEEP_KIND),
        lambda: read_sweep(tmp_path),
        lambda: read_transfer(tmp_path),
    ):
        with pytest.raises(RunError, match=says):
            read()


def test_the_run_list_shows_a_group_with_a_broken_file_without_its_result(tmp_path):
    (tmp_path / TRANSFER_FILE).write_text("[1, 2]")
    group = read_group(tmp_path)
    assert group is not None and group.kind == TRANSFER_KIND and group.result == {}
    assert group_kind(tmp_path / "nowhere") is None


def test_run_names_of_the_wrong_type_are_left_out():
    assert named_runs(TRANSFER_KIND, {"runs": {"pretrained": "pretrained", "scratch": 3}}) == [
        "pretrained"
    ]
    assert named_runs(SWEEP_KIND, {"rows": ["not a row", {"run": None}, {"run": "a"}]}) == ["a"]
