"""The learning-rate finder: fastai's sweep, smoothing, stop rule and valley suggestion."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.training import tiny_config
from tl_core.cli.main import main
from tl_core.common import BatchStats, TrainingObserver
from tl_core.models import create_model, set_train_mode
from tl_core.training import (
    TrainingSteps,
    backward_and_step,
    find_learning_rate,
    grad_scaler,
    suggest,
    sweep_learning_rates,
    train,
    valley,
)
from tl_core.training import steps as steps_module


def test_valley_picks_a_third_plus_a_sixth_into_the_longest_descent():
    # Flat for 10 points, then falling for 30, then rising: the descent runs from 9 to 39.
    losses = [5.0] * 10 + [5.0 - 0.1 * i for i in range(1, 31)] + [2.0 + i for i in range(10)]
    index = valley(losses)
    # fastai counts the run from one point before its first (8), over 31 sections of it:
    # start + int(31 / 3) + int(31 / 3 / 2).
    assert index == 8 + 10 + 5
    assert losses[index] < losses[9]


def test_the_suggestion_skips_the_first_tenth_and_the_last_five_and_stops_at_nan():
    lrs = [10 ** (-7 + i / 10) for i in range(100)]
    losses = [1.0 - i / 100 for i in range(100)]
    assert suggest(lrs, losses, 100) == 10 + valley(losses[10:-5])
    losses[30] = math.nan
    assert suggest(lrs, losses, 100) == 10 + valley(losses[10:30])
    assert suggest(lrs[:12], losses[:12], 100) is None  # too short to read


def linear_regression(scale: float = 1.0, n: int = 512, dim: int = 8):
    """Noise-free least squares with inputs of variance ``scale**2``.

    The mean squared error's Hessian is 2·scale²·I: plain gradient descent converges for
    rates below 1/scale² and diverges above; 0.5/scale² is the best.
    """
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, dim, generator=generator) * scale
    targets = inputs @ torch.randn(dim, 1, generator=generator)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=64, shuffle=True,
                        generator=generator)  # fmt: skip
    return torch.nn.Linear(dim, 1, bias=False), loader


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_the_suggestion_lands_below_the_known_divergence_point(scale):
    model, loader = linear_regression(scale)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    mse = torch.nn.MSELoss()
    result = sweep_learning_rates(
        model, optimizer, loader, lambda x, y: mse(model(x), y), torch.device("cpu")
    )
    stable = 1 / scale**2  # above this rate gradient descent diverges
    assert result.diverged and result.lrs[-1] > stable  # it stopped once the loss blew up
    # The suggestion learns fast yet safely: within two decades below the stability limit.
    assert stable / 100 <= result.suggestion <= stable


def test_the_model_and_optimizer_are_restored_after_the_sweep(tiny_dataset):
    model, _ = create_model("test_efficientnet", 3, pretrained=False)
    set_train_mode(model)
    model.get_classifier().eval()  # an unusual mix of modes, to see it restored
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(16, 3, 32, 32)
    labels = torch.arange(16) % 3
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()  # a state to keep: Adam moments after one step
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    modes = [m.training for m in model.modules()]
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)

    result = sweep_learning_rates(
        model,
        optimizer,
        loader,
        lambda x, y: torch.nn.functional.cross_entropy(model(x), y),
        torch.device("cpu"),
        num_it=20,
    )

    assert len(result.lrs) >= 2  # it trained (the loader was restarted for 20 batches)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    state = optimizer.state_dict()["state"][0]
    assert all(torch.equal(moments[k], state[k]) for k in moments)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3]
    assert [m.training for m in model.modules()] == modes


def test_a_recipe_sweeps_the_heads_rate_on_cached_features(tiny_dataset):
    config = tiny_config(tiny_dataset, freeze="all", augment="auto")
    result = find_learning_rate(config, num_it=40)
    assert len(result.lrs) == len(result.losses) >= 30
    assert result.lrs[0] == pytest.approx(1e-7)
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:], strict=False))
    assert result.suggestion is not None and 1e-6 < result.suggestion < 10


def test_lr_find_on_the_command_line_prints_the_curve_and_the_rate(capsys, tiny_dataset):
    code = main(
        ["lr-find", str(tiny_dataset), "--backbone", "test_efficientnet", "--no-pretrained",
         "--image-size", "32", "--batch-size", "8", "--device", "cpu", "--num-it", "30",
         "--quiet"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "learning rate" in out and "<- suggested" in out
    rate = out.split("Train with it: --lr ")[1].split()[0]
    assert 1e-6 < float(rate) < 10


# The finder's suggestions on the tiny dataset, recorded with the finder's own loop before it
# took the trainer's step (40 batches, seed 0, on the CPU): suggested rate, its index, batches
# swept, whether it diverged, and the smoothed loss at the suggestion. On the CPU there is no
# autocast and no loss scaling; the one difference is the memory layout: the trainer's step
# runs images and model channels-last on x86 CPUs, as the run does, which reorders float
# arithmetic by about 1e-7. The suggestion stays the same and the curve agrees to 1e-5 up to
# it (after a divergence the differences grow, so the last points are not compared).
RECORDED_SWEEPS = {
    "head only, cached features": (
        dict(freeze="all", augment="auto"),
        (0.003981071705534969, 23, 40, False, 1.093327940635263),
    ),
    "whole model on images": (
        dict(freeze="none"),
        (0.001584893192461114, 21, 39, True, 2.029144841110126),
    ),
    "partly frozen, class weights": (
        dict(freeze="2", class_weighting="on"),
        (0.001584893192461114, 21, 40, False, 2.0774286288169823),
    ),
    "gradual unfreezing, first stage": (
        dict(mode="gradual", freeze=None),
        (0.01, 25, 40, False, 2.1582680657178677),
    ),
}


@pytest.mark.parametrize("overrides, recorded", RECORDED_SWEEPS.values(), ids=RECORDED_SWEEPS)
def test_the_finder_suggests_what_it_suggested_before_it_took_the_trainers_step(
    tiny_dataset, overrides, recorded
):
    suggestion, index, batches, diverged, loss_at_suggestion = recorded
    result = find_learning_rate(tiny_config(tiny_dataset, **overrides), num_it=40)
    assert result.suggestion == pytest.approx(suggestion, rel=1e-6)
    assert (result.suggestion_index, len(result.lrs), result.diverged) == (
        index,
        batches,
        diverged,
    )
    assert result.losses[index] == pytest.approx(loss_at_suggestion, rel=1e-5)


class RecordingScaler:
    """Stands in for an enabled ``torch.amp.GradScaler`` (float16 autocast) on the CPU: scales
    the loss by ``factor`` and records each call and the gradients its step receives."""

    def __init__(self, factor: float = 1.0):
        self.factor = factor
        self.calls: list[str] = []
        self.gradients: list[torch.Tensor] = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * self.factor

    def step(self, optimizer):
        self.calls.append("step")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.gradients = [p.grad.clone() for p in params if p.grad is not None]
        for p in params:  # unscale, as GradScaler.step does before stepping
            if p.grad is not None:
                p.grad /= self.factor
        optimizer.step()

    def update(self):
        self.calls.append("update")


def test_a_scaled_step_backpropagates_the_scaled_loss_then_steps_and_updates_the_scale():
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = (
        torch.randn(8, 4, generator=torch.Generator().manual_seed(0)),
        torch.arange(8) % 3,
    )
    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    unscaled = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = RecordingScaler(factor=1024.0)

    backward_and_step(optimizer, loss, scaler)

    assert scaler.calls == ["scale", "step", "update"]
    for seen, expected in zip(scaler.gradients, unscaled, strict=True):
        assert torch.allclose(seen, 1024.0 * expected)  # backward ran on the scaled loss
    for param, old, grad in zip(model.parameters(), before, unscaled, strict=True):
        assert torch.allclose(param.detach(), old - 0.1 * grad)  # the step used true gradients


def test_the_cpu_steps_without_loss_scaling():
    assert not grad_scaler(torch.device("cpu")).is_enabled()


def counting_steps(monkeypatch) -> list[int]:
    """Counts the batches that go through ``TrainingSteps.step``, the trainer's step."""
    calls: list[int] = []
    original = TrainingSteps.step

    def spy(self, optimizer, inputs, targets):
        calls.append(len(targets))
        return original(self, optimizer, inputs, targets)

    monkeypatch.setattr(TrainingSteps, "step", spy)
    return calls


