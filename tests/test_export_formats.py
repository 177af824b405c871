"""Model exports (ONNX, torch.export .pt2) load in a fresh process with their own runtime and
reproduce the app's outputs; the run zip's predict scripts and model card tell the truth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.helpers import make_image
from tests.training import train_tiny_run
from tl_core.export import (
    CHECK_TOLERANCE,
    MODEL_FORMATS,
    ExportedClassifier,
    ExportError,
    export_model,
    export_zip,
    format_for,
)
from tl_core.inference import Predictor, per_class_scores
from tl_core.runs import load_run

# Run in a fresh interpreter (the venv's python): only the format's own runtime is imported.
LOAD_ONNX = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
for name in sys.argv[2:-1]:
    np.save(name + ".out.npy", session.run(None, {"images": np.load(name)})[0])
json.dump({"labels": json.loads(meta["labels.json"]),
           "preprocessing": json.loads(meta["preprocessing.json"]),
           "torch_loaded": "torch" in sys.modules}, open(sys.argv[-1], "w"))
"""
LOAD_PT2 = """
import json, sys
import numpy as np, torch
extra = {"labels.json": "", "preprocessing.json": ""}
model = torch.export.load(sys.argv[1], extra_files=extra).module()
with torch.no_grad():
    for name in sys.argv[2:-1]:
        np.save(name + ".out.npy", model(torch.from_numpy(np.load(name)))[0].numpy())
json.dump({"labels": json.loads(extra["labels.json"]),
           "preprocessing": json.loads(extra["preprocessing.json"]),
           "timm_loaded": "timm" in sys.modules}, open(sys.argv[-1], "w"))
"""
LOADERS = {"onnx": LOAD_ONNX, "pt2": LOAD_PT2}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory):
    """One export per offered format (the slow part), shared by the module's tests."""
    out = tmp_path_factory.mktemp("exports")
    return {name: export_model(run_dir, out / f"model.{name}", name) for name in LOADERS}


