"""Run summaries tell runs apart, pickers start on the right run, and runs keep a note."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.training import tiny_config
from tl_core.common import RunError, format_accuracy
from tl_core.runs import (
    MAX_NOTE_LENGTH,
    NOTE_FILE,
    RunWriter,
    list_runs,
    preferred_run,
    read_note,
    summarize_run,
    write_note,
)
from tl_core.training import prepare_training


def fake_run(
    root: Path,
    name: str,
    *,
    created: str,
    status: str = "completed",
    accuracies: tuple[float, ...] = (0.5, 0.8),
    epochs: int = 2,
    freeze: str = "all",
    num_val: int = 10,
    weights: bool = True,
) -> Path:
    """A run folder as the app writes it, with a placeholder for the weights."""
    path = root / name
    path.mkdir(parents=True)
    config = {
        "train": {"backbone": "resnet18", "freeze": freeze, "epochs": epochs, "pretrained": True},
        "model": {"backbone": "resnet18"},
        "created": created,
    }
    history = [{"epoch": i + 1, "val_accuracy": a} for i, a in enumerate(accuracies)]
    metrics = {
        "history": history,
        "best_val_accuracy": max(accuracies) if accuracies else None,
        "status": status,
    }
    split = {"train": [], "val": [[f"v{i}.png", "a"] for i in range(num_val)]}
    for file, data in (
        ("config.json", config),
        ("metrics.json", metrics),
        ("labels.json", ["a", "b"]),
        ("split.json", split),
    ):
        (path / file).write_text(json.dumps(data))
    if weights:
        (path / "model.safetensors").write_bytes(b"weights")
    return path


def test_a_run_title_names_backbone_freeze_epochs_accuracy_time_and_note(tmp_path):
    path = fake_run(
        tmp_path, "a", created="2026-05-01T14:32:05", status="stopped", accuracies=(1.0,), epochs=10
    )
    write_note(path, "first try")
    summary = summarize_run(path)
    assert summary.title == (
        f"resnet18 · head only · 1/10 epochs · stopped · {format_accuracy(1.0, 10)} · "
        "2026-05-01 14:32:05 · “first try”"
    )
    # A completed run does not repeat its status; one without accuracy says so.
    done = summarize_run(fake_run(tmp_path, "b", created="2026-05-01T15:00:00", freeze="none"))
    assert "completed" not in done.title and "full fine-tune · 2/2 epochs" in done.title
    empty = summarize_run(
        fake_run(tmp_path, "c", created="2026-05-01T15:00:00", status="failed", accuracies=())
    )
    assert "0/2 epochs · failed · no accuracy yet" in empty.title


@pytest.mark.parametrize(
    ("freeze", "expected"),
    [("all", "head only"), ("none", "full fine-tune"), ("2", "2/")],
)
def test_the_freeze_depth_is_read_from_what_the_writer_wrote(
    tiny_dataset, tmp_path, freeze, expected
):
    writer = RunWriter.create(tmp_path / "run")
    config = tiny_config(tiny_dataset, freeze=freeze, epochs=4)
    writer.write_description(prepare_training(config, writer.path))
    summary = summarize_run(writer.path)
    assert summary.freeze.startswith(expected)
    assert summary.epochs_planned == 4 and summary.num_val_images == 3
    assert not summary.pretrained and f"{summary.freeze} · from scratch" in summary.title


def test_a_picker_prefers_the_current_run_then_the_best_completed_one(tmp_path):
    fake_run(tmp_path, "old-good", created="2026-05-01T10:00:00", accuracies=(0.9,))
    fake_run(tmp_path, "mid-fair", created="2026-05-01T11:00:00", accuracies=(0.7,))
    fake_run(
        tmp_path, "new-stopped", created="2026-05-01T12:00:00", status="stopped", accuracies=(1.0,)
    )
    fake_run(tmp_path, "newest-no-weights", created="2026-05-01T13:00:00", weights=False)
    runs = list_runs(tmp_path)
    assert [r.name for r in runs][:2] == ["newest-no-weights", "new-stopped"]  # newest first

    assert preferred_run(runs).name == "old-good"  # not the newest stopped run
    assert preferred_run(runs, tmp_path / "mid-fair").name == "mid-fair"  # just trained
    assert preferred_run(runs, tmp_path / "gone").name == "old-good"
    assert preferred_run(runs, tmp_path / "newest-no-weights").name == "old-good"
    no_completed = [r for r in runs if r.status != "completed"]
    assert preferred_run(no_completed).name == "new-stopped"
    assert preferred_run([r for r in runs if not r.has_weights]) is None


def test_a_note_is_saved_on_one_line_shown_and_removed(tmp_path):
    path = fake_run(tmp_path, "run", created="2026-05-01T10:00:00")
    assert read_note(path) == "" and summarize_run(path).note == ""
    assert write_note(path, "  clean data\n  no dupes ") == "clean data no dupes"
    assert read_note(path) == "clean data no dupes"
    assert summarize_run(path).title.endswith("“clean data no dupes”")
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]

    with pytest.raises(RunError, match="at most"):
        write_note(path, "x" * (MAX_NOTE_LENGTH + 1))
    assert read_note(path) == "clean data no dupes"  # unchanged
    write_note(path, "   ")
    assert not (path / NOTE_FILE).exists()
    with pytest.raises(RunError, match="not a run folder"):
        write_note(tmp_path / "nothing", "hi")


def test_run_summaries_are_read_without_weights(tmp_path):
    path = fake_run(tmp_path, "run", created="2026-05-01T10:00:00")
    (path / "model.safetensors").write_bytes(b"not a weights file")  # never opened
    summary = summarize_run(path)
    assert summary.has_weights and summary.created == datetime(2026, 5, 1, 10)


def test_the_command_line_shows_and_sets_a_note(tmp_path, capsys):
    from tl_core.cli.main import main

    path = fake_run(tmp_path, "run", created="2026-05-01T10:00:00")
    assert main(["note", str(path), "augmented, lr 1e-3"]) == 0
    assert read_note(path) == "augmented, lr 1e-3"
    assert main(["note", str(path)]) == 0
    assert main(["note", str(path), ""]) == 0
    assert main(["note", str(tmp_path / "nowhere"), "x"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "Note saved: augmented, lr 1e-3",
        "augmented, lr 1e-3",
        "Note removed.",
    ]
    assert "not a run folder" in err
    assert read_note(path) == ""
