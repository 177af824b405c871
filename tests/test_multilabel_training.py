"""Multi-label training: one sigmoid output per tag through the one training step, its metric,
its thresholds, its evaluation and its predictions, on shapes whose tags are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.multilabel_data import make_shapes_dataset
from tests.training import tiny_config
from tl_core.common import RunError
from tl_core.inference import (
    Predictor,
    average_precision,
    best_thresholds,
    evaluate_run,
    read_thresholds,
    set_thresholds,
)
from tl_core.jobs import TrainingJob
from tl_core.runs import summarize_run
from tl_core.training import tag_weighting, train


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained from scratch on 40 images of circles, squares, both or neither;
    and 24 fresh images drawn with another seed."""
    root = tmp_path_factory.mktemp("shapes")
    data = make_shapes_dataset(root / "data", per_kind=10)
    run = root / "run"
    assert train(tiny_config(data, epochs=12, lr=3e-3, batch_size=16), run) == "completed"
    return run, make_shapes_dataset(root / "fresh", per_kind=6, seed=7)


def test_the_history_names_its_metric_and_records_map(shapes_run):
    run, _ = shapes_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy_metric"] == "macro F1 at threshold 0.5"
    assert all(0 <= row["val_accuracy"] <= 1 and 0 <= row["val_map"] <= 1
               for row in metrics["history"])  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["task"] == "multi_label"
    # A Wilson interval is for a share of images correct, not for an F1: none is shown.
    text = summarize_run(run).accuracy_text
    assert "macro F1 at threshold 0.5 (8 images)" in text and "CI" not in text
    assert not (run / "calibration.json").exists()  # no softmax temperature for sigmoids


def test_thresholds_are_chosen_on_validation_and_evaluation_finds_the_shapes(shapes_run):
    run, fresh = shapes_run
    record = json.loads((run / "thresholds.json").read_text())
    assert set(record["thresholds"]) == {"circle", "square"}
    assert record["validation_images"] == 8
    evaluation = evaluate_run(run, fresh, device="cpu")
    per_tag = evaluation.per_tag.set_index("tag")
    assert per_tag.support.to_dict() == {"circle": 12, "square": 12}
    # Chance would give an average precision near 0.5 (half the images carry each tag).
    assert evaluation.mean_average_precision > 0.8
    assert evaluation.macro_f1 > 0.7
    summary = evaluation.to_dict()
    assert summary["per_tag"][0]["missed"] == len(summary["per_tag"][0]["missed_images"])
    confusion = evaluation.tag_confusion()
    assert confusion.loc["circle", "circle"] == per_tag.true_positives["circle"]


def test_predictions_carry_the_tags_above_their_thresholds(shapes_run):
    run, fresh = shapes_run
    predictor = Predictor.from_run(run, device="cpu")
    images = sorted((fresh / "images").glob("*.png"))
    results = predictor.predict_paths(images)
    thresholds = dict(zip(predictor.labels, predictor.thresholds, strict=True))
    for result in results:
        ranked = dict(result.predictions)
        assert {tag for tag, _ in result.tags} == {
            tag for tag, p in ranked.items() if p >= thresholds[tag]
        }
    # Moving a threshold to 0.999 takes the tag off every image.
    set_thresholds(run, {"circle": 0.999})
    try:
        again = Predictor.from_run(run, device="cpu").predict_paths(images)
        assert not any("circle" in dict(r.tags) for r in again)
        assert read_thresholds(run)[0] == 0.999
    finally:
        set_thresholds(run, {"circle": thresholds["circle"]})


@pytest.mark.parametrize("value", [0, 1, 1.5, float("nan"), "high"])
def test_a_threshold_outside_0_and_1_is_refused(shapes_run, value):
    with pytest.raises(RunError, match="between 0 and 1"):
        set_thresholds(shapes_run[0], {"square": value})


def test_an_unknown_tag_is_refused(shapes_run):
    with pytest.raises(RunError, match="'triangle' is not a tag"):
        set_thresholds(shapes_run[0], {"triangle": 0.4})


@pytest.mark.parametrize(
    "overrides",
    [
        {"freeze": "all"},  # head only, on features computed once
        {"freeze": "2"},  # the frozen prefix computed once
        {"mode": "gradual", "freeze": None, "epochs": 3},  # stages through one trainer
        {"freeze": "none", "augment": "light", "class_weighting": "on"},
    ],
)
def test_every_mode_trains_a_multi_label_run(tmp_path, overrides):
    data = make_shapes_dataset(tmp_path / "data", per_kind=4)
    run = tmp_path / "run"
    assert train(tiny_config(data, **{"epochs": 2, **overrides}), run) == "completed"
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert all("val_map" in row for row in history)
    assert len(read_thresholds(run)) == 2


def test_rare_tags_get_larger_positive_weights():
    weighting = tag_weighting("auto", [("a",), ("a",), ("a", "b"), (), ("a",), ()], ["a", "b"])
    assert weighting.applied and weighting.unit == "tag"
    assert weighting.weights == pytest.approx((2 / 4, 5 / 1))
    assert "rare tags" in weighting.describe()
    assert not tag_weighting("auto", [("a",), ("b",)], ["a", "b"]).applied


def test_average_precision_and_best_thresholds_on_known_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    truth = np.array([1, 0, 1, 0, 0], dtype=bool)
    assert average_precision(scores, truth) == pytest.approx((1 + 2 / 3) / 2)
    probabilities = np.array([[0.9, 0.1], [0.3, 0.2], [0.25, 0.7], [0.1, 0.6]])
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    chosen = best_thresholds(probabilities, targets)
    assert 0.25 < chosen[0] <= 0.3 and 0.2 < chosen[1] <= 0.6
    assert (probabilities >= np.array(chosen)).tolist() == targets.tolist()


def test_a_training_job_names_its_metric_in_the_snapshot(tmp_path):
    data = make_shapes_dataset(tmp_path / "data", per_kind=3)
    job = TrainingJob(tiny_config(data, epochs=1, freeze="all"), tmp_path / "run")
    job.start()
    snapshot = job.wait(timeout=120)
    assert snapshot.status == "completed"
    assert snapshot.accuracy_metric == "macro F1 at threshold 0.5"
    assert "in 2 tags" in snapshot.plan and "val_map" in snapshot.history[0]
    assert "macro F1" in snapshot.best_accuracy_text and "CI" not in snapshot.best_accuracy_text
