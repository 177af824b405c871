"""A finished run reloads, predicts, evaluates and exports with the same outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import make_image
from tests.training import train_tiny_run
from tl_core.common import DatasetError, format_accuracy, wilson_interval
from tl_core.export import export_torchscript, export_zip, how_to_load_text
from tl_core.inference import (
    Predictor,
    build_evaluation,
    collect_image_paths,
    evaluate_run,
    predictions_frame,
)
from tl_core.runs import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def test_a_reloaded_run_predicts_what_training_recorded(run_dir):
    recorded = pd.read_csv(run_dir / "val_predictions.csv")
    predictor = Predictor.from_run(run_dir, device="cpu")
    results = predictor.predict_paths(list(recorded.image), top_k=3)

    assert [r.predictions[0][0] for r in results] == list(recorded.predicted_label)
    confidences = [r.predictions[0][1] for r in results]
    assert confidences == pytest.approx(list(recorded.confidence), abs=1e-5)
    for result in results:
        probabilities = [p for _, p in result.predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_evaluation_of_the_validation_split_matches_the_recorded_accuracy(run_dir):
    evaluation = evaluate_run(run_dir, device="cpu")
    metrics = json.loads((run_dir / "metrics.json").read_text())

    assert evaluation.accuracy == pytest.approx(metrics["best_val_accuracy"])
    assert list(evaluation.confusion.index) == list(evaluation.confusion.columns)
    assert evaluation.confusion.to_numpy().sum() == len(evaluation.predictions)
    assert evaluation.per_class.support.sum() == len(evaluation.predictions)
    worst = evaluation.top_losses(3)
    assert list(worst.loss) == sorted(worst.loss, reverse=True)


def test_the_command_line_evaluation_states_the_interval(run_dir, capsys):
    from tl_core.cli.main import main

    assert main(["evaluate", str(run_dir)]) == 0
    expected = evaluate_run(run_dir, device="cpu")
    assert f"Accuracy: {format_accuracy(expected.accuracy, expected.num_images)}" in (
        capsys.readouterr().out
    )
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["num_images"] == expected.num_images
    assert data["accuracy_ci95"] == pytest.approx(list(expected.interval))


def test_evaluation_on_another_labelled_folder(run_dir, tmp_path):
    from tests.helpers import make_image_folder

    # New images of two of the three classes, drawn with other noise than the training set.
    other = make_image_folder(tmp_path / "other", {"red": 3, "green": 4}, seed=5)
    evaluation = evaluate_run(run_dir, other, device="cpu")
    assert len(evaluation.predictions) == 7
    assert set(evaluation.predictions.true_label) == {"red", "green"}
    assert list(evaluation.confusion.index) == ["blue", "green", "red"]
    assert evaluation.confusion.loc["blue"].sum() == 0


def test_evaluation_refuses_classes_the_model_does_not_know(run_dir, tmp_path):
    from tests.helpers import make_image_folder

    other = make_image_folder(tmp_path / "other", {"red": 2, "purple": 2})
    with pytest.raises(DatasetError, match="purple"):
        evaluate_run(run_dir, other, device="cpu")


def test_evaluation_on_a_zip_cleans_up_after_itself(run_dir, tmp_path):
    from tests.helpers import make_image_folder, make_zip

    other = make_image_folder(tmp_path / "other", {"blue": 2, "red": 3}, seed=6)
    archive = make_zip(other, tmp_path / "test-set.zip", wrap="test-set")
    evaluation = evaluate_run(run_dir, archive, device="cpu")  # as `tl-studio evaluate --data`
    assert evaluation.num_images == 5
    assert set(evaluation.predictions.true_label) == {"blue", "red"}
    assert not any(Path(p).exists() for p in evaluation.predictions.image)  # temporary copy


def test_evaluation_of_a_folder_without_class_folders_says_so(run_dir, tmp_path):
    (tmp_path / "loose").mkdir()
    make_image().save(tmp_path / "loose" / "a.png")
    with pytest.raises(DatasetError, match="No labelled images"):
        evaluate_run(run_dir, tmp_path / "loose", device="cpu")


def test_an_evaluation_states_its_interval_and_what_to_review():
    labels = ["cat", "dog"]
    logits = torch.tensor([[3.0, 0.0], [0.2, 0.0], [0.0, 1.0], [0.0, 4.0], [1.0, 0.0]])
    evaluation = build_evaluation(labels, ["a", "b", "c", "d", "e"], [0, 0, 0, 1, 0], logits)
    assert (evaluation.num_images, evaluation.num_wrong) == (5, 1)
    assert evaluation.interval == wilson_interval(4, 5)
    assert evaluation.accuracy_text == format_accuracy(0.8, 5)
    assert evaluation.default_cell() == ("cat", "dog")
    assert list(evaluation.most_wrong().image) == ["c"]
    # Least confident correct first: b (softmax of 0.2 vs 0) before e, a and d.
    assert list(evaluation.least_confident_correct(2).image) == ["b", "e"]

    perfect = build_evaluation(labels, ["a", "d"], [0, 1], logits[[0, 3]])
    assert perfect.most_wrong().empty
    assert list(perfect.least_confident_correct().image) == ["a", "d"]
    assert perfect.default_cell() in {("cat", "cat"), ("dog", "dog")}


def test_build_evaluation_computes_the_confusion_matrix_and_scores():
    labels = ["cat", "dog"]
    # Three cats (one mistaken for a dog) and one dog, correctly found.
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 4.0]])
    evaluation = build_evaluation(labels, ["a", "b", "c", "d"], [0, 0, 0, 1], logits)

    assert evaluation.confusion.loc["cat", "cat"] == 2
    assert evaluation.confusion.loc["cat", "dog"] == 1
    assert evaluation.confusion.loc["dog", "dog"] == 1
    assert evaluation.accuracy == pytest.approx(0.75)
    scores = evaluation.per_class.set_index("label")
    assert scores.loc["cat", "precision"] == pytest.approx(1.0)
    assert scores.loc["cat", "recall"] == pytest.approx(2 / 3)
    assert scores.loc["dog", "precision"] == pytest.approx(0.5)
    assert scores.loc["dog", "f1"] == pytest.approx(2 / 3)
    assert list(evaluation.cell_images("cat", "dog").image) == ["c"]
    assert evaluation.top_losses(1).image.item() == "c"
    assert evaluation.most_confused().to_dict("records") == [
        {"true_label": "cat", "predicted_label": "dog", "count": 1}
    ]


def test_unreadable_files_get_an_error_and_the_rest_are_predicted(run_dir, tmp_path):
    good = tmp_path / "good.png"
    make_image(color=(220, 40, 40)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    results = Predictor.from_run(run_dir, device="cpu").predict_paths([bad, good], top_k=2)

    assert results[0].error and not results[0].predictions
    assert results[1].error is None and len(results[1].predictions) == 2
    frame = predictions_frame(results)
    assert list(frame.columns) == ["image", "predicted_label", "confidence", "top_k", "error"]
    assert frame.error.notna().tolist() == [True, False]


def test_collect_image_paths_expands_folders_and_skips_clutter(tmp_path):
    (tmp_path / "set" / "sub").mkdir(parents=True)
    (tmp_path / "set" / "__MACOSX").mkdir()
    for name in ("set/b.png", "set/sub/a.jpg", "set/__MACOSX/._a.jpg", "set/.hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "set" / "notes.txt").write_text("x")
    found = collect_image_paths([tmp_path / "set"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["set/b.png", "set/sub/a.jpg"]
    with pytest.raises(DatasetError):
        collect_image_paths([tmp_path / "missing"])


def test_torchscript_export_reproduces_the_run(run_dir, tmp_path):
    run = load_run(run_dir)
    path = export_torchscript(run, tmp_path / "model.pt")
    scripted = torch.jit.load(str(path))
    images = [make_image((50, 37), color=(40, 200, 60), seed=s) for s in range(3)]
    resized = run.preprocessing.eval_transform()
    # The export takes [0, 1] pixels and normalises inside: undo the run's normalisation.
    mean = torch.tensor(run.preprocessing.mean).view(3, 1, 1)
    std = torch.tensor(run.preprocessing.std).view(3, 1, 1)
    pixels = torch.stack([resized(i) * std + mean for i in images])

    expected = Predictor.from_run(run, device="cpu").logits(images)
    torch.testing.assert_close(scripted(pixels), expected, rtol=1e-4, atol=1e-4)


def test_torchscript_export_carries_its_class_names_and_preprocessing(run_dir, tmp_path):
    run = load_run(run_dir)
    path = export_torchscript(run, tmp_path / "model.pt")
    # Only the .pt file: what its outputs mean and how to prepare an image come with it.
    extra = {"labels.json": "", "preprocessing.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    prep = run.preprocessing

    assert list(scripted.class_names) == run.labels == ["blue", "green", "red"]
    assert scripted.image_size == prep.image_size == 32
    assert scripted.resize_size == int(prep.image_size / prep.crop_pct)
    assert scripted.interpolation == prep.interpolation
    assert scripted.crop_pct == pytest.approx(prep.crop_pct)
    torch.testing.assert_close(scripted.mean.flatten(), torch.tensor(prep.mean))
    assert json.loads(extra["labels.json"]) == run.labels
    stored = json.loads(extra["preprocessing.json"])
    assert stored["image_size"] == 32 and stored["std"] == pytest.approx(list(prep.std))
    assert stored["resize_size"] == scripted.resize_size
    # Also readable without torch: the .pt file is a zip with the JSON under extra/.
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith("extra/labels.json"))
        assert json.loads(archive.read(member)) == run.labels

    # The class names pick the same top class as the app does.
    image = make_image((50, 37), color=(220, 40, 40), seed=3)
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    pixels = (prep.eval_transform()(image) * std + mean).unsqueeze(0)
    top = scripted.class_names[int(scripted(pixels).argmax())]
    assert top == Predictor.from_run(run, device="cpu").predict_images([image], 1)[0][0][0]


def test_how_to_load_text_says_how_to_read_the_class_names(run_dir):
    text = how_to_load_text(load_run(run_dir))
    assert 'custom_metadata_map\n  class_names = json.loads(meta["labels.json"])' in text
    assert 'torch.export.load("model.pt2", extra_files=extra)' in text
    assert "model.class_names" in text and "python predict.py image.jpg" in text
    assert "['blue', 'green', 'red']" in text


def test_zip_export_holds_everything_needed_to_reload(run_dir, tmp_path):
    path = export_zip(run_dir, tmp_path / "export.zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    assert {"model.safetensors", "config.json", "labels.json", "HOW_TO_LOAD.txt"} <= names
    text = (tmp_path / "unzipped" / "HOW_TO_LOAD.txt").read_text()
    assert "test_efficientnet" in text and "red" in text

    reloaded = Predictor.from_run(tmp_path / "unzipped", device="cpu")
    original = Predictor.from_run(run_dir, device="cpu")
    image = make_image(color=(40, 80, 230))
    torch.testing.assert_close(reloaded.logits([image]), original.logits([image]))
