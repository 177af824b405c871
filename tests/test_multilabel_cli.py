"""The multi-label round trip on the command line: check, train, evaluate --json,
predict --json, export (ONNX with its check, the run .zip and its standalone script)."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from tests.multilabel_data import make_shapes_dataset
from tl_core.analysis import SWEEP, multi_label_refusal
from tl_core.cli.main import main
from tl_core.inference import Predictor

FLAGS = [
    "--backbone", "test_efficientnet", "--no-pretrained", "--freeze", "none", "--lr", "0.003",
    "--image-size", "32", "--device", "cpu", "--workers", "0", "--patience", "0",
    "--epochs", "3", "--batch-size", "16", "--no-feature-cache", "--quiet",
]  # fmt: skip


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = make_shapes_dataset(root / "data", per_kind=5)
    run = root / "run"
    assert main(["train", str(data), "--out", str(run), *FLAGS]) == 0
    return data, run


def test_check_reports_tags(capsys, trained):
    data, _ = trained
    code, out, _ = run_cli(capsys, "check", data, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["multi_label"]["tags"] == {"circle": 10, "square": 10}
    assert report["split"]["train"] + report["split"]["val"] == 20
    code, out, _ = run_cli(capsys, "check", data)
    assert "2 tags" in out and "circle + square" in out and "Ready to train." in out


def test_evaluate_json_has_per_tag_scores_with_their_images(capsys, trained):
    _, run = trained
    code, out, _ = run_cli(capsys, "evaluate", run, "--json", "--device", "cpu")
    assert code == 0
    result = json.loads(out)
    assert result["multi_label"] and result["metric"] == "macro F1"
    rows = {row["tag"]: row for row in result["per_tag"]}
    val = json.loads((run / "split.json").read_text())["val"]
    for tag, row in rows.items():
        assert row["support"] == sum(tag in tags.split(";") for _, tags in val)
        assert row["missed"] == len(row["missed_images"])
        assert row["added"] == len(row["added_images"])
    assert len(result["predictions"]) == len(val)
    code, out, _ = run_cli(capsys, "evaluate", run, "--device", "cpu")
    assert "Macro F1 at the per-tag thresholds" in out


def test_predict_json_rows_carry_tags(capsys, trained):
    data, run = trained
    images = sorted((data / "images").glob("*.png"))[:4]
    code, out, _ = run_cli(capsys, "predict", run, *images, "--json", "--device", "cpu")
    assert code == 0
    rows = json.loads(out)
    thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    for row in rows:
        probabilities = {p["label"]: p["probability"] for p in row["predictions"]}
        assert {t["label"] for t in row["tags"]} == {
            tag for tag, p in probabilities.items() if p >= thresholds[tag]
        }
        if not row["tags"]:
            assert row["answer"] == "no tag"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exports_carry_the_thresholds(capsys, trained, tmp_path):
    data, run = trained
    images = [str(p) for p in sorted((data / "images").glob("*.png"))]
    expected = {
        r.image: {t for t, _ in r.tags}
        for r in Predictor.from_run(run, device="cpu").predict_paths(images)
    }
    onnx_file = tmp_path / "model.onnx"
    code, out, err = run_cli(capsys, "export", run, "--out", onnx_file)
    assert code == 0, err
    onnx_script = _load(Path("tl_core/export/standalone_predict_onnx.py"), "ml_onnx")
    got = onnx_script.predict(str(onnx_file), images, 2)
    assert {name: {t for t, _ in r["tags"]} for name, r in got.items()} == expected

    archive = tmp_path / "run.zip"
    assert run_cli(capsys, "export", run, "--out", archive)[0] == 0
    unpacked = tmp_path / "unzipped"
    zipfile.ZipFile(archive).extractall(unpacked)
    assert (unpacked / "thresholds.json").is_file()
    assert "Several tags per image" in (unpacked / "HOW_TO_LOAD.txt").read_text()
    script = _load(unpacked / "predict.py", "ml_torch")
    got = script.predict(unpacked, images, 2)
    assert {name: {t for t, _ in r["tags"]} for name, r in got.items()} == expected


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("model.html", "several tags per image, which the web page cannot show yet"),
        ("model.pt", "returns the logits only, so it cannot carry the thresholds"),
    ],
)
def test_exports_that_cannot_carry_tags_say_so(capsys, trained, tmp_path, name, words):
    _, run = trained
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / name)
    assert code != 0
    assert words in err
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("command", "tool"),
    [
        (["advise", "{data}", "--device", "cpu"], "The backbone advisor"),
        (["sweep", "{data}", "--out", "{out}", "--device", "cpu"], "The freeze-depth sweep"),
        (["transfer-check", "{data}", "--out", "{out}", "--device", "cpu"], "The transfer check"),
        (
            ["auto", "{data}", "--out", "{out}", "--budget", "1m"],
            "The automatic search (Find a good model for me)",
        ),
    ],
)
def test_transfer_tools_say_plainly_they_do_not_take_tags_yet(
    capsys, trained, tmp_path, command, tool
):
    data, _ = trained
    args = [a.format(data=data, out=tmp_path / "out") for a in command]
    code, _, err = run_cli(capsys, *args)
    assert code != 0
    assert f"{tool} does not work on datasets with several tags per image" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert multi_label_refusal(SWEEP) is not None


def test_one_tag_is_a_yes_no_model_that_opens_like_any_run(capsys, tmp_path):
    data = make_shapes_dataset(tmp_path / "data", per_kind=4)
    labels = data / "labels.csv"
    rows = [line.split(",") for line in labels.read_text().splitlines()]
    kept = [rows[0]] + [[name, "circle" if "circle" in tags else ""] for name, tags in rows[1:]]
    labels.write_text("\n".join(",".join(row) for row in kept) + "\n")
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *FLAGS]) == 0
    capsys.readouterr()
    image = data / "images" / "circle_0.png"
    code, out, err = run_cli(capsys, "predict", run, image, "--json", "--device", "cpu")
    assert code == 0, err
    (row,) = json.loads(out)
    assert {p["label"] for p in row["predictions"]} == {"circle"}
