"""Backbone passes run on a copy with the batch norms folded into the convolutions before them."""

from __future__ import annotations

import threading

import timm
import torch
from timm.layers import BatchNormAct2d, ScaledStdConv2d
from torch import nn

from tests.training import tiny_config, train_tiny_run
from tl_core.config import DEFAULT_BACKBONE
from tl_core.data import load_image, sample_dataset_path
from tl_core.features import BatchFeatures, pooled_features, split_frozen_prefix
from tl_core.features import pooled as features_module
from tl_core.inference import Predictor
from tl_core.models import (
    Preprocessing,
    apply_freeze,
    conv_norm_pairs,
    folded_copy,
    load_pretrained_model,
    probe_images,
)
from tl_core.runs import load_run
from tl_core.training import train

NORMS = (nn.BatchNorm2d, BatchNormAct2d)


def norms_in(module: nn.Module) -> list[nn.Module]:
    return [layer for layer in module.modules() if isinstance(layer, NORMS)]


def with_running_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random-init norms are the identity; give them statistics so a fold has work to do."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in norms_in(model):
            size = norm.num_features
            norm.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
            norm.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            if norm.affine:
                norm.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return model


def sample_images(count: int, preprocessing: Preprocessing) -> torch.Tensor:
    paths = sorted(p for p in sample_dataset_path().rglob("*") if p.suffix.lower() == ".jpg")
    transform = preprocessing.eval_transform()
    return torch.stack([transform(load_image(path)) for path in paths[:count]])


def test_the_default_backbone_gives_the_same_features_on_real_images_without_its_norms():
    model, _ = load_pretrained_model(DEFAULT_BACKBONE)
    model.eval()
    images = sample_images(8, Preprocessing.for_model(model, None))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    folded = folded_copy(model, images[:1], pooled_features)

    assert folded is not model and norms_in(model) and not norms_in(folded)
    with torch.no_grad():
        expected, got = pooled_features(model, images), pooled_features(folded, images)
    difference = (expected - got).abs().max().item()
    print(f"max abs difference of {DEFAULT_BACKBONE}'s pooled features: {difference:.2e}")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert expected.argmax(1).tolist() == got.argmax(1).tolist()
    after = model.state_dict()  # the model that trains and exports keeps its own weights
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_the_model_keeps_each_layers_mode_and_the_copy_runs_in_eval_mode():
    model = with_running_statistics(timm.create_model("test_efficientnet", num_classes=3))
    model.eval()
    model.get_classifier().train()  # a head that trains while the backbone computes features
    modes = [layer.training for layer in model.modules()]

    folded = folded_copy(model, torch.randn(1, 3, 32, 32), pooled_features)

    assert [layer.training for layer in model.modules()] == modes
    assert not any(layer.training for layer in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters())


def test_a_norm_before_its_convolution_or_beside_a_shortcut_is_not_folded_wrongly():
    class PreActivation(nn.Module):
        """BN declared right before the convolution it feeds (as in a pre-activation ResNet),
        and a convolution whose output goes both to a norm and to a shortcut."""

        def __init__(self):
            super().__init__()
            self.norm_in = nn.BatchNorm2d(3)
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.conv_shared = nn.Conv2d(8, 8, 1)
            self.norm_out = nn.BatchNorm2d(8)

        def forward(self, images):
            hidden = self.conv_shared(self.conv(self.norm_in(images)))
            return self.norm_out(hidden) + hidden

    model = with_running_statistics(PreActivation()).eval()
    images = torch.randn(4, 3, 16, 16)
    pairs, _ = conv_norm_pairs(model, images[:1])
    assert ("conv", "norm_in") not in pairs  # norm_in feeds the convolution, not the reverse

    folded = folded_copy(model, images[:1])

    with torch.no_grad():  # whatever was folded, the output is the model's
        torch.testing.assert_close(folded(images), model(images), rtol=1e-4, atol=1e-5)
    assert folded is model  # norm_out's convolution also feeds the shortcut: the check refused


def test_a_convolution_that_standardises_its_weight_is_left_alone():
    model = nn.Sequential(ScaledStdConv2d(3, 8, 3), nn.BatchNorm2d(8))
    with_running_statistics(model).eval()
    assert folded_copy(model, torch.randn(1, 3, 16, 16)) is model


def test_a_model_that_cannot_be_copied_runs_as_it_is():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    with_running_statistics(model).eval()
    model.lock = threading.Lock()  # deepcopy cannot copy a lock
    assert folded_copy(model, torch.randn(1, 3, 16, 16)) is model


def test_a_model_without_batch_norms_is_used_as_it_is_without_a_probe_pass():
    vit = timm.create_model("test_vit", num_classes=3).eval()
    calls = []
    vit.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    assert folded_copy(vit, torch.randn(1, 3, 32, 32)) is vit
    assert calls == []


def test_on_x86_the_copy_keeps_the_channels_last_layout():
    model = with_running_statistics(timm.create_model("test_efficientnet", num_classes=3))
    model = model.eval().to(memory_format=torch.channels_last)
    probe = probe_images(model, 32, torch.device("cpu"))
    folded = folded_copy(model, probe, pooled_features)
    conv = folded.conv_stem
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_head_only_run_computes_its_features_on_a_folded_copy(
    tiny_dataset, tmp_path, monkeypatch
):
    used = []
    folded_copy_of = features_module.folded_copy

    def spy(module, probe, run):
        folded = folded_copy_of(module, probe, run)
        used.append((module, folded))
        return folded

    monkeypatch.setattr(features_module, "folded_copy", spy)
    config = tiny_config(tiny_dataset, freeze="all", augment="auto", epochs=2, batch_size=4)
    assert train(config, tmp_path / "run") == "completed"

    assert len(used) == 1  # one copy for the training and validation images together
    model, folded = used[0]
    assert folded is not model and not norms_in(folded) and norms_in(model)


def test_the_features_of_a_batch_match_the_models_whatever_batch_made_the_copy():
    torch.manual_seed(0)
    model = with_running_statistics(timm.create_model("test_efficientnet", num_classes=3))
    model.eval()
    compute = BatchFeatures(model, torch.device("cpu"), torch.no_grad)
    first, second = torch.randn(2, 3, 32, 32), torch.randn(5, 3, 32, 32)
    compute(first)
    with torch.no_grad():
        torch.testing.assert_close(compute(second), pooled_features(model, second))
    assert compute.backbone is not model


def test_a_frozen_prefix_runs_folded_and_gives_the_prefix_output():
    model = with_running_statistics(timm.create_model("test_resnet", num_classes=3))
    freeze = apply_freeze(model, 2)
    split, reason = split_frozen_prefix(model, freeze, 32)
    assert split is not None, reason
    assert split.folded_prefix is not None and not norms_in(split.folded_prefix)
    assert norms_in(split.prefix)  # the model's own layers are unchanged
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(split.run_prefix(images), split.prefix(images))


def test_predictions_run_on_a_folded_copy_and_give_the_models_probabilities(tmp_path_factory):
    run_dir = train_tiny_run(tmp_path_factory)
    predictor = Predictor.from_run(run_dir, device="cpu")
    images = [load_image(path) for path in sorted((run_dir.parent / "data").rglob("*.png"))]

    logits = predictor.logits(images)

    folded = predictor._inference_model
    assert folded is not predictor.model and not norms_in(folded)
    assert norms_in(predictor.model)  # saliency maps still see the model's own layers
    model = load_run(run_dir).build_model()
    batch = torch.stack([predictor.transform(image) for image in images])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(batch), rtol=1e-4, atol=1e-5)
