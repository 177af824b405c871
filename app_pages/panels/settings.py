"""The Model page's "Advanced training settings": every TrainConfig knob but the backbone
and the mode, and a preview of what each augmentation level does to the user's images.

Each widget has a key, so it keeps its identity (and the user's value) while its default,
read from the saved settings, follows what the user picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from app_pages.ui import feedback
from tl_core.common import TLStudioError
from tl_core.config import (
    AUGMENT_CHOICES,
    AUTO_CLASS_WEIGHTING_RATIO,
    CLASS_WEIGHTING_CHOICES,
    DEVICE_CHOICES,
    TrainConfig,
)
from tl_core.data import load_image
from tl_core.models import AUGMENT_LEVELS, Preprocessing, augmentation_preview, create_model

IMAGE_SIZES = [None, 96, 128, 160, 192, 224, 256, 288, 320, 384]
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
LOWEST_LR_FRACTIONS = [0.01, 0.03, 0.1, 0.3, 1.0]
WEIGHT_DECAYS = [0.0, 1e-4, 1e-3, 0.01, 0.05, 0.1]
PREVIEW_IMAGES = 4
PREVIEW_SEED_KEY = "augment_preview_seed"
PREVIEW_LABEL = "Preview augmentation on my images"
BATCH_SIZES = [8, 16, 32, 64, 128]
CLASS_WEIGHTING_LABELS = {
    "auto": f"auto (when the largest class has {AUTO_CLASS_WEIGHTING_RATIO:g}x the smallest's)",
    "on": "on",
    "off": "off",
}
AUGMENT_LABELS = {
    "auto": "auto (none when only the head trains)",
    "none": "none",
    "light": "light (crops, flips)",
    "strong": "strong (adds colour, RandAugment)",
}


def _with(options: list[float], value: float) -> list[float]:
    """The options, plus ``value`` where it is not one of them (e.g. the finder's rate)."""
    return sorted({*options, value})


def training_settings(
    saved: TrainConfig, backbone: str, preview_images: Sequence[str]
) -> dict[str, Any]:
    """Draws the settings, starting from ``saved``; each change reruns the page.

    Args:
        saved: The saved settings, each widget's default.
        backbone: The backbone picked above (its preprocessing drives the preview).
        preview_images: Image files the augmentation preview may show.

    Returns:
        Keyword arguments for ``TrainConfig.replace``.
    """
    with st.expander("Advanced training settings"):
        left, right = st.columns(2)
        epochs = left.number_input("Epochs", 1, 500, saved.epochs, key="settings_epochs")
        lr = left.select_slider(
            "Learning rate (head)",
            _with(LEARNING_RATES, saved.lr),
            value=saved.lr,
            format_func="{:.2g}".format,
            help="The learning-rate finder below suggests one for your images.",
            key="settings_lr",
        )
        lowest_lr = left.select_slider(
            "Lowest group's learning rate (share of the head's)",
            _with(LOWEST_LR_FRACTIONS, saved.backbone_lr_scale),
            value=saved.backbone_lr_scale,
            format_func="{:g}".format,
            help="Trainable layer groups learn at rates that rise in equal steps from this "
            "share of the head's rate (the group nearest the input) to the head's: general "
            "features change least. 1 gives every group the head's rate.",
            key="settings_lr_spread",
        )
        weight_decay = left.select_slider(
            "Weight decay",
            _with(WEIGHT_DECAYS, saved.weight_decay),
            value=saved.weight_decay,
            format_func="{:g}".format,
            help="AdamW's pull of the weights toward zero (never on biases and norm layers).",
            key="settings_weight_decay",
        )
        warmup = left.number_input(
            "Warm-up epochs",
            0.0,
            20.0,
            float(saved.warmup_epochs),
            0.5,
            help="The learning rate rises from near zero over this long, at most a quarter of "
            "the run (of each stage in gradual unfreezing).",
            key="settings_warmup",
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
        label_smoothing = right.slider(
            "Label smoothing",
            0.0,
            0.3,
            float(saved.label_smoothing),
            0.05,
            help="Trains toward slightly softened targets; helps when some labels are wrong.",
            key="settings_label_smoothing",
        )
        class_weighting = right.selectbox(
            "Weight the loss by class",
            CLASS_WEIGHTING_CHOICES,
            index=CLASS_WEIGHTING_CHOICES.index(saved.class_weighting),
            format_func=CLASS_WEIGHTING_LABELS.get,
            help="A small class then counts as much as a big one, so the model does not learn "
            "to ignore it. The Train page shows each class's recall, to see the effect.",
            key="settings_class_weighting",
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
        augmentation_preview_panel(backbone, image_size, preview_images)
    return {
        "epochs": int(epochs),
        "lr": float(lr),
        "backbone_lr_scale": float(lowest_lr),
        "weight_decay": float(weight_decay),
        "warmup_epochs": float(warmup),
        "label_smoothing": float(label_smoothing),
        "class_weighting": class_weighting,
        "batch_size": int(batch_size),
        "image_size": image_size,
        "augment": augment,
        "early_stopping_patience": int(patience),
        "val_fraction": float(val_fraction),
        "seed": int(seed),
        "device": device,
    }


@st.cache_data(max_entries=16, show_spinner="Reading the backbone's preprocessing...")
def preprocessing_of(backbone: str, image_size: int | None) -> Preprocessing:
    # Random weights share the pretrained config (sizes, mean, std); nothing is downloaded.
    model, _ = create_model(backbone, None, pretrained=False)
    return Preprocessing.for_model(model, image_size)


def new_preview_samples() -> None:
    st.session_state[PREVIEW_SEED_KEY] = st.session_state.get(PREVIEW_SEED_KEY, 0) + 1


def augmentation_preview_panel(backbone: str, image_size: int | None, paths: Sequence[str]) -> None:
    """A few of the user's images through each augmentation level's training transform."""
    if not paths or not st.toggle(PREVIEW_LABEL, key="settings_augment_preview"):
        return
    try:
        preprocessing = preprocessing_of(backbone, image_size)
        images = [load_image(path) for path in paths[:PREVIEW_IMAGES]]
    except TLStudioError as error:
        st.caption(f"No preview: {error.message}")
        return
    st.button(
        "New samples",
        on_click=feedback.callback(new_preview_samples),
        key="settings_preview_resample",
    )
    preview = augmentation_preview(
        preprocessing, images, AUGMENT_LEVELS, st.session_state.get(PREVIEW_SEED_KEY, 0)
    )
    for level, arrays in preview.items():
        st.caption(AUGMENT_LABELS[level])
        with st.container(horizontal=True, gap="small"):
            for array in arrays:
                st.image(array, width=112)