@pytest.mark.parametrize("freeze", ["all", "none"])
def test_the_finder_takes_every_batch_with_the_trainers_step(tiny_dataset, monkeypatch, freeze):
    calls = counting_steps(monkeypatch)
    result = find_learning_rate(tiny_config(tiny_dataset, freeze=freeze), num_it=12)
    assert len(calls) == len(result.lrs) > 0


def test_the_trainer_takes_every_batch_with_the_same_step(tiny_dataset, tmp_path, monkeypatch):
    calls = counting_steps(monkeypatch)
    batches: list[BatchStats] = []

    class Batches(TrainingObserver):
        def on_batch(self, stats: BatchStats) -> None:
            batches.append(stats)

    train(tiny_config(tiny_dataset, epochs=1), tmp_path / "run", Batches())
    assert len(calls) == len(batches) > 0


def test_a_float16_run_sweeps_through_its_loss_scaler(tiny_dataset, monkeypatch):
    # On a GPU without bfloat16 the run scales its loss; the finder's steps must too.
    scalers: list[RecordingScaler] = []

    def float16_scaler(device):
        scalers.append(RecordingScaler())
        return scalers[-1]

    monkeypatch.setattr(steps_module, "grad_scaler", float16_scaler)
    result = find_learning_rate(tiny_config(tiny_dataset, freeze="none"), num_it=12)
    assert len(scalers) == 1
    assert scalers[0].calls == ["scale", "step", "update"] * len(result.lrs)
