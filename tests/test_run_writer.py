"""The run folder's format has one home: what RunWriter writes, runs.py reads back."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_CLASSES
from tests.training import tiny_config
from tl_core.common import RunError
from tl_core.runs import RunWriter, list_runs, load_run, require_new_run_dir, summarize_run
from tl_core.training import prepare_training


def test_a_new_run_folder_must_be_missing_or_empty(tmp_path):
    assert require_new_run_dir(tmp_path / "missing") == tmp_path / "missing"
    (tmp_path / "empty").mkdir()
    require_new_run_dir(tmp_path / "empty")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("earlier work")
    (tmp_path / "a-file").write_text("not a folder")
    for taken in ("used", "a-file"):
        with pytest.raises(RunError, match="already exists and is not empty"):
            RunWriter.create(tmp_path / taken)
    assert (tmp_path / "used" / "keep.txt").read_text() == "earlier work"


def test_what_the_writer_writes_the_reader_reads(tiny_dataset, tmp_path):
    writer = RunWriter.create(tmp_path / "runs" / "one")
    plan = prepare_training(tiny_config(tiny_dataset), writer.path)
    writer.write_description(plan)
    history = [
        {"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0},
        {"epoch": 2, "val_accuracy": 0.75, "val_loss": 0.8},
    ]
    writer.write_metrics(history, best_epoch=2, status="completed")
    writer.write_weights(plan.model.state_dict())

    summary = summarize_run(writer.path)
    assert summary.backbone == "test_efficientnet" and summary.status == "completed"
    assert summary.best_val_accuracy == 0.75 and summary.epochs_done == 2
    assert list(summary.labels) == sorted(TINY_CLASSES) and summary.has_weights
    assert [s.name for s in list_runs(tmp_path / "runs")] == ["one"]

    run = load_run(writer.path)
    assert run.preprocessing.image_size == 32
    model = run.build_model()
    for name, tensor in plan.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    split = json.loads((writer.path / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == sum(TINY_CLASSES.values())
    assert not [p.name for p in writer.path.iterdir() if p.name.endswith(".tmp")]
