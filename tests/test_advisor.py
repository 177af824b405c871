"""The backbone advisor: LogME, the cross-validated probe, ranking, cache, stop, and the CLI."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import make_image, make_image_folder
from tests.test_real_images import DIGITS, handwritten_digits  # noqa: F401 (a fixture)
from tl_core.analysis import (
    AdvisorStopped,
    CandidateScore,
    FeatureSpectrum,
    advise,
    advisor,
    logme_score,
    maximise_evidence,
    rank_candidates,
    recommend,
    stratified_subsample,
)
from tl_core.cli.main import main
from tl_core.common import WeightsError
from tl_core.data import ImageItem
from tl_core.models import CATALOG, create_model

# 3 colour classes x 12 images: more than one feature batch of 32.
CLASSES = {"red": 12, "green": 12, "blue": 12}


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "colours", CLASSES)


# ---- LogME -------------------------------------------------------------------------------------


def dense_log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float):
    """The evidence of Bayesian linear regression, written out with D x D matrices."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ target)
    residual = target - features @ m
    return (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - alpha / 2 * m @ m
        - beta / 2 * residual @ residual
        - np.linalg.slogdet(a)[1] / 2
        - n / 2 * math.log(2 * math.pi)
    )


@pytest.mark.parametrize("shape", [(120, 20), (30, 80)])  # more samples than dims, and fewer
def test_logme_evidence_matches_the_dense_formula(shape):
    rng = np.random.default_rng(0)
    features = rng.normal(size=shape)
    labels = rng.integers(0, 3, shape[0])
    features[np.arange(shape[0]), labels] += 2.0  # one direction per class
    target = (labels == 1).astype(float)

    found = maximise_evidence(FeatureSpectrum.of(features), target)

    dense = dense_log_evidence(features, target, found.alpha, found.beta)
    assert found.log_evidence == pytest.approx(dense, rel=1e-9)


def test_logme_finds_the_maximum_of_the_evidence():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 20))
    labels = rng.integers(0, 3, 120)
    features[np.arange(120), labels] += 2.0
    target = (labels == 1).astype(float)

    found = maximise_evidence(FeatureSpectrum.of(features), target)

    # Moving alpha or beta away from the fixed point lowers the evidence.
    best = dense_log_evidence(features, target, found.alpha, found.beta)
    for a, b in [(1.3, 1), (0.7, 1), (1, 1.3), (1, 0.7)]:
        assert dense_log_evidence(features, target, found.alpha * a, found.beta * b) < best


def test_logme_prefers_features_that_encode_the_label_and_ignores_class_order():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 30)
    noise = rng.normal(size=(120, 32))
    separable = noise.copy()
    separable[np.arange(120), labels] += 4.0  # one direction per class

    assert logme_score(separable, labels) > logme_score(noise, labels) + 0.1
    renamed = np.array([7, 2, 9, 0])[labels]
    assert logme_score(separable, renamed) == pytest.approx(logme_score(separable, labels))


# ---- subsample ---------------------------------------------------------------------------------


def items(counts: dict[str, int]) -> list[ImageItem]:
    return [
        ImageItem(Path(f"/d/{label}/{i}.png"), label)
        for label, n in counts.items()
        for i in range(n)
    ]


def test_subsample_is_capped_stratified_and_independent_of_order():
    pool = items({"a": 100, "b": 50, "c": 10})

    picked = stratified_subsample(pool, 40, seed=0, min_per_class=5)

    counts = {label: sum(i.label == label for i in picked) for label in "abc"}
    assert sum(counts.values()) == 40
    assert counts["c"] >= 5  # a small class keeps enough images for the folds
    assert counts["a"] > counts["b"] > counts["c"]
    assert len(set(picked)) == 40 and set(picked) <= set(pool)
    assert stratified_subsample(pool[::-1], 40, seed=0, min_per_class=5) == picked
    assert stratified_subsample(pool, 40, seed=1, min_per_class=5) != picked
    assert len(stratified_subsample(pool, 500)) == 160  # under the cap: every image


# ---- ranking -----------------------------------------------------------------------------------


def score(name: str, folds: tuple[float, ...], logme: float = 0.0, speed: float = 10.0):
    return CandidateScore(name, folds, logme, speed, 5.0, 224, None, "test")


def test_overlapping_bands_are_about_the_same_and_the_fastest_of_them_is_recommended():
    leader = score("leader", (0.85, 0.9, 0.95), speed=10)
    close = score("close", (0.8, 0.86, 0.88), speed=30)  # reaches into the leader's range
    far = score("far", (0.55, 0.6, 0.65), speed=100)

    ranked = rank_candidates([far, close, leader])

    assert [c.backbone for c in ranked] == ["leader", "close", "far"]
    assert [c.about_the_same for c in ranked] == [True, True, False]
    name, reason = recommend(ranked)
    assert name == "close"
    assert "about the same as the highest (leader" in reason and "3.0 times as fast" in reason


