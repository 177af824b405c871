"""Training in several processes with torchrun (gloo on this CPU): the same results as one
process, one writer, and a stop that reaches every process; and a lone process unchanged.

The two-process runs are real: ``tl-studio train --nproc 2`` launches
``python -m torch.distributed.run --standalone --nproc_per_node 2 -m tl_core.cli train ...``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import make_image_folder
from tl_core.cli.main import main
from tl_core.common import JobControl, TrainingStopped
from tl_core.runs import RunWriter
from tl_core.training import distributed

# Head-only training of timm's tiny test model on 32-pixel images: its random backbone still
# separates the three colours, and the epochs on cached features take milliseconds.
FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--freeze", "all", "--lr", "0.05",
    "--image-size", "32", "--device", "cpu", "--workers", "0", "--patience", "0",
    "--no-feature-cache", "--quiet",
]  # fmt: skip
# Two processes of batch 8 train on the same global batch as one process of batch 16.
PER_PROCESS_BATCH, PROCESSES = 8, 2
EPOCHS = 15
# Tolerances of the two-process run against the one-process run: the data order differs
# (DistributedSampler against the loader's own shuffle), the maths of a step does not.
ACCURACY_TOLERANCE = 1 / 6  # one image of the six validation images
LOSS_TOLERANCE = 0.05  # absolute, on a validation loss near 0.67
SAFETY_TIMEOUT = 600  # seconds: only so that a hang fails the test instead of blocking it
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "tl_core.cli", *map(str, args)],
        stdout=stdout,
        stderr=stderr,
        text=True,
        env=env,
    )


def read_metrics(run: Path) -> dict | None:
    try:
        return json.loads((run / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("ddp") / "data", {"red": 12, "green": 12, "blue": 12}
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> dict[str, Path]:
    """The same recipe trained by one process (batch 16) and by two (batch 8 each), each run
    alone in a parent folder of its own."""
    one = tmp_path_factory.mktemp("one") / "run"
    code = main(
        ["train", str(data), "--out", str(one), *FLAGS, "--epochs", str(EPOCHS),
         "--batch-size", str(PER_PROCESS_BATCH * PROCESSES)]
    )  # fmt: skip
    assert code == 0
    two = tmp_path_factory.mktemp("two") / "run"
    process = cli("train", data, "--out", two, *FLAGS, "--epochs", EPOCHS,
                  "--batch-size", PER_PROCESS_BATCH, "--nproc", PROCESSES)  # fmt: skip
    out, err = process.communicate(timeout=SAFETY_TIMEOUT)
    assert process.returncode == 0, err
    assert out.count("Finished:") == 1  # rank 0 alone printed its summary
    return {"one": one, "two": two}


# ---- two processes --------------------------------------------------------------------------


def test_two_processes_reach_the_accuracy_and_loss_of_one(runs):
    one, two = read_metrics(runs["one"]), read_metrics(runs["two"])
    assert one["status"] == two["status"] == "completed"
    assert len(one["history"]) == len(two["history"]) == EPOCHS
    last_one, last_two = one["history"][-1], two["history"][-1]
    assert last_one["val_accuracy"] >= 5 / 6 and last_two["val_accuracy"] >= 5 / 6
    assert abs(last_two["val_accuracy"] - last_one["val_accuracy"]) <= ACCURACY_TOLERANCE
    assert last_two["val_loss"] == pytest.approx(last_one["val_loss"], abs=LOSS_TOLERANCE)
    # Epoch metrics are the global ones: the training accuracy counts all 30 images.
    assert last_two["train_loss"] == pytest.approx(last_one["train_loss"], abs=LOSS_TOLERANCE)


def test_the_split_is_the_one_a_single_process_makes(runs):
    split = [json.loads((runs[name] / "split.json").read_text()) for name in ("one", "two")]
    assert split[0] == split[1]


def test_only_rank_0_wrote_the_run_folder(runs):
    names = {name: sorted(p.name for p in runs[name].iterdir()) for name in runs}
    assert names["two"] == names["one"]
    assert ".lock" not in names["two"]  # released at the end
    # No other folder appeared beside the run: the other rank wrote nowhere.
    assert [p.name for p in runs["two"].parent.iterdir()] == ["run"]


def test_evaluate_works_on_a_distributed_run(runs, capsys):
    assert main(["evaluate", str(runs["two"]), "--json", "--device", "cpu"]) == 0
    metrics = read_metrics(runs["two"])
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        metrics["best_val_accuracy"]
    )


def test_a_stop_reaches_every_process(data, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "log.txt"
    with log.open("w") as output:
        process = cli("train", data, "--out", run, *FLAGS, "--epochs", 100_000,
                      "--batch-size", PER_PROCESS_BATCH, "--nproc", PROCESSES,
                      stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + SAFETY_TIMEOUT
            while not ((m := read_metrics(run)) and m["history"]):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no epoch finished"
                time.sleep(0.1)
            process.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
            code = process.wait(timeout=SAFETY_TIMEOUT)
        finally:
            process.kill()
    text = log.read_text()
    # torchrun exits 0 only when both processes did: the other rank stopped with rank 0
    # (alone, it would have trained 100,000 epochs or failed on a lost peer).
    assert code == 0, text
    metrics = read_metrics(run)
    assert metrics["status"] == "stopped"
    assert 1 <= len(metrics["history"]) < 100_000
    assert "Stopping after this batch" in text and "Stopped by the user" in text
    assert not (run / ".lock").exists()


# ---- one process: every helper is a no-op ---------------------------------------------------


@pytest.fixture
def lone(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_without_torchrun_every_helper_is_a_no_op(lone, tmp_path):
    assert not distributed.launched() and not distributed.is_active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    with distributed.process_group("cpu"):
        assert not distributed.is_active()
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")
    assert distributed.sum_across((1.5, 2.0)) == (1.5, 2.0)
    assert distributed.any_rank(False) is False and distributed.any_rank(True) is True
    assert distributed.broadcast_from_main({"a": 1}) == {"a": 1}
    assert distributed.decided_by_main(lambda: 7) == 7
    distributed.require_same(("x",), "anything")
    tensor = torch.arange(6.0).reshape(3, 2)
    assert [t is tensor for t in distributed.all_gather(tensor)] == [True]
    assert distributed.padded_share([1, 2, 3]) == [1, 2, 3] and distributed.share_size(3) == 3
    assert distributed.shuffling_sampler(torch.utils.data.TensorDataset(tensor), 0) is None
    model = torch.nn.Linear(2, 2)
    assert distributed.data_parallel(model, model.__call__) == model.__call__
    writer = distributed.run_writer(tmp_path / "run")
    assert type(writer) is RunWriter and (tmp_path / "run" / ".lock").exists()
    writer.close()
    with distributed.replica_output_silenced():
        print("rank 0 prints")


def test_without_torchrun_a_stop_is_the_control_s_own(lone):
    control = JobControl()
    assert distributed.checkpoint(control) == 0.0
    control.stop()
    with pytest.raises(TrainingStopped):
        distributed.checkpoint(control)


def test_padded_shares_give_every_rank_as_many_items_and_interleave_back(monkeypatch):
    for count in (0, 1, 2, 5, 7):
        for world in (2, 3, 4):
            items = list(range(count))
            shares = []
            for rank in range(world):
                monkeypatch.setenv("RANK", str(rank))
                monkeypatch.setenv("WORLD_SIZE", str(world))
                shares.append(distributed.padded_share(items))
            assert {len(share) for share in shares} == {distributed.share_size(count)}
            assert distributed.interleave_shares(shares, count) == items


def test_a_replica_writer_writes_nothing(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "kept.txt").write_text("rank 0's")
    writer = distributed.ReplicaRunWriter(folder)
    assert isinstance(writer, RunWriter)
    methods = [name for name in dir(RunWriter) if name.startswith("write_")]
    assert "write_metrics" in methods and "write_weights" in methods
    for name in methods:
        getattr(writer, name)([], None, "running")
    writer.discard()
    writer.close()
    assert [p.name for p in folder.iterdir()] == ["kept.txt"]


def test_torchrun_gets_the_same_train_command_less_nproc(tmp_path):
    # Each process reads the settings from the file the launcher wrote (--config), so none is
    # spelled as an option; every other option comes as given.
    from tl_core.cli.commands.train import worker_arguments
    from tl_core.cli.main import build_parser
    from tl_core.cli.options import RECIPE_FIELDS, config_from_args
    from tl_core.config import write_train_config

    argv = ["--debug", "train", "DATA", "--out", str(tmp_path / "run"), "--epochs", "3",
            "--no-feature-cache", "--nproc", "2", "--lr", "0.05"]  # fmt: skip
    args = build_parser().parse_args(argv)
    config_file = write_train_config(config_from_args(args), tmp_path / "train.json")
    worker = worker_arguments(args, config_file)
    again = build_parser().parse_args(worker)
    assert "--nproc" not in worker and "--lr" not in worker and "DATA" not in worker
    assert config_from_args(again) == config_from_args(args)
    changed = {k for k in vars(args) if getattr(args, k) != getattr(again, k)}
    assert changed - set(RECIPE_FIELDS) == {"nproc", "train_parser", "config"}
