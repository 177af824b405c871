"""Settings and fixtures for training tiny models quickly in tests."""

from __future__ import annotations

from pathlib import Path

from tl_core.config import TrainConfig


def tiny_config(data: str | Path, **overrides) -> TrainConfig:
    """A config that trains timm's tiny test model from scratch on 32-pixel images in seconds."""
    settings = dict(
        data=str(data),
        backbone="test_efficientnet",
        pretrained=False,
        freeze="none",
        epochs=2,
        batch_size=8,
        lr=3e-3,
        image_size=32,
        augment="none",
        early_stopping_patience=0,
        seed=0,
        device="cpu",
        num_workers=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def train_tiny_run(tmp_path_factory, **overrides) -> Path:
    """Trains a tiny 3-class run (red/green/blue images) and returns its folder."""
    from tests.conftest import TINY_CLASSES
    from tests.helpers import make_image_folder
    from tl_core.training import train

    root = tmp_path_factory.mktemp("trained")
    data = make_image_folder(root / "data", TINY_CLASSES)
    run_dir = root / "run"
    train(tiny_config(data, epochs=3, **overrides), run_dir)
    return run_dir
