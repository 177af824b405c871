"""Transfer learning on real images with the real, offline default backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tl_core.config import DEFAULT_BACKBONE, TrainConfig
from tl_core.training import train

DIGITS = {0: "zero", 1: "one", 4: "four", 7: "seven"}


@pytest.fixture
def handwritten_digits(tmp_path):
    """Real handwritten digits (scikit-learn's scans), 20 per class, as 64-pixel PNG files."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "digits"
    for digit, name in DIGITS.items():
        (root / name).mkdir(parents=True)
        for index in np.flatnonzero(digits.target == digit)[:20]:
            ink = (digits.images[index] / 16 * 255).astype(np.uint8)
            image = Image.fromarray(255 - ink).resize((64, 64), Image.Resampling.BICUBIC)
            image.save(root / name / f"{index}.png")
    return root


@pytest.mark.slow
def test_the_default_backbone_learns_real_digits_far_above_chance(handwritten_digits, tmp_path):
    config = TrainConfig(
        data=str(handwritten_digits),
        backbone=DEFAULT_BACKBONE,
        image_size=128,
        epochs=10,
        early_stopping_patience=0,
        device="cpu",
    )
    assert train(config, tmp_path / "run") == "completed"

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["weights_source"].startswith("package")
    chance = 1 / len(DIGITS)
    assert metrics["best_val_accuracy"] >= 3 * chance  # 75% where guessing gives 25%
