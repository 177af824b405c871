"""Training modes: settings, stages, layer-wise learning rates, warm-up, and what really trains."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import make_image
from tests.training import tiny_config
from tl_core.cli.main import build_parser
from tl_core.cli.options import DEFAULTS, config_from_args
from tl_core.common import TLStudioError, UsageError
from tl_core.config import FEATURE_EXTRACTION, FINE_TUNE, FULL_FINE_TUNE, GRADUAL, TrainConfig
from tl_core.figures import stage_starts, training_figures
from tl_core.models import (
    Preprocessing,
    apply_freeze,
    augmentation_preview,
    create_model,
    layer_groups,
    norm_param_names,
)
from tl_core.runs import describe_freeze, summarize_run
from tl_core.training import (
    Stage,
    Trainer,
    build_optimizer,
    describe_stages,
    even_mults,
    group_learning_rates,
    train,
    training_stages,
    warmup_cosine_schedule,
    warmup_steps,
)

# ---------------------------------------------------------------------------------- settings


def test_fixed_modes_are_named_by_their_freeze_and_gradual_keeps_its_depth():
    assert TrainConfig("d").mode == FEATURE_EXTRACTION and TrainConfig("d").freeze == "all"
    assert TrainConfig("d", mode=FULL_FINE_TUNE).freeze == "none"
    assert TrainConfig("d", freeze="2").mode == FINE_TUNE
    # A sweep changes only the freeze: the mode follows it.
    assert TrainConfig("d").replace(freeze="3").mode == FINE_TUNE
    assert TrainConfig("d").replace(freeze="none").mode == FULL_FINE_TUNE
    gradual = TrainConfig("d", mode=GRADUAL)
    assert gradual.freeze == "none"  # down to the input unless told otherwise
    assert gradual.replace(freeze="2").mode == GRADUAL
    assert gradual.to_dict()["mode"] == GRADUAL


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(mode="fastest"), "mode must be one of"),
        (dict(mode=FINE_TUNE), "needs a freeze depth"),
        (dict(mode=GRADUAL, freeze="all"), "at least one backbone group"),
        (dict(mode=GRADUAL, epochs=1), "at least 2 epochs"),
        (dict(backbone_lr_scale=0.0), "learning-rate share"),
        (dict(backbone_lr_scale=2.0), "learning-rate share"),
        (dict(weight_decay=-0.1), "weight decay"),
        (dict(warmup_epochs=-1.0), "warm-up"),
        (dict(label_smoothing=1.0), "label smoothing"),
    ],
)
def test_bad_recipes_are_refused_in_words(settings, words):
    with pytest.raises(TLStudioError) as caught:
        TrainConfig("d", **settings)
    assert words in caught.value.message


def test_an_old_run_config_without_a_mode_still_loads():
    old = {"data": "d", "freeze": "3", "epochs": 5, "backbone_lr_scale": 0.1}
    config = TrainConfig.from_dict(old)
    assert config.mode == FINE_TUNE and config.freeze == "3"
    assert describe_freeze({"train": old}) == "3 groups frozen"
    gradual = {"train": {"freeze": "none", "mode": GRADUAL}}
    assert describe_freeze(gradual) == "gradual unfreezing to full fine-tune"


# ---------------------------------------------------------------------------------- stages


def test_gradual_unfreezing_goes_one_group_per_stage_with_the_rest_of_the_epochs_last():
    stages = training_stages(TrainConfig("d", mode=GRADUAL, epochs=10), 6)
    assert [s.frozen_groups for s in stages] == [6, 5, 4, 3, 2, 1, 0]
    assert [s.epochs for s in stages] == [1, 1, 1, 1, 1, 1, 4]
    assert all(s.train_bn for s in stages)
    assert (
        describe_stages(stages[-2:], 6)
        == "2 stages: 1/6 groups frozen (1 epoch), full fine-tune (4 epochs)"
    )


def test_with_fewer_epochs_than_groups_stages_unfreeze_several_groups_evenly():
    stages = training_stages(TrainConfig("d", mode=GRADUAL, freeze="2", epochs=3), 6)
    assert [(s.frozen_groups, s.epochs) for s in stages] == [(6, 1), (4, 1), (2, 1)]


def test_fixed_modes_are_one_stage_without_training_frozen_norm_layers():
    assert training_stages(TrainConfig("d", freeze="2", epochs=4), 6) == [Stage(1, 2, 4)]
    with pytest.raises(TLStudioError, match="out of range"):
        training_stages(TrainConfig("d", freeze="9"), 6)


# ----------------------------------------------------------------------- learning rates


def test_the_spread_matches_fastais_worked_example():
    # fastai: even_mults(1e-5, 1e-3, 3) gives a ResNet's three groups 1e-5, 1e-4, 1e-3.
    assert even_mults(1e-5, 1e-3, 3) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert even_mults(1e-5, 1e-3, 1) == [1e-3]


def test_every_group_gets_its_rate_and_frozen_ones_the_lowest():
    model, _ = create_model("test_efficientnet", 3, pretrained=False)
    groups = layer_groups(model)  # 6 backbone groups and the head
    rates = group_learning_rates(groups, 3, 1e-2, 1e-3)
    names = [g.name for g in groups]
    # Four trainable groups (3, 4, 5, head) from 1e-5 to 1e-2: a factor of 10 per group.
    assert [rates[n] for n in names[3:]] == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2])
    assert [rates[n] for n in names[:3]] == pytest.approx([1e-5] * 3)
    assert group_learning_rates(groups, 6, 1e-2, 0.1)["head"] == 1e-2  # head only: full rate


def test_the_optimizer_holds_each_trainable_group_at_its_rate_without_decay_on_norms():
    model, _ = create_model("test_efficientnet", 3, pretrained=False)
    groups = layer_groups(model)
    apply_freeze(model, 4)
    optimizer = build_optimizer(model, groups, 4, 1e-2, 0.01, 0.05)
    by_name: dict[str, set] = {}
    for group in optimizer.param_groups:
        by_name.setdefault(group["name"], set()).add((group["lr"], group["weight_decay"]))
        assert all(p.requires_grad for p in group["params"])
    assert list(by_name) == [groups[4].name, groups[5].name, "head"]
    assert by_name["head"] == {(1e-2, 0.05), (1e-2, 0.0)}
    (lowest,) = {lr for lr, _ in by_name[groups[4].name]}
    assert lowest == pytest.approx(1e-4)
    trained = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert trained == sum(g.num_params for g in groups[4:])


# --------------------------------------------------------------------------------- warm-up


def test_warm_up_takes_at_most_a_quarter_of_a_short_run():
    assert warmup_steps(1.0, 10, total_steps=20) == 5  # 1 of 2 epochs asked; a quarter given
    assert warmup_steps(1.0, 10, total_steps=100) == 10  # a long run gets what it asks
    assert warmup_steps(0.0, 10, total_steps=100) == 0
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine_schedule(optimizer, warmup_steps(1.0, 10, 20), 20)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert max(rates) == rates[5] > 0.99  # at full rate after a quarter of the run
    assert rates[-1] < 0.05


# ------------------------------------------------------------------- what really trains


def _is_trainable(model, group, norms) -> bool:
    params = dict(model.named_parameters())
    return all(params[n].requires_grad for n in group.param_names if n not in norms)


def test_gradual_unfreezing_unfreezes_the_expected_groups_at_the_expected_epochs(
    tiny_dataset, tmp_path, monkeypatch
):
    seen = []
    original = Trainer.train_one_epoch

    def spy(self, epoch, loader, optimizer, scheduler):
        groups = self.plan.freeze.groups
        norms = norm_param_names(self.model)
        params = dict(self.model.named_parameters())
        conv_groups = {  # optimiser groups holding weights that are not norm layers'
            g["name"]
            for g in optimizer.param_groups
            if any(p is params[n] for n in params if n not in norms for p in g["params"])
        }
        seen.append(
            SimpleNamespace(
                trainable=[g.name for g in groups if _is_trainable(self.model, g, norms)],
                in_optimizer=conv_groups,
                norms_train=all(params[n].requires_grad for n in norms),
                rates={g["name"]: g["lr"] for g in optimizer.param_groups},
                fresh=not optimizer.state,
            )
        )
        return original(self, epoch, loader, optimizer, scheduler)

    monkeypatch.setattr(Trainer, "train_one_epoch", spy)
    config = tiny_config(tiny_dataset, mode=GRADUAL, freeze=None, epochs=4, lr=1e-2)
    assert train(config, tmp_path / "run") == "completed"

    names = [
        g.name for g in layer_groups(create_model("test_efficientnet", 3, pretrained=False)[0])
    ]
    # 6 backbone groups, 4 epochs: stages freeze 6, 4, 2, then 0 groups.
    expected = [names[6:], names[4:], names[2:], names]
    assert [s.trainable for s in seen] == expected
    assert [s.in_optimizer for s in seen] == [set(e) for e in expected]
    assert all(s.norms_train for s in seen)  # fastai's train_bn: norm layers always train
    assert all(s.fresh for s in seen)  # each stage starts with a fresh optimiser state
    assert seen[0].rates["head"] == 1e-2 and seen[0].rates[names[0]] == pytest.approx(1e-3)
    assert seen[1].rates[names[4]] == pytest.approx(1e-3)  # the lowest trainable group
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [row["stage"] for row in history] == [1, 2, 3, 4]
    summary = summarize_run(tmp_path / "run")
    assert "gradual unfreezing to full fine-tune" in summary.title


def test_a_fixed_fine_tune_trains_only_the_top_groups_with_frozen_norms_still(
    tiny_dataset, tmp_path, monkeypatch
):
    seen = []
    original = Trainer.train_one_epoch

    def spy(self, epoch, loader, optimizer, scheduler):
        seen.append({g["name"] for g in optimizer.param_groups})
        return original(self, epoch, loader, optimizer, scheduler)

    monkeypatch.setattr(Trainer, "train_one_epoch", spy)
    assert train(tiny_config(tiny_dataset, freeze="4", epochs=2), tmp_path / "run") == "completed"
    names = [
        g.name for g in layer_groups(create_model("test_efficientnet", 3, pretrained=False)[0])
    ]
    assert seen == [set(names[4:])] * 2
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert {row["stage"] for row in history} == {1}


def test_early_stopping_waits_for_the_last_stage():
    trainer = SimpleNamespace(config=SimpleNamespace(early_stopping_patience=1))
    rows = [{"val_loss": 1.0}, {"val_loss": 2.0}]
    assert Trainer._stagnated(trainer, rows)
    assert not Trainer._stagnated(trainer, rows[1:])  # a stage's first epoch never stops it


# ---------------------------------------------------------------------------------- chart


def test_the_live_chart_marks_where_each_stage_begins():
    history = [{"epoch": e, "stage": s, "val_loss": 1.0, "val_accuracy": 0.5} for e, s in
               [(1, 1), (2, 2), (3, 3), (4, 3)]]  # fmt: skip
    assert stage_starts(history) == [(1.0, 2), (2.0, 3)]
    assert stage_starts([{"epoch": 1}, {"epoch": 2}]) == []  # older runs: no stages
    snapshot = SimpleNamespace(batch_losses=[(0.5, 1.0)], history=tuple(history))
    for figure in training_figures(snapshot):
        lines = [s for s in figure.layout.shapes if s.type == "line"]
        assert [line.x0 for line in lines] == [1.0, 2.0]
        assert [a.text for a in figure.layout.annotations] == ["stage 2", "stage 3"]


# -------------------------------------------------------------------------------------- CLI


def _args(*flags: str):
    return build_parser().parse_args(["train", "data", "--out", "run", *flags])


def test_cli_defaults_come_from_train_config_and_modes_set_the_freeze():
    config = config_from_args(_args())
    assert config == TrainConfig(data="data", num_workers=-1)
    assert config.backbone_lr_scale == DEFAULTS.backbone_lr_scale
    gradual = config_from_args(
        _args("--mode", "gradual", "--freeze", "2", "--lowest-lr-fraction", "0.01",
              "--weight-decay", "0", "--warmup-epochs", "0.5", "--label-smoothing", "0.1")
    )  # fmt: skip
    assert (gradual.mode, gradual.freeze, gradual.backbone_lr_scale) == (GRADUAL, "2", 0.01)
    assert (gradual.weight_decay, gradual.warmup_epochs, gradual.label_smoothing) == (0, 0.5, 0.1)
    assert config_from_args(_args("--freeze", "3")).mode == FINE_TUNE  # as before modes
    assert config_from_args(_args("--mode", "full-fine-tune")).freeze == "none"
    with pytest.raises(UsageError, match="not '2'"):
        config_from_args(_args("--mode", "full-fine-tune", "--freeze", "2"))
    with pytest.raises(UsageError, match="needs a freeze depth"):
        config_from_args(_args("--mode", "fine-tune"))


# --------------------------------------------------------------------------- augmentation


def test_the_preview_shows_what_each_level_does_with_the_trainers_transforms():
    prep = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    images = [make_image((48, 40), (200, 30, 30), seed=i) for i in range(2)]
    random.seed(123)
    before = random.random()
    random.seed(123)
    preview = augmentation_preview(prep, images, seed=1)
    assert random.random() == before  # the global random state is left alone
    assert list(preview) == ["none", "light", "strong"]
    assert all(
        a.shape == (32, 32, 3) and a.dtype.name == "uint8" for v in preview.values() for a in v
    )
    # "none" is the evaluation transform, the same every time; "strong" changes with the seed.
    again = augmentation_preview(prep, images, seed=2)
    assert (again["none"][0] == preview["none"][0]).all()
    assert not (again["strong"][0] == preview["strong"][0]).all()
    assert (augmentation_preview(prep, images, seed=1)["strong"][0] == preview["strong"][0]).all()
    # "none" undone is the centre crop of the image itself: a red picture stays red.
    red, green, blue = preview["none"][0].reshape(-1, 3).mean(0)
    assert red > 150 and green < 80 and blue < 80
