"""Saliency maps (Grad-CAM): the core, the Predictor method, the CLI command and the pages."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from app_pages.ui import state as ui_state
from tests.apptest_helpers import open_page, texts
from tests.helpers import make_image
from tests.training import train_tiny_run
from tl_core.cli.main import main
from tl_core.common import TLStudioError
from tl_core.inference import (
    INFERNO,
    Predictor,
    explain_image,
    overlay,
    saliency_map,
    split_eval_transform,
)
from tl_core.models import Preprocessing
from tl_core.runs import WORKSPACE_ENV, Workspace

TINY_MODELS = ("test_efficientnet", "test_resnet", "test_convnext", "test_vit")
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
TOGGLE = "Show where the model looked"


def input_shape(model: torch.nn.Module) -> tuple[int, int, int]:
    return tuple(model.pretrained_cfg["input_size"])


# ---- the real default backbone on a real photograph ----------------------------------------------


@pytest.fixture(scope="module")
def imagenet_model():
    from tl_core.models import load_pretrained_imagenet

    model, _ = load_pretrained_imagenet("tf_efficientnet_lite0")
    return model.eval(), Preprocessing.for_model(model).eval_transform()


def cat_beside_filler(cat_side: str, filler: str) -> Image.Image:
    """A square canvas: scikit-image's cat photo on one half, flat grey or noise on the other.

    Square, so the eval transform's centre crop keeps both halves.
    """
    from skimage import data

    photo = Image.fromarray(data.chelsea())  # 451 x 300, the cat's head in the middle
    side = photo.height
    left = (photo.width - side) // 2
    cat = photo.crop((left, 0, left + side, side))
    if filler == "grey":
        canvas = Image.new("RGB", (2 * side, 2 * side), (128, 128, 128))
    else:
        rng = np.random.default_rng(0)
        canvas = Image.fromarray(rng.integers(0, 256, (2 * side, 2 * side, 3), dtype=np.uint8))
    canvas.paste(cat, (0 if cat_side == "left" else side, side // 2))
    return canvas


@pytest.mark.slow
@pytest.mark.parametrize("filler", ["grey", "noise"])
@pytest.mark.parametrize("cat_side", ["left", "right"])
def test_the_saliency_for_the_cat_class_lies_on_the_cat(imagenet_model, cat_side, filler):
    model, transform = imagenet_model
    x = transform(cat_beside_filler(cat_side, filler))
    with torch.no_grad():
        logits = model(x[None])[0]
    assert int(logits.argmax()) in IMAGENET_CATS  # the model does see a cat
    cat_class = IMAGENET_CATS[0] + int(logits[IMAGENET_CATS.start : IMAGENET_CATS.stop].argmax())

    heatmap = saliency_map(model, x, cat_class)

    half = heatmap.shape[1] // 2
    on_cat, elsewhere = (
        (heatmap[:, :half], heatmap[:, half:])
        if cat_side == "left"
        else (heatmap[:, half:], heatmap[:, :half])
    )
    assert on_cat.mean() > 2 * elsewhere.mean()


# ---- any timm architecture -----------------------------------------------------------------------


class PooledOnly(torch.nn.Module):
    """A classifier whose features are already pooled: there is nothing spatial to map."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def model_state(model: torch.nn.Module) -> tuple[list[bool], list[bool]]:
    return (
        [module.training for module in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def set_state(model: torch.nn.Module, state: tuple[list[bool], list[bool]]) -> None:
    for module, training in zip(model.modules(), state[0], strict=True):
        module.training = training


@pytest.mark.parametrize("name", TINY_MODELS)
def test_saliency_map_shape_range_and_the_model_is_left_as_it_was(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4)
    # A mixed state, as training leaves it: frozen early layers, some modules in eval mode.
    params = list(model.parameters())
    for p in params[: len(params) // 2]:
        p.requires_grad_(False)
    for module in list(model.modules())[1::3]:
        module.eval()
    before = model_state(model)
    image = torch.randn(input_shape(model))
    original = image.clone()

    with torch.no_grad():  # as callers that only predict would call it
        predicted = saliency_map(model, image)
        top = int(model.eval()(image[None]).argmax())
    set_state(model, before)
    other = saliency_map(model, image, target_index=(top + 1) % 4)

    assert predicted.shape == image.shape[1:] and predicted.dtype == np.float32
    assert predicted.min() == 0.0 and predicted.max() == 1.0
    assert np.isfinite(other).all() and 0.0 <= other.min() <= other.max() <= 1.0
    assert not np.allclose(predicted, other)  # a different class, a different map
    assert model_state(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(image, original) and not image.requires_grad


def test_a_backbone_without_spatial_features_is_refused_in_words():
    model = PooledOnly().train()
    with pytest.raises(TLStudioError, match="not available"):
        saliency_map(model, torch.randn(3, 16, 16))
    assert model.training  # restored even after the error


def test_overlay_is_rgb_at_the_image_size_and_glows_where_the_heat_is():
    image = Image.new("L", (70, 50), 128)
    heatmap = np.zeros((7, 7), np.float32)
    heatmap[:, :3] = 1.0  # hot on the left

    result = overlay(image, heatmap, alpha=0.5)

    assert result.mode == "RGB" and result.size == (70, 50)
    pixels = np.asarray(result, dtype=np.float32)
    assert pixels[:, :20].mean() > pixels[:, -20:].mean() + 40
    assert np.allclose(pixels[0, 0], 0.5 * 128 + 0.5 * INFERNO[-1], atol=1)
    assert np.allclose(pixels[0, -1], 0.5 * 128 + 0.5 * INFERNO[0], atol=1)
    unchanged = overlay(image.convert("RGB"), heatmap, alpha=0.0)
    assert np.array_equal(np.asarray(unchanged), np.asarray(image.convert("RGB")))


def test_the_view_the_overlay_is_drawn_on_is_exactly_what_the_model_sees():
    transform = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).eval_transform()
    wide = make_image(size=(150, 90), seed=3)
    view_steps, tensor_steps = split_eval_transform(transform)

    view = view_steps(wide)

    assert view.size == (64, 64)
    assert torch.equal(tensor_steps(view), transform(wide))
    with pytest.raises(ValueError):
        split_eval_transform(lambda image: image)


def test_explain_image_draws_on_the_cropped_view_and_reports_the_class():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()
    transform = Preprocessing.for_model(model, image_size=96).eval_transform()
    image = make_image(size=(200, 120), seed=4)
    with torch.no_grad():
        probabilities = model(transform(image)[None])[0].softmax(0)

    picture, index, probability = explain_image(model, transform, image, target_index=1)

    assert picture.size == (96, 96) and picture.mode == "RGB"
    assert index == 1 and probability == pytest.approx(float(probabilities[1]), abs=1e-5)


# ---- a trained run: Predictor, CLI, pages --------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    # 64 pixels give the tiny network a 2x2 feature map, so its saliency is not one flat value.
    return train_tiny_run(tmp_path_factory, image_size=64)


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor.from_run(run_dir, device="cpu")


def test_predictor_explains_its_prediction_or_a_chosen_class(predictor):
    image = make_image(size=(90, 60), color=(40, 80, 230), seed=5)
    ((top_label, top_probability), *_) = predictor.predict_images([image], top_k=3)[0]

    picture, label, probability = predictor.explain(image)
    assert picture.size == (64, 64)
    assert (label, probability) == (top_label, pytest.approx(top_probability, abs=1e-5))

    other = next(name for name in predictor.labels if name != top_label)
    _, label, probability = predictor.explain(image, other)
    ranking = dict(predictor.predict_images([image], top_k=3)[0])
    assert (label, probability) == (other, pytest.approx(ranking[other], abs=1e-5))

    with pytest.raises(TLStudioError, match="not one of") as caught:
        predictor.explain(image, "purple")
    assert "red" in caught.value.hint
    assert not predictor.model.training


def test_cli_explain_writes_the_overlay_and_names_the_class(run_dir, tmp_path, capsys):
    image = tmp_path / "new.jpg"
    make_image(size=(80, 60), color=(220, 40, 40), seed=6).save(image)
    out = tmp_path / "maps" / "new.png"

    assert main(["explain", str(run_dir), str(image), "--label", "green", "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert printed.startswith("green ") and "%" in printed and str(out) in printed
    with Image.open(out) as written:
        assert (written.format, written.mode, written.size) == ("PNG", "RGB", (64, 64))


def test_cli_explain_fails_in_words_on_a_missing_image_a_bad_class_or_format(
    run_dir, tmp_path, capsys
):
    out = tmp_path / "map.png"
    assert main(["explain", str(run_dir), str(tmp_path / "gone.png"), "--out", str(out)]) == 1
    assert "gone.png" in capsys.readouterr().err

    image = tmp_path / "a.png"
    make_image(seed=7).save(image)
    assert main(["explain", str(run_dir), str(image), "--label", "x", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not one of" in err and "hint:" in err and "Traceback" not in err
    assert not out.exists()

    assert main(["explain", str(run_dir), str(image), "--out", str(tmp_path / "map.xyz")]) == 1
    assert "End --out with .png" in capsys.readouterr().err


@pytest.fixture(scope="module")
def app_run(run_dir, tmp_path_factory) -> Path:
    """The trained run, in a fresh app workspace's runs folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WORKSPACE_ENV, str(tmp_path_factory.mktemp("app") / "ws"))
        yield Path(shutil.copytree(run_dir, Workspace.from_env().runs / run_dir.name))


def png_bytes(color, seed) -> bytes:
    buffer = io.BytesIO()
    make_image(size=(72, 48), color=color, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def captions(at) -> list[str]:
    return [img.caption for element in at.image for img in element.proto.imgs]


def test_predict_page_shows_where_the_model_looked_when_asked(app_run):
    at = open_page(ui_state.PREDICT_PAGE, **{ui_state.RUN_KEY: str(app_run)})
    at.file_uploader[0].set_value(
        [
            ("red.png", png_bytes((220, 40, 40), 1), "image/png"),
            ("blue.png", png_bytes((40, 80, 230), 2), "image/png"),
            ("broken.png", b"not an image", "image/png"),
        ]
    ).run()
    assert not at.exception
    assert captions(at) == ["red.png", "blue.png"]

    next(t for t in at.toggle if t.label == TOGGLE).set_value(True).run()

    assert not at.exception
    shown = captions(at)
    assert shown[::2] == ["red.png", "blue.png"]
    for caption in shown[1::2]:  # each image followed by its overlay, for its top class
        assert caption.startswith("Evidence for ") and caption.split()[2] in {
            "red",
            "green",
            "blue",
        }
    assert len(at.get("plotly_chart")) == 2
    assert "broken.png" in texts(at.warning)


def most_wrong_urls(at) -> list[str]:
    return [img.url for e in at.image for img in e.proto.imgs if img.caption.startswith("true ")]


def test_evaluate_page_can_show_the_most_wrong_images_with_their_saliency(app_run):
    at = open_page(ui_state.EVALUATE_PAGE, **{ui_state.RUN_KEY: str(app_run)})
    thumbnails = most_wrong_urls(at)
    worst = [c for c in captions(at) if c.startswith("true ")]
    assert worst

    toggle = next(t for t in at.toggle if t.label == TOGGLE)
    toggle.set_value(True).run()

    assert not at.exception
    assert [c for c in captions(at) if c.startswith("true ")] == worst  # same images, in order
    overlays = most_wrong_urls(at)
    assert len(overlays) == len(thumbnails) and not set(overlays) & set(thumbnails)
    toggle.set_value(False).run()
    assert most_wrong_urls(at) == thumbnails