@pytest.fixture(scope="module")
def unzipped(run_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(export_zip(run_dir, folder / "run.zip")) as archive:
        archive.extractall(folder / "run")
    return folder / "run"


def photos() -> list[Image.Image]:
    """Real photographs (scikit-image's), non-square, and a drawn image."""
    from skimage import data

    return [
        Image.fromarray(data.chelsea()),  # 451 x 300
        Image.fromarray(data.coffee()),  # 600 x 400
        Image.fromarray(data.astronaut()).resize((97, 131)),  # portrait
        make_image((50, 37), color=(220, 40, 40), seed=3),
        make_image((40, 48), color=(40, 80, 230), seed=4),
    ]


def pixels_for_export(run, images) -> np.ndarray:
    """The app's eval transform, its normalisation undone: what every export takes."""
    prep = run.preprocessing
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    transform = prep.eval_transform()
    return torch.stack([transform(i.convert("RGB")) * std + mean for i in images]).numpy()


def run_fresh(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("name", list(LOADERS))
def test_each_export_loads_in_a_fresh_process_and_matches_pytorch(run_dir, exports, tmp_path, name):
    run = load_run(run_dir)
    images = photos()
    pixels = pixels_for_export(run, images)
    # Two batch sizes, neither the one traced at export (2): the batch dimension is dynamic.
    np.save(tmp_path / "all.npy", pixels)
    np.save(tmp_path / "one.npy", pixels[:1])
    info_file = tmp_path / "info.json"
    run_fresh(
        "-c", LOADERS[name], exports[name].path, tmp_path / "all.npy", tmp_path / "one.npy",
        info_file,
    )  # fmt: skip

    expected = Predictor.from_run(run, device="cpu").logits(images).numpy()
    batch = np.load(tmp_path / "all.npy.out.npy")
    single = np.load(tmp_path / "one.npy.out.npy")
    difference = max(np.abs(batch - expected).max(), np.abs(single - expected[:1]).max())
    print(f"{name}: max abs difference vs PyTorch on {len(images)} images: {difference:.1e}")
    assert batch.shape == expected.shape and single.shape == (1, len(run.labels))
    assert difference < CHECK_TOLERANCE
    assert list(batch.argmax(axis=1)) == list(expected.argmax(axis=1))

    # The file alone says what its outputs mean and how to prepare an image.
    info = json.loads(info_file.read_text())
    assert info["labels"] == run.labels == ["blue", "green", "red"]
    prep = info["preprocessing"]
    assert prep["image_size"] == 32 and prep["resize_size"] == int(32 / prep["crop_pct"])
    assert prep["mean"] == pytest.approx(list(run.preprocessing.mean))
    assert prep["interpolation"] == run.preprocessing.interpolation
    # Loading needs the format's runtime only: no torch for ONNX, no timm for .pt2.
    assert not info.get("torch_loaded") and not info.get("timm_loaded")


@pytest.mark.parametrize("name", list(LOADERS))
def test_the_export_check_is_measured_on_the_runs_own_images(exports, name):
    result = exports[name]
    assert result.format == name and result.size_bytes == result.path.stat().st_size
    check = result.check
    assert check.passed and check.max_abs_difference < 1e-4
    # The tiny run holds 3 validation images: the rest come from its training images.
    assert check.num_images == 8 and check.images_from == "training and validation image"
    assert check.text.startswith("max abs difference vs PyTorch on 8 training and validation")
    assert check.text.endswith("— passed")


def test_predict_py_in_the_zip_gives_the_apps_classes_and_probabilities(
    run_dir, unzipped, tmp_path
):
    photo = tmp_path / "chelsea.png"
    photos()[0].save(photo)
    drawn = tmp_path / "drawn.png"
    photos()[3].save(drawn)
    # A fresh process in another folder: the script finds its files beside itself.
    done = run_fresh(unzipped / "predict.py", photo, drawn, "--top-k", "3", "--json")
    results = json.loads(done.stdout)

    expected = Predictor.from_run(run_dir, device="cpu").predict_paths([photo, drawn], top_k=3)
    for image, prediction in zip([photo, drawn], expected, strict=True):
        got = results[str(image)]["predictions"]
        assert [label for label, _ in got] == [label for label, _ in prediction.predictions]
        probabilities = [p for _, p in prediction.predictions]
        assert [p for _, p in got] == pytest.approx(probabilities, abs=1e-6)


def test_predict_onnx_py_gives_the_apps_classes_and_probabilities(
    run_dir, unzipped, exports, tmp_path
):
    images = []
    for index, image in enumerate(photos()):
        images.append(tmp_path / f"{index}.png")
        image.save(images[-1])
    done = run_fresh(
        unzipped / "predict_onnx.py", exports["onnx"].path, *images, "--top-k", "3", "--json"
    )
    results = json.loads(done.stdout)

    expected = Predictor.from_run(run_dir, device="cpu").predict_paths(images, top_k=3)
    worst = 0.0
    for image, prediction in zip(images, expected, strict=True):
        got = results[str(image)]["predictions"]
        assert [label for label, _ in got] == [label for label, _ in prediction.predictions]
        probabilities = [p for _, p in prediction.predictions]
        worst = max(worst, *(abs(a - b) for (_, a), b in zip(got, probabilities, strict=True)))
    print(f"predict_onnx.py vs tl_core.inference.predict: max probability difference {worst:.1e}")
    # Its own PIL preprocessing (no torch) must be the app's: same pixels, same outputs.
    assert worst < 1e-5


def test_predict_onnx_py_prepares_pixels_exactly_as_the_app(run_dir, unzipped):
    sys.path.insert(0, str(unzipped))
    try:
        import predict_onnx
    finally:
        sys.path.remove(str(unzipped))
    run = load_run(run_dir)
    preprocessing = {**run.preprocessing.to_dict(), "resize_size": int(32 / 0.95)}
    for image in photos():
        mine = predict_onnx.pixels(image, preprocessing)
        np.testing.assert_allclose(mine, pixels_for_export(run, [image])[0], atol=1e-6)


def test_the_zip_keeps_its_files_and_gains_scripts_and_a_model_card(run_dir, unzipped):
    names = {p.name for p in unzipped.iterdir()}
    assert {"model.safetensors", "config.json", "labels.json", "metrics.json"} <= names
    assert {"HOW_TO_LOAD.txt", "predict.py", "predict_onnx.py", "README.md"} <= names
    card = (unzipped / "README.md").read_text()
    run = load_run(run_dir)

    assert "`test_efficientnet` (timm)" in card and "full fine-tune" in card
    assert "20% of each class held out for validation (stratified, seed 0)" in card
    split = json.loads((run_dir / "split.json").read_text())
    for index, label in enumerate(run.labels):
        train = sum(1 for _, c in split["train"] if c == label)
        val = sum(1 for _, c in split["val"] if c == label)
        assert f"| {index} | {label} | {train} | {val} |" in card
    # Per-class scores are those of the recorded validation predictions.
    recorded = pd.read_csv(run_dir / "val_predictions.csv")
    confusion = pd.crosstab(
        pd.Categorical(recorded.true_label, categories=run.labels),
        pd.Categorical(recorded.predicted_label, categories=run.labels),
        dropna=False,
    )
    for row in per_class_scores(confusion).itertuples():
        assert f"| {row.label} | {row.precision:.1%} | {row.recall:.1%} | {row.f1:.1%} " in card
    assert f"{run.metrics['best_val_accuracy']:.1%} (95 % CI" in card
    created = json.loads((run_dir / "config.json").read_text())["created"].replace("T", " ")
    assert f"Trained with TL Studio on {created}; exported on 20" in card


def test_a_failed_check_is_an_error_and_leaves_no_file(run_dir, tmp_path, monkeypatch):
    # An export that forgets the normalisation: it loads and runs, but its outputs are wrong.
    monkeypatch.setattr(ExportedClassifier, "forward", lambda self, images: self.model(images))
    out = tmp_path / "model.pt2"
    with pytest.raises(ExportError, match="does not reproduce the run") as caught:
        export_model(run_dir, out, "pt2")
    assert "FAILED (tolerance" in caught.value.message and "onnx" in caught.value.hint
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary folder


def test_an_exporter_failure_says_which_backbone_and_what_to_do(run_dir, tmp_path, monkeypatch):
    def unsupported(*_args):
        raise RuntimeError("Unsupported operator aten::fancy_op\nlong traceback text")

    fmt = MODEL_FORMATS["onnx"]
    monkeypatch.setitem(MODEL_FORMATS, "onnx", type(fmt)(**{**fmt.__dict__, "write": unsupported}))
    with pytest.raises(ExportError) as caught:
        export_model(run_dir, tmp_path / "model.onnx", "onnx")
    assert caught.value.message == (
        "The backbone test_efficientnet could not be exported to ONNX: "
        "Unsupported operator aten::fancy_op"
    )
    assert "pt2" in caught.value.hint and list(tmp_path.iterdir()) == []


def test_without_the_runs_images_the_check_uses_generated_ones(run_dir, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    split = json.loads((moved / "split.json").read_text())
    gone = {part: [[f"/nowhere/{i}.png", c] for i, (_, c) in enumerate(pairs)]
            for part, pairs in split.items()}  # fmt: skip
    (moved / "split.json").write_text(json.dumps(gone))
    result = export_model(moved, tmp_path / "model.pt", "torchscript")
    assert result.check.passed and result.check.text.startswith(
        "max abs difference vs PyTorch on 4 generated images"
    )


@pytest.mark.parametrize(
    "out, requested, expected",
    [
        ("m.onnx", None, "onnx"),
        ("m.pt2", None, "pt2"),
        ("m.PT", None, "torchscript"),
        ("run.zip", None, "zip"),
        ("model.bin", None, "onnx"),  # the default: what most runtimes load
        ("model.bin", "pt2", "pt2"),
    ],
)
def test_the_format_follows_the_request_then_the_file_name(out, requested, expected):
    assert format_for(out, requested) == expected


def test_the_command_line_prints_the_size_and_the_check(run_dir, tmp_path, capsys):
    from tl_core.cli.main import main

    assert main(["export", str(run_dir), "--out", str(tmp_path / "model.pt2")]) == 0
    captured = capsys.readouterr()
    assert "Exported pt2 to" in captured.out and " KB)" in captured.out
    assert "Check: max abs difference vs PyTorch on 8 " in captured.out
    assert "— passed" in captured.out and "Checking the" in captured.err
    assert main(["export", str(run_dir), "--out", str(tmp_path / "run.zip")]) == 0
    assert zipfile.is_zipfile(tmp_path / "run.zip")


@pytest.mark.slow
def test_the_default_backbone_exports_to_onnx_that_loads_and_matches(tmp_path):
    from tests.helpers import make_image_folder
    from tests.training import tiny_config
    from tl_core.config import DEFAULT_BACKBONE
    from tl_core.training import train

    data = make_image_folder(tmp_path / "data", {"red": 4, "blue": 4})
    config = tiny_config(data, backbone=DEFAULT_BACKBONE, pretrained=True, freeze="all",
                         image_size=224, epochs=1)  # fmt: skip
    train(config, tmp_path / "run")
    result = export_model(tmp_path / "run", tmp_path / "model.onnx", "onnx")
    print(f"{DEFAULT_BACKBONE} ONNX export check: {result.check.text}")
    assert result.check.passed

    run = load_run(tmp_path / "run")
    images = photos()
    np.save(tmp_path / "all.npy", pixels_for_export(run, images))
    run_fresh("-c", LOAD_ONNX, result.path, tmp_path / "all.npy", tmp_path / "info.json")
    expected = Predictor.from_run(run, device="cpu").logits(images).numpy()
    difference = np.abs(np.load(tmp_path / "all.npy.out.npy") - expected).max()
    print(f"{DEFAULT_BACKBONE}: max abs difference vs PyTorch on {len(images)} photos: "
          f"{difference:.1e}")  # fmt: skip
    assert difference < CHECK_TOLERANCE
