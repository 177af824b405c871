"""Calibrated probabilities and "not one of my classes": the temperature, the threshold's
promise, the answers in words, old runs, and the same rejections in every export."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from tests.helpers import make_image
from tests.training import train_tiny_run
from tl_core.figures import reliability_figure
from tl_core.inference import (
    Calibration,
    ImagePrediction,
    Predictor,
    answer_text,
    calibration_report,
    domain_shift_summary,
    evaluate_run,
    expected_calibration_error,
    fit_calibration,
    fit_open_set,
    prediction_rows,
    read_calibration,
    read_open_set,
    unknown_first,
)
from tl_core.runs import CALIBRATION_FILE, OPEN_SET_FILE


def overconfident_logits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 4-class model that is right about 70 % of the time but says ~99 %."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 4, (count,), generator=generator)
    logits = torch.randn(count, 4, generator=generator)
    right = torch.rand(count, generator=generator) < 0.7
    predicted = torch.where(right, targets, (targets + 1) % 4)
    logits[torch.arange(count), predicted] += 2.0
    return logits * 4.0, targets  # the x4 makes it overconfident


def test_temperature_scaling_lowers_the_held_out_nll_of_an_overconfident_model():
    fit_logits, fit_targets = overconfident_logits(400, seed=0)
    held_logits, held_targets = overconfident_logits(400, seed=1)
    calibration = fit_calibration(fit_logits, fit_targets)

    assert calibration.fitted and calibration.temperature > 2  # it softens the probabilities
    nll = torch.nn.functional.cross_entropy
    before = float(nll(held_logits, held_targets))
    after = float(nll(calibration.apply(held_logits), held_targets))
    print(f"held-out NLL {before:.3f} -> {after:.3f} (T = {calibration.temperature:.2f})")
    assert after < 0.8 * before
    ece_before = expected_calibration_error(held_logits.softmax(1), held_targets)
    ece_after = expected_calibration_error(calibration.probabilities(held_logits), held_targets)
    assert ece_after < ece_before / 2
    # The predicted class never changes.
    assert torch.equal(calibration.apply(held_logits).argmax(1), held_logits.argmax(1))


def test_too_few_validation_images_keep_temperature_one_and_say_so():
    logits, targets = overconfident_logits(12, seed=0)
    calibration = fit_calibration(logits, targets)
    assert not calibration.fitted and calibration.temperature == 1.0
    assert "only 12 validation images" in calibration.text and "20" in calibration.text


def test_the_reliability_report_and_figure_show_both_errors():
    logits, targets = overconfident_logits(300, seed=2)
    calibration = fit_calibration(logits, targets)
    report = calibration_report(logits, targets, calibration)
    assert report.ece_after < report.ece_before
    assert report.bins_before.images.sum() == report.bins_after.images.sum() == 300
    data = json.loads(json.dumps(report.to_dict()))  # JSON-ready (empty bins give null)
    assert data["temperature"] == pytest.approx(calibration.temperature)
    assert len(data["reliability_before"]) == 10
    figure = reliability_figure(report)
    names = [trace.name for trace in figure.data]
    assert names[0] == "perfectly calibrated"
    assert names[1].startswith("before calibration (ECE ") and names[2].startswith("after")


def clusters(count: int, seed: int, centres: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(centres), (count,), generator=generator)
    return centres[labels] + 0.6 * torch.randn(count, centres.shape[1], generator=generator)


def test_the_threshold_accepts_the_promised_share_of_new_known_images():
    centres = 3 * torch.randn(4, 32, generator=torch.Generator().manual_seed(7))
    known = clusters(400, seed=1, centres=centres)
    model = fit_open_set(known, acceptance=0.95)
    assert not isinstance(model, str)

    new = clusters(2000, seed=2, centres=centres)  # never seen: as future images
    accepted = float((~model.is_unknown(model.scores(new))).float().mean())
    print(f"accepted {accepted:.3f} of new known images (promised 0.95)")
    assert accepted == pytest.approx(0.95, abs=0.03)
    # Scored against a bank that holds them, the labelled images would set a threshold that
    # accepts far fewer new images: the held-out scores are what keeps the promise.
    assert model.cost().share == pytest.approx(0.05, abs=0.01)
    elsewhere = clusters(200, seed=3, centres=-centres)
    assert model.is_unknown(model.scores(elsewhere)).float().mean() > 0.95
    # Moving the threshold: accepting every labelled image rejects none of them.
    assert model.cost(model.threshold_for(1.0)).rejected == 0


def test_too_few_labelled_images_reject_nothing_and_say_why():
    reason = fit_open_set(torch.randn(6, 8))
    assert isinstance(reason, str) and "only 6 labelled images" in reason


def prediction(name, label, probability, unknown):
    return ImagePrediction(name, ((label, probability), ("other", 1 - probability)),
                           unknown=unknown, ood_score=0.9 if unknown else 0.1)  # fmt: skip


def test_answers_summaries_and_rows_put_unknown_images_first():
    results = [
        prediction("a.png", "brick", 0.87, False),
        prediction("wall.png", "brick", 0.31, True),
        ImagePrediction("bad.png", (), error="not an image"),
        prediction("b.png", "tile", 0.6, True),
    ]
    assert answer_text(results[0]) == "brick (87 %)"
    assert answer_text(results[1]) == "Not one of my classes (closest: brick, 31 %)"
    assert [p.image for p in unknown_first(results)][:2] == ["wall.png", "b.png"]
    summary = domain_shift_summary(results)
    assert (summary.unknown, summary.total) == (2, 3)
    assert summary.text == (
        "2 of 3 images look unlike what this model was trained on: predictions for them are "
        "unreliable."
    )
    assert (
        domain_shift_summary(results[:1]).text
        == "The image looks like what this model was trained on."
    )
    assert "trained before" in domain_shift_summary(results, checked=False).text
    rows = json.loads(json.dumps(prediction_rows(results)))
    assert rows[1]["unknown"] is True and rows[1]["ood_score"] == 0.9
    assert rows[1]["predictions"][0] == {"label": "brick", "probability": 0.31}
    assert rows[2]["error"] == "not an image" and rows[2]["unknown"] is False


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def test_training_keeps_the_calibration_and_the_open_set_model(run_dir):
    calibration = read_calibration(run_dir)
    # The tiny run has 3 validation images: too few to fit a temperature, and it says so.
    assert not calibration.fitted and calibration.num_images == 3
    assert json.loads((run_dir / CALIBRATION_FILE).read_text())["temperature"] == 1.0
    open_set = read_open_set(run_dir)
    assert open_set is not None and len(open_set.bank) == 18 and open_set.k == 3
    assert len(open_set.heldout_scores) == 18 and int(open_set.heldout_is_validation.sum()) == 3
    assert open_set.cost(-1.0, validation_only=True).rejected == 3
    everything = open_set.cost(-1.0).text
    assert everything == "Rejects 18 of 18 labelled images (100.0%) of the known classes"
    evaluation = evaluate_run(run_dir, device="cpu")
    assert evaluation.calibration is not None and evaluation.calibration.num_images == 3


def test_the_predictor_flags_images_by_the_runs_threshold(run_dir):
    predictor = Predictor.from_run(run_dir, device="cpu")
    images = [make_image(seed=s) for s in range(3)]
    outputs = predictor.outputs(images)
    results = predictor.classify(images, ["a", "b", "c"], top_k=2)
    assert [r.unknown for r in results] == outputs.unknown.tolist()
    assert [r.ood_score for r in results] == pytest.approx(outputs.ood_scores.tolist())
    assert outputs.unknown.tolist() == (outputs.ood_scores > predictor.open_set.threshold).tolist()
    # A threshold above every score accepts all; one below every score rejects all.
    top = float(outputs.ood_scores.max()) + 1
    assert not any(r.unknown for r in predictor.classify(images, top_k=2, threshold=top))
    assert all(r.unknown for r in predictor.classify(images, top_k=2, threshold=-1.0))


def test_an_old_run_without_the_new_files_still_predicts_and_says_so(run_dir, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    (old / CALIBRATION_FILE).unlink()
    (old / OPEN_SET_FILE).unlink()
    images = sorted((run_dir.parent / "data").rglob("*.png"))[:3]

    predictor = Predictor.from_run(old, device="cpu")
    results = predictor.predict_paths(images, top_k=3)
    assert all(r.predictions and not r.unknown and r.ood_score is None for r in results)
    assert predictor.calibration.temperature == 1.0
    assert "trained before" in predictor.calibration.text
    assert "trained before" in domain_shift_summary(results, checked=False).text
    # Same classes and probabilities as the run with its files (temperature 1 in both).
    current = Predictor.from_run(run_dir, device="cpu").predict_paths(images, top_k=3)
    for mine, theirs in zip(results, current, strict=True):
        assert [name for name, _ in mine.predictions] == [name for name, _ in theirs.predictions]
        assert [p for _, p in mine.predictions] == pytest.approx([p for _, p in theirs.predictions])
    no_file = read_calibration(tmp_path)
    assert (no_file.temperature, no_file.fitted) == (1.0, False)


def test_a_calibrated_run_records_calibrated_validation_confidences(run_dir, tmp_path):
    import pandas as pd

    warm = tmp_path / "warm-run"
    shutil.copytree(run_dir, warm)
    calibration = Calibration(temperature=2.5, num_images=30, fitted=True)
    (warm / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict()))
    recorded = pd.read_csv(run_dir / "val_predictions.csv")
    predictor = Predictor.from_run(warm, device="cpu")
    logits = predictor.logits_for_paths(list(recorded.image))
    results = predictor.predict_paths(list(recorded.image), top_k=1)
    expected = (logits / 2.5).softmax(1).max(1).values
    assert [r.predictions[0][1] for r in results] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(r.predictions[0][1] < c for r, c in zip(results, recorded.confidence, strict=True))
    evaluation = evaluate_run(warm, device="cpu")
    assert list(evaluation.predictions.confidence) == pytest.approx(expected.tolist(), abs=1e-5)
    assert np.isclose(evaluation.calibration.calibration.temperature, 2.5)


def foreign_images() -> dict:
    """Real images from other datasets than the shapes sample: a digit, a texture, a photo."""
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_digits

    digit = (load_digits().images[0] * 255 / 16).astype(np.uint8)
    return {
        "digit.png": Image.fromarray(digit).resize((64, 64)).convert("RGB"),
        "brick.png": Image.fromarray(data.brick()[:160, :160]).convert("RGB"),
        "chelsea.png": Image.fromarray(data.chelsea()),
    }


def new_sample_images(out, per_class: int):
    """Shapes drawn by the sample's own script with another seed: unseen known images."""
    import importlib.util

    from tl_core.data.sample import REPO_ROOT

    script = REPO_ROOT / "assets" / "make_sample_dataset.py"
    spec = importlib.util.spec_from_file_location("make_sample_dataset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_sample_dataset(out, per_class=per_class, seed=1)
    return out


@pytest.mark.slow
def test_a_foreign_image_is_rejected_by_the_run_and_every_export_alike(tmp_path):
    import onnxruntime

    from tests.test_export_formats import pixels_for_export, run_fresh
    from tl_core.config import TrainConfig
    from tl_core.data import load_image, sample_dataset_path
    from tl_core.export import export_model, export_zip
    from tl_core.runs import load_run
    from tl_core.training import train

    config = TrainConfig(data=str(sample_dataset_path()), freeze="all", augment="none", epochs=5,
                         val_fraction=0.25, device="cpu", num_workers=0)  # fmt: skip
    train(config, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert read_calibration(run.path).fitted  # 24 validation images
    # New images of the known classes, drawn as the sample was but with another seed.
    known = sorted(new_sample_images(tmp_path / "new", per_class=8).rglob("*.jpg"))
    for name, image in foreign_images().items():
        image.save(tmp_path / name)
    foreign = [tmp_path / name for name in foreign_images()]
    paths = [*known, *foreign]

    results = Predictor.from_run(run, device="cpu").predict_paths(paths, top_k=3)
    flags = [r.unknown for r in results]
    print("scores:", [round(r.ood_score, 3) for r in results], read_open_set(run.path).threshold)
    assert sum(flags[: len(known)]) <= 3  # 95 % promised: 22.8 of 24 on average
    assert flags[len(known) :] == [True] * len(foreign)
    assert answer_text(results[-1]).startswith("Not one of my classes (closest: ")

    pixels = pixels_for_export(run, [load_image(p) for p in paths])
    onnx = export_model(run, tmp_path / "model.onnx", "onnx")
    pt2 = export_model(run, tmp_path / "model.pt2", "pt2")
    assert onnx.check.passed and pt2.check.passed
    session = onnxruntime.InferenceSession(str(onnx.path), providers=["CPUExecutionProvider"])
    _, probabilities, scores, unknown = session.run(None, {"images": pixels})
    assert unknown.tolist() == flags
    assert scores == pytest.approx([r.ood_score for r in results], abs=1e-4)
    assert probabilities.max(1) == pytest.approx([r.predictions[0][1] for r in results], abs=1e-4)
    meta = json.loads(session.get_modelmeta().custom_metadata_map["open_set.json"])
    assert meta["threshold"] == pytest.approx(read_open_set(run.path).threshold)
    with torch.no_grad():
        outputs = torch.export.load(str(pt2.path)).module()(torch.from_numpy(pixels))
    assert outputs[3].tolist() == flags

    with zipfile.ZipFile(export_zip(run, tmp_path / "run.zip")) as archive:
        archive.extractall(tmp_path / "unzipped")
    done = run_fresh(tmp_path / "unzipped" / "predict.py", *paths, "--json")
    standalone = json.loads(done.stdout)
    assert [standalone[str(p)]["unknown"] for p in paths] == flags
    done = run_fresh(tmp_path / "unzipped" / "predict_onnx.py", onnx.path, *paths, "--json")
    assert [json.loads(done.stdout)[str(p)]["unknown"] for p in paths] == flags

    # And by the command line: predict --json flags the same images, unknown ones first.
    done = run_fresh("-m", "tl_core.cli", "predict", run.path, *paths, "--json", "--device", "cpu")
    rows = {row["image"]: row for row in json.loads(done.stdout)}
    assert [rows[str(p)]["unknown"] for p in paths] == flags
    assert [row["unknown"] for row in json.loads(done.stdout)] == sorted(flags, reverse=True)
    assert rows[str(foreign[-1])]["answer"].startswith("Not one of my classes (closest: ")
    assert f"{sum(flags)} of {len(paths)} images look unlike" in done.stderr