def test_logme_breaks_ties_of_the_probe_and_a_clear_leader_is_recommended():
    low_logme = score("low", (0.9, 0.92), logme=-1.0, speed=50)
    high_logme = score("high", (0.92, 0.9), logme=-0.5, speed=5)
    assert [c.backbone for c in rank_candidates([low_logme, high_logme])] == ["high", "low"]

    best = score("best", (0.95, 0.97), speed=1)
    ranked = rank_candidates([best, score("slow", (0.6, 0.7), speed=99)])
    assert recommend(ranked) == (
        "best",
        "best: highest expected head-only accuracy, 96 % (95–97 %); no other candidate's "
        "range reaches it.",
    )


# ---- advise with small models ------------------------------------------------------------------


class KnownFeatures(torch.nn.Module):
    """A stand-in backbone whose features are known: the image's mean colour, or pure noise."""

    pretrained_cfg = {
        "input_size": (3, 32, 32),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
    }

    def __init__(self, informative: bool, dim: int = 16):
        super().__init__()
        self.informative = informative
        self.generator = torch.Generator().manual_seed(0)
        self.mix = torch.randn(3, dim, generator=self.generator)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def forward_head(self, images: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.informative:
            return images.mean((2, 3)) @ self.mix
        return torch.randn(len(images), self.mix.shape[1], generator=self.generator)


def known_factory(name: str, num_classes: int):
    if name == "test_vit":  # plays the backbone with useless features
        return KnownFeatures(informative=False), "test noise"
    if name == "test_efficientnet":
        return KnownFeatures(informative=True), "test colour"
    raise WeightsError(f"No weights for {name} in this test.")


def test_features_that_encode_the_label_rank_first_and_noise_is_flagged(colours, tmp_path):
    result = advise(
        colours,
        ["test_vit", "test_efficientnet", "resnet18"],
        cache_dir=tmp_path / "cache",
        model_factory=known_factory,
    )

    assert [c.backbone for c in result.candidates] == ["test_efficientnet", "test_vit"]
    signal, noise = result.candidates
    assert signal.probe_low > 0.9
    assert noise.probe_accuracy < 0.6
    assert not noise.about_the_same
    assert signal.logme > noise.logme
    assert result.recommended == "test_efficientnet"
    assert result.skipped[0].backbone == "resnet18" and "No weights" in result.skipped[0].reason
    assert result.majority_rate == pytest.approx(1 / 3)
    assert any(w.startswith("test_vit scores") and "largest class" in w for w in result.warnings)
    assert result.caveat.startswith("An estimate from 36 of your images, not a guarantee")
    frame = result.frame()
    assert list(frame["backbone"]) == ["test_efficientnet", "test_vit"]
    assert frame["recommended"].tolist() == [True, False]


def test_noise_as_the_best_candidate_warns_that_features_barely_separate_classes(colours, tmp_path):
    result = advise(colours, ["test_vit"], cache_dir=tmp_path, model_factory=known_factory)
    assert result.warnings[0].startswith("Even the best candidate, test_vit, scores")
    assert "fine-tune more layers" in result.warnings[0]


class CountingFactory:
    """Tiny timm models with fixed random weights; counts the images each backbone runs on
    (with the ``unfolded`` fixture: no probe pass)."""

    def __init__(self):
        self.images_seen = 0

    def __call__(self, name: str, num_classes: int):
        torch.manual_seed(0)
        model, _ = create_model(name, num_classes, pretrained=False)
        model.forward_features = _counted(model.forward_features, self)
        return model, "test weights, seed 0"


def _counted(forward, factory: CountingFactory):
    def wrapped(images):
        factory.images_seen += len(images)
        return forward(images)

    return wrapped


def test_a_second_comparison_reuses_the_features_without_running_the_backbone(
    colours, tmp_path, unfolded
):
    factory = CountingFactory()
    options = dict(cache_dir=tmp_path / "cache", image_size=32, model_factory=factory)

    first = advise(colours, ["test_efficientnet"], **options)
    assert factory.images_seen == 36
    second = advise(colours, ["test_efficientnet"], **options)

    assert factory.images_seen == 36  # the backbone did not run again
    assert second.candidates[0].cached_images == 36
    assert second.candidates[0].to_dict() == first.candidates[0].to_dict()
    # Keyed by contents: one new image is the only one computed; a renamed file still hits.
    make_image(seed=999).save(colours / "red" / "extra.png")
    (colours / "blue" / "blue_0.png").rename(colours / "blue" / "renamed.png")
    advise(colours, ["test_efficientnet"], **options)
    assert factory.images_seen == 37
    # Other preprocessing is another key.
    advise(colours, ["test_efficientnet"], **{**options, "image_size": 40})
    assert factory.images_seen == 37 + 37


def test_a_damaged_or_unwritable_cache_costs_a_recomputation_not_an_error(
    colours, tmp_path, unfolded
):
    factory = CountingFactory()
    cache = tmp_path / "cache"
    advise(colours, ["test_efficientnet"], cache_dir=cache, image_size=32, model_factory=factory)
    (stored,) = cache.glob("*.safetensors")
    stored.write_bytes(b"not a safetensors file")

    again = advise(
        colours, ["test_efficientnet"], cache_dir=cache, image_size=32, model_factory=factory
    )
    assert factory.images_seen == 72 and again.warnings == ()

    blocked = tmp_path / "a file"
    blocked.write_text("")
    result = advise(
        colours, ["test_efficientnet"], cache_dir=blocked, image_size=32, model_factory=factory
    )
    assert result.candidates[0].probe_accuracy > 0
    assert result.warnings[-1].startswith(f"The features could not be kept in {blocked}")


def test_the_stop_event_ends_the_comparison_after_the_current_batch(colours, tmp_path, unfolded):
    factory = CountingFactory()
    stop = threading.Event()
    messages = []

    def progress(done: int, total: int, message: str) -> None:
        messages.append((done, total, message))
        if "features of" in message:
            stop.set()

    with pytest.raises(AdvisorStopped):
        advise(
            colours,
            ["test_efficientnet", "test_vit"],
            progress=progress,
            stop=stop,
            cache_dir=tmp_path / "cache",
            image_size=32,
            model_factory=factory,
        )
    assert factory.images_seen == 32  # one batch, then no more
    assert messages[-1] == (32, 72, "test_efficientnet: features of 32/36 images")
    assert not list((tmp_path / "cache").glob("*"))  # half a pass is never kept


def test_the_catalog_gives_every_backbone_its_imagenet_accuracy():
    assert all(info.imagenet_top1 and 60 < info.imagenet_top1 < 90 for info in CATALOG)


# ---- CLI ---------------------------------------------------------------------------------------


def test_cli_advise_json_has_the_documented_shape(tiny_dataset_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(advisor, "pretrained_factory", known_factory)
    code = main(
        [
            "advise",
            str(tiny_dataset_zip),
            "--backbones",
            "test_vit,test_efficientnet,resnet18",
            "--folds",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
        ]
    )

    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {
        "recommended",
        "reason",
        "candidates",
        "skipped",
        "skipped_files",
        "caveat",
        "warnings",
    }
    assert answer["skipped_files"] == []  # every file of the zip is an image
    assert answer["recommended"] == "test_efficientnet"
    assert [c["backbone"] for c in answer["candidates"]] == ["test_efficientnet", "test_vit"]
    assert set(answer["candidates"][0]) == {
        "backbone",
        "probe_accuracy",
        "probe_low",
        "probe_high",
        "logme",
        "images_per_second",
        "params_millions",
        "input_size",
        "imagenet_top1",
        "about_the_same",
    }
    accuracies = [c["probe_accuracy"] for c in answer["candidates"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert answer["skipped"][0]["backbone"] == "resnet18"
    assert "18 of your images" in answer["caveat"]


def test_cli_advise_prints_a_table_and_refuses_bad_input(colours, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(advisor, "pretrained_factory", known_factory)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["advise", str(colours), "--backbones", "test_efficientnet,test_vit", *cache]) == 0
    out = capsys.readouterr().out
    assert "expected accuracy (head only)" in out and "about the same" not in out
    assert "Recommended: test_efficientnet" in out and "not a guarantee" in out

    assert main(["advise", str(tmp_path / "missing"), *cache]) == 1
    assert "error:" in capsys.readouterr().err
    assert main(["advise", str(colours), "--backbones", "no_such_net", *cache]) == 1
    assert "no backbone called 'no_such_net'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["advise", str(colours), "--max-images", "1"])
    assert exit_info.value.code == 2


# ---- real backbones ----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_backbones_separate_real_digits_far_above_chance(handwritten_digits, tmp_path):  # noqa: F811
    result = advise(
        handwritten_digits,
        max_images=80,
        image_size=128,
        device="cpu",
        cache_dir=tmp_path / "cache",
    )

    measured = {c.backbone for c in result.candidates}
    assert measured == {f"tf_efficientnet_lite{n}" for n in (0, 1, 2)}
    chance = 1 / len(DIGITS)
    for candidate in result.candidates:
        assert candidate.probe_low >= 2.5 * chance, candidate
        assert candidate.images_per_second > 0
    assert result.recommended in measured
