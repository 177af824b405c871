"""The one-file web page export: written only when its answers match the app's.

These tests check the page in onnxruntime (``browser=False``); tests/test_e2e_web_page.py opens
the same pages in Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training import train_tiny_run
from tl_core.export import (
    PAGE_TOLERANCE,
    QUANTIZED_PAGE_TOLERANCE,
    ExportError,
    QuantizedAgreement,
    export_web_page,
    quantized_agreement,
    web_export,
)
from tl_core.export.web_check import page_pixels
from tl_core.export.web_page import page_config, page_config_of, page_facts, render_page
from tl_core.models import Preprocessing
from tl_core.runs import load_run

REPO = Path(__file__).resolve().parents[1]
PREPROCESS_JS = REPO / "tl_core" / "export" / "web_assets" / "preprocess.js"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "model.html"
    return export_web_page(run_dir, out, browser=False)


def test_the_page_is_one_file_with_the_model_and_no_address_to_fetch(run_dir, exported):
    run = load_run(run_dir)
    page = exported.path.read_text(encoding="utf-8")
    assert exported.size_bytes == exported.path.stat().st_size > 1_000_000
    assert exported.check.passed and exported.check.checked_in == "onnxruntime"
    assert "tl-studio predict" in exported.check.text
    config = page_config_of(page)
    assert config["labels"] == list(run.labels)
    assert config["preprocessing"] == {
        "image_size": run.preprocessing.image_size,
        "resize_size": int(run.preprocessing.image_size / run.preprocessing.crop_pct),
        "interpolation": run.preprocessing.interpolation,
    }
    assert 'id="tl-results"' in page and 'accept="image/*" capture' in page
    assert "Nothing leaves this device" in page and "Copy results" in page
    assert config["title"] == run_dir.name and "95 % CI" in config["accuracy"]
    # Nothing outside the file: no element loads from an address, and the page's policy
    # forbids every connection.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page


def test_a_page_with_the_wrong_normalisation_is_refused_and_not_written(
    run_dir, tmp_path, monkeypatch
):
    wrong = replace(load_run(run_dir).preprocessing, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    monkeypatch.setattr(web_export, "page_preprocessing", lambda run: wrong)
    out = tmp_path / "model.html"
    with pytest.raises(ExportError, match="does not give the app's answers") as error:
        export_web_page(run_dir, out, browser=False)
    assert "It was not saved" in error.value.message and error.value.hint
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change",
    [
        {"crop_pct": 1.0},  # no margin cropped away: the whole short side is kept
        {"crop_pct": 0.5},  # twice the crop margin
    ],
)
def test_a_page_with_the_wrong_crop_is_refused(run_dir, tmp_path, monkeypatch, change):
    wrong = replace(load_run(run_dir).preprocessing, **change)
    monkeypatch.setattr(web_export, "page_preprocessing", lambda run: wrong)
    with pytest.raises(ExportError, match="does not give the app's answers"):
        export_web_page(run_dir, tmp_path / "model.html", browser=False)


def test_the_check_compares_with_predict_on_the_runs_own_images(run_dir, exported):
    check = exported.check
    assert check.num_images == 8 and "validation" in check.images_from
    assert check.top1_differences == 0
    assert check.max_probability_difference <= PAGE_TOLERANCE == check.tolerance


def test_a_browser_that_cannot_start_leaves_the_check_to_onnxruntime(run_dir, tmp_path):
    pytest.importorskip("playwright.sync_api")
    result = export_web_page(run_dir, tmp_path / "model.html", browser="/bin/false")
    assert result.check.passed
    assert result.check.checked_in.startswith("onnxruntime (Chromium could not start")


def test_a_run_without_its_images_is_checked_on_generated_ones(run_dir, tmp_path):
    copied = shutil.copytree(run_dir, tmp_path / "run")
    split = json.loads((copied / "split.json").read_text())
    moved = {"train": [["/nonexistent/a.png", "red"]], "val": [["/nonexistent/b.png", "red"]]}
    (copied / "split.json").write_text(json.dumps({**split, **moved}))
    result = export_web_page(copied, tmp_path / "model.html", browser=False)
    assert result.check.passed and result.check.images_from == "generated image"


def test_the_quantised_page_is_smaller_and_shows_its_agreement_first(run_dir, exported, tmp_path):
    agreement = quantized_agreement(run_dir)
    validation = json.loads((run_dir / "split.json").read_text())["val"]
    assert agreement.num_images == len(validation)
    assert agreement.quantized_model_bytes < agreement.full_model_bytes / 2
    assert agreement.acceptable and "same top-1 answer as the full model" in agreement.text

    result = export_web_page(run_dir, tmp_path / "small.html", quantized=True, browser=False)
    assert result.quantized and result.check.passed and result.agreement == agreement
    assert result.check.reference == "its int8 model"
    assert result.check.tolerance == QUANTIZED_PAGE_TOLERANCE
    assert result.size_bytes < exported.size_bytes
    assert "int8" in page_config_of(result.path.read_text(encoding="utf-8"))["model_card"]


def test_a_quantised_page_that_changes_too_many_answers_is_refused(run_dir, tmp_path, monkeypatch):
    def poor(full, small, config, images, images_from):
        return QuantizedAgreement(50, images_from, 5, 0.4, 1000, 250)

    monkeypatch.setattr(web_export, "measure_agreement", poor)
    with pytest.raises(ExportError, match="change too many answers") as error:
        export_web_page(run_dir, tmp_path / "small.html", quantized=True, browser=False)
    assert "10.0% changed" in error.value.message and "2%" in error.value.message
    assert "without --quantized" in error.value.hint
    assert list(tmp_path.iterdir()) == []


def test_class_names_cannot_close_the_pages_script(run_dir):
    run = load_run(run_dir)
    labels = ["</script><script>alert(1)</script>", "b&amp;", "ünï"]
    config = page_config(labels, run.preprocessing, page_facts(run))
    page = render_page(b"\0model", config)
    assert "<script>alert(1)" not in page
    assert page_config_of(page)["labels"] == labels


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs the page's script here")
def test_the_pages_preprocessing_gives_pillows_pixels_exactly(tmp_path):
    """The page's JavaScript (run by Node) against the app's transform (timm + Pillow)."""
    rng = np.random.default_rng(0)
    cases = []
    for index, (height, width) in enumerate([(40, 48), (17, 300), (301, 19), (257, 256)]):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        (tmp_path / f"{index}.rgb").write_bytes(np.asarray(image).tobytes())
        for interpolation, size, crop_pct in [("bicubic", 32, 0.875), ("bilinear", 24, 1.0)]:
            prep = Preprocessing(size, (0.0,) * 3, (1.0,) * 3, interpolation, crop_pct)
            config = page_config(["a"], prep, page_facts_stub())
            expected = prep.eval_transform()(image).numpy()
            assert np.array_equal(page_pixels(config, image), expected)
            name = f"{index}_{interpolation}"
            expected.astype(np.float32).tofile(tmp_path / f"{name}.expected")
            cases.append([index, width, height, config["preprocessing"], name])
    script = f"""
