"""The tl-studio command line: exit codes, JSON output, and no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import TINY_CLASSES
from tests.helpers import make_image, make_image_folder
from tl_core.cli.main import main

TINY_TRAIN_FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--freeze", "none", "--epochs", "2",
    "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--quiet",
]  # fmt: skip


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A run trained through the CLI itself."""
    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "data", TINY_CLASSES)
    assert main(["train", str(data), "--out", str(root / "run"), *TINY_TRAIN_FLAGS]) == 0
    return root / "run"


def test_check_reports_a_trainable_dataset(capsys, tiny_dataset):
    code, out, _ = run_cli(capsys, "check", tiny_dataset, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["can_train"] is True
    assert report["counts"] == {name: 6 for name in sorted(TINY_CLASSES)}
    assert report["split"]["train"] + report["split"]["val"] == 18

    code, out, _ = run_cli(capsys, "check", tiny_dataset)
    assert code == 0 and "Ready to train" in out and "red" in out


def test_check_exits_1_with_reasons_when_it_cannot_train(capsys, tmp_path):
    data = make_image_folder(tmp_path / "data", {"cats": 5, "dogs": 1})
    (tmp_path / "data" / "cats" / "broken.jpg").write_text("not really a jpeg")
    code, out, err = run_cli(capsys, "check", data)
    assert code == 1
    assert "Cannot train" in out and "dogs" in out
    assert "broken.jpg" in out
    assert "Traceback" not in out + err


def test_a_missing_path_is_an_error_message_not_a_traceback(capsys, tmp_path):
    code, out, err = run_cli(capsys, "check", tmp_path / "nowhere")
    assert code == 1
    assert err.startswith("error:") and "nowhere" in err
    assert "Traceback" not in out + err


def test_backbones_lists_the_catalog_and_layer_groups(capsys):
    code, out, _ = run_cli(capsys, "backbones", "--json")
    rows = json.loads(out)
    assert code == 0
    default = next(r for r in rows if r["name"] == "tf_efficientnet_lite0")
    assert default["weights offline"] is True

    code, out, _ = run_cli(capsys, "backbones", "--groups", "test_resnet", "--freeze", "2",
                           "--json")  # fmt: skip
    groups = json.loads(out)
    assert code == 0
    assert groups["frozen_groups"] == 2
    frozen = sum(g["params"] for g in groups["groups"] if g["frozen"])
    assert frozen == groups["frozen_params"] > 0
    assert [g["frozen"] for g in groups["groups"]][:3] == [True, True, False]


def test_train_rejects_bad_settings_with_exit_1(capsys, tiny_dataset, tmp_path):
    code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run",
                           *TINY_TRAIN_FLAGS, "--freeze", "99")  # fmt: skip
    assert code == 1 and "out of range" in err
    code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run2",
                           "--backbone", "resnet_does_not_exist", "--quiet")  # fmt: skip
    assert code == 1 and "resnet_does_not_exist" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train"])
    assert exited.value.code == 2


def test_predict_json_lists_ranked_labels_per_image(capsys, cli_run, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    make_image(color=(220, 40, 40), seed=99).save(folder / "a.png")
    make_image(color=(40, 80, 230), seed=98).save(folder / "b.png")

    code, out, _ = run_cli(capsys, "predict", cli_run, folder, "--top-k", "2", "--json")
    results = json.loads(out)
    assert code == 0
    assert [r["image"] for r in results] == [str(folder / "a.png"), str(folder / "b.png")]
    for result in results:
        assert len(result["predictions"]) == 2
        assert set(result["predictions"][0]) == {"label", "probability"}
        assert result["predictions"][0]["label"] in TINY_CLASSES
        probabilities = [p["probability"] for p in result["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)

    code, out, _ = run_cli(capsys, "predict", cli_run, folder / "a.png")
    assert code == 0 and "a.png" in out and "%" in out


def test_predict_on_a_missing_run_exits_1(capsys, tmp_path):
    make_image().save(tmp_path / "x.png")
    code, _, err = run_cli(capsys, "predict", tmp_path / "no-run", tmp_path / "x.png")
    assert code == 1 and "No run folder" in err


def test_evaluate_and_export(capsys, cli_run, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", cli_run, "--json")
    evaluation = json.loads(out)
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert code == 0
    assert evaluation["accuracy"] == pytest.approx(metrics["best_val_accuracy"])
    assert len(evaluation["confusion"]) == len(TINY_CLASSES)

    code, out, _ = run_cli(capsys, "export", cli_run, "--format", "torchscript",
                           "--out", tmp_path / "m.pt")  # fmt: skip
    assert code == 0 and (tmp_path / "m.pt").stat().st_size > 0
    code, out, _ = run_cli(
        capsys, "export", cli_run, "--format", "zip", "--out", tmp_path / "m.zip"
    )
    assert code == 0 and (tmp_path / "m.zip").stat().st_size > 0


def test_the_installed_console_script_runs(tiny_dataset):
    script = subprocess.run(
        [sys.executable, "-m", "tl_core.cli", "check", str(tiny_dataset)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert "Ready to train" in script.stdout


def test_train_prints_epochs_done_and_accuracy_with_its_interval(capsys, tiny_dataset, tmp_path):
    flags = [flag for flag in TINY_TRAIN_FLAGS if flag != "--quiet"]
    code, out, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run", *flags)
    assert code == 0, err
    val_images = len(json.loads((tmp_path / "run" / "split.json").read_text())["val"])
    epoch_lines = [line for line in err.splitlines() if line.startswith("epochs done")]
    assert [line.split()[2] for line in epoch_lines] == ["1/2", "2/2"]
    for line in epoch_lines:
        assert "(95 % CI " in line and line.endswith(f", {val_images} images)")
    assert "2 epochs done" in out and f", {val_images} images)" in out and "95 % CI" in out


def test_train_never_writes_into_a_used_folder(capsys, tiny_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("earlier work")
    code, _, err = run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run",
                           *TINY_TRAIN_FLAGS)  # fmt: skip
    assert code == 1 and "already exists and is not empty" in err
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]
