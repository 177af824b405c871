"""The Model page's "Advanced training settings": every TrainConfig knob but the backbone.

Each widget has a key, so it keeps its identity (and the user's value) while its default,
read from the saved settings, follows what the user picked.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from tl_core.config import AUGMENT_CHOICES, DEVICE_CHOICES, TrainConfig

IMAGE_SIZES = [None, 96, 128, 160, 192, 224, 256, 288, 320, 384]
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
BATCH_SIZES = [8, 16, 32, 64, 128]
AUGMENT_LABELS = {
    "auto": "auto (none when only the head trains)",
    "none": "none",
    "light": "light (crops, flips)",
    "strong": "strong (adds colour, RandAugment)",
}


def training_settings(saved: TrainConfig) -> dict[str, Any]:
    """Draws the settings, starting from ``saved``; each change reruns the page.

    Returns:
        Keyword arguments for ``TrainConfig.replace``.
    """
    with st.expander("Advanced training settings"):
        left, right = st.columns(2)
        epochs = left.number_input("Epochs", 1, 500, saved.epochs, key="settings_epochs")
        lr = left.select_slider(
            "Learning rate (head)",
            LEARNING_RATES,
            value=saved.lr if saved.lr in LEARNING_RATES else 1e-3,
            format_func="{:g}".format,
            key="settings_lr",
        )
        batch_size = left.select_slider(
            "Batch size",
            BATCH_SIZES,
            value=saved.batch_size if saved.batch_size in BATCH_SIZES else 32,
            key="settings_batch_size",
        )
        image_size = left.selectbox(
            "Image size",
            IMAGE_SIZES,
            index=IMAGE_SIZES.index(saved.image_size) if saved.image_size in IMAGE_SIZES else 0,
            format_func=lambda s: "the backbone's own" if s is None else f"{s} px",
            key="settings_image_size",
        )
        augment = right.selectbox(
            "Augmentation",
            AUGMENT_CHOICES,
            index=AUGMENT_CHOICES.index(saved.augment),
            format_func=AUGMENT_LABELS.get,
            key="settings_augment",
        )
        patience = right.number_input(
            "Early stopping: epochs without improvement (0 = off)",
            0,
            100,
            saved.early_stopping_patience,
            key="settings_patience",
        )
        val_fraction = right.slider(
            "Validation share", 0.1, 0.5, saved.val_fraction, 0.05, key="settings_val_fraction"
        )
        seed = right.number_input("Random seed", 0, 2**31 - 1, saved.seed, key="settings_seed")
        device = right.selectbox(
            "Device",
            DEVICE_CHOICES,
            index=DEVICE_CHOICES.index(saved.device),
            key="settings_device",
        )
    return {
        "epochs": int(epochs),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "image_size": image_size,
        "augment": augment,
        "early_stopping_patience": int(patience),
        "val_fraction": float(val_fraction),
        "seed": int(seed),
        "device": device,
    }
