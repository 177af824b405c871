"""Class imbalance: the weighting's decision and weights, that they reach the loss, what a run
records, and the per-class recall the Train page shows after a run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from app_pages.ui import state as ui_state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image_folder
from tests.training import tiny_config
from tl_core.cli.main import main
from tl_core.common import TLStudioError
from tl_core.config import AUTO_CLASS_WEIGHTING_RATIO, TrainConfig
from tl_core.data import IMBALANCE_WARNING_RATIO
from tl_core.runs import CONFIG_FILE, PREDICTIONS_FILE, SPLIT_FILE
from tl_core.training import balanced_weights, class_weighting, prepare_training, train

IMBALANCED = {"red": 20, "green": 5, "blue": 5}  # 4x apart: above the automatic threshold


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "imbalanced", IMBALANCED)


def test_the_weighting_is_on_by_default_whenever_the_health_report_warns():
    assert AUTO_CLASS_WEIGHTING_RATIO <= IMBALANCE_WARNING_RATIO


def test_balanced_weights_give_every_class_the_same_share_of_the_loss():
    counts = [40, 10, 5]
    weights = balanced_weights(counts)
    # Each class's images times its weight: the same total for every class.
    shares = [n * w for n, w in zip(counts, weights, strict=True)]
    assert shares == pytest.approx([sum(counts) / 3] * 3)
    assert balanced_weights([7, 7]) == (1.0, 1.0)  # balanced data: the plain loss
    assert balanced_weights([4, 0])[1] == 0.0  # a class with no training image never counts


@pytest.mark.parametrize(
    ("setting", "counts", "weighted"),
    [
        ("auto", {"a": 20, "b": 10}, True),  # exactly the threshold
        ("auto", {"a": 19, "b": 10}, False),  # just below it
        ("on", {"a": 10, "b": 10}, True),
        ("off", {"a": 100, "b": 1}, False),
    ],
)
def test_auto_weights_from_the_threshold_and_on_or_off_decide_alone(setting, counts, weighted):
    labels = [label for label, n in counts.items() for _ in range(n)]
    decision = class_weighting(setting, labels, ["a", "b"])
    assert decision.applied is weighted
    assert decision.ratio == pytest.approx(counts["a"] / counts["b"])
    if weighted:
        assert decision.weights == balanced_weights(list(counts.values()))
    assert decision.describe().startswith("loss weighted by class") is weighted


def test_an_unknown_setting_is_refused_in_words():
    with pytest.raises(TLStudioError, match="class weighting must be one of auto, on, off"):
        TrainConfig(data="x", class_weighting="sometimes")


def test_the_plan_weights_the_loss_from_the_training_split(imbalanced, tmp_path):
    plan = prepare_training(tiny_config(imbalanced), tmp_path)
    counts = Counter(item.label for item in plan.train_items)
    expected = balanced_weights([counts[name] for name in plan.class_names])
    loss = plan.loss_function()
    assert loss.weight is not None
    assert loss.weight.tolist() == pytest.approx(expected)
    assert "loss weighted by class" in plan.describe()
    off = prepare_training(tiny_config(imbalanced, class_weighting="off"), tmp_path / "off")
    assert off.loss_function().weight is None


def test_the_weights_change_training_and_the_run_records_them(imbalanced, tmp_path):
    """Same data, seed and model: only the loss weights differ, so the losses must too."""
    train(tiny_config(imbalanced, epochs=1), tmp_path / "weighted")
    train(tiny_config(imbalanced, epochs=1, class_weighting="off"), tmp_path / "plain")
    weighted, plain = (
        json.loads((tmp_path / name / "metrics.json").read_text())["history"][0]
        for name in ("weighted", "plain")
    )
    assert weighted["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-4)
    recorded = json.loads((tmp_path / "weighted" / CONFIG_FILE).read_text())["model"]
    split = json.loads((tmp_path / "weighted" / SPLIT_FILE).read_text())
    counts = Counter(label for _, label in split["train"])
    names = list(recorded["class_weights"])
    assert list(recorded["class_weights"].values()) == pytest.approx(
        balanced_weights([counts[name] for name in names])
    )
    plain_model = json.loads((tmp_path / "plain" / CONFIG_FILE).read_text())["model"]
    assert plain_model["class_weights"] is None


def test_the_cli_takes_the_setting_and_refuses_a_wrong_one(imbalanced, tmp_path, capsys):
    common = [
        "train", str(imbalanced), "--backbone", "test_efficientnet", "--no-pretrained",
        "--freeze", "none", "--epochs", "1", "--image-size", "32", "--device", "cpu",
        "--workers", "0", "--no-feature-cache",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as refused:
        main([*common, "--class-weighting", "sometimes", "--out", str(tmp_path / "x")])
    assert refused.value.code == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
    assert main([*common, "--class-weighting", "off", "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert config["train"]["class_weighting"] == "off"
    assert config["model"]["class_weights"] is None


def test_the_train_page_shows_each_class_recall_after_a_run(module_workspace, imbalanced):
    job = ui_state.scheduler().start(tiny_config(imbalanced, epochs=2))
    assert job.wait(120).status == "completed"
    state = {
        ui_state.DATASET_KEY: str(imbalanced),
        ui_state.CONFIG_KEY: tiny_config(imbalanced).to_dict(),
        ui_state.JOB_KEY: job.job_id,
    }
    at = open_page(ui_state.TRAIN_PAGE, **state)
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "recall" in frame.value)
    # The recall of each class, worked out here from the recorded predictions.
    predictions = pd.read_csv(job.run_dir / PREDICTIONS_FILE)
    hits = predictions.assign(hit=predictions.true_label == predictions.predicted_label)
    recall = hits.groupby("true_label").hit.mean()
    assert list(table["class"]) == ["blue", "green", "red"]  # the model's (sorted) order
    assert list(table.recall) == pytest.approx([recall[name] for name in table["class"]])
    assert list(table["validation images"]) == [1, 1, 4]
    assert table["loss weight"].iloc[2] < table["loss weight"].iloc[0]  # the big class weighs less
    assert "The loss was weighted by class" in texts(at.caption)
    assert "Lowest recall:" in texts(at.caption)