const fs = require("fs");
const {{ preprocess }} = require({json.dumps(str(PREPROCESS_JS))});
const dir = {json.dumps(str(tmp_path))} + "/";
const differing = [];
for (const [index, width, height, prep, name] of {json.dumps(cases)}) {{
  const rgb = new Uint8Array(fs.readFileSync(dir + index + ".rgb"));
  const mine = preprocess(rgb, width, height, prep);
  const expected = new Float32Array(fs.readFileSync(dir + name + ".expected").buffer.slice(0));
  const same = mine.length === expected.length && mine.every((v, i) => v === expected[i]);
  if (!same) differing.push(name);
}}
console.log(JSON.stringify(differing));
"""
    output = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(output.stdout) == []


def page_facts_stub():
    from tl_core.export.web_page import PageFacts

    return PageFacts("run", "accuracy", "dates", "card", "footer")


def test_the_page_gives_the_calibrated_probabilities_and_rejections_of_the_app(run_dir, tmp_path):
    # A run whose temperature was fitted (2.5 here): the page must show the app's calibrated
    # percentages, not the softmax of the logits, or the export refuses its own page.
    from tl_core.export.web_check import classify_in_onnxruntime
    from tl_core.inference import Calibration, Predictor
    from tl_core.runs import CALIBRATION_FILE

    warm = tmp_path / "warm-run"
    shutil.copytree(run_dir, warm)
    calibration = Calibration(temperature=2.5, num_images=30, fitted=True)
    (warm / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict()))
    result = export_web_page(warm, tmp_path / "warm.html", browser=False)
    assert result.check.passed, result.check.text
    images = sorted((run_dir.parent / "data").rglob("*.png"))[:4]
    page = classify_in_onnxruntime(result.path.read_text(), images)
    app = Predictor.from_run(warm, device="cpu").predict_paths(images, top_k=3)
    for mine, theirs in zip(page, app, strict=True):
        top = mine["predictions"][0]
        assert top["label"] == theirs.predictions[0][0]
        assert top["probability"] == pytest.approx(theirs.predictions[0][1], abs=1e-4)
        assert mine["unknown"] == theirs.unknown
