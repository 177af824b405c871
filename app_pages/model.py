"""Model: a pretrained backbone, how much of it to freeze, and the training settings.

Nothing here sits in a form: every change applies at once (the layer-group picture follows
the slider), and whatever the page shows is what the next training run uses.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.panels import advisor, recipes, refusals
from app_pages.panels.settings import training_settings
from app_pages.ui import dataset_view, feedback, inputs, state
from tl_core.analysis import ADVISOR
from tl_core.common import TLStudioError, escape_markdown
from tl_core.config import GRADUAL
from tl_core.figures import STATIC_CHART_CONFIG, freeze_figure
from tl_core.models import LayerGroup, create_model, layer_groups, list_backbones
from tl_core.training import describe_stages, training_stages

st.title("Model")
st.caption("Changes apply as you make them: the next training run uses what this page shows.")
OTHER = "Other timm model..."


@st.cache_data(max_entries=16, show_spinner="Reading the backbone's layers...")
def groups_of(name: str, num_classes: int) -> list[LayerGroup]:
    # Random weights are enough to see the architecture; nothing is downloaded.
    model, _ = create_model(name, num_classes, pretrained=False)
    return layer_groups(model)


dataset = st.session_state.get(state.DATASET_KEY)
if not dataset:
    feedback.empty_state("No dataset yet: choose one first.", state.DATA_PAGE, "Go to Data")
    st.stop()
try:
    report = dataset_view.scan(dataset)
except TLStudioError as error:  # e.g. the folder was deleted since
    feedback.show_error(error)
    st.stop()
if not report.can_train:
    feedback.empty_state(
        "The dataset cannot train yet: fix it first.", state.DATA_PAGE, "Go to Data"
    )
    st.stop()
saved = state.train_config(dataset)
ws = state.workspace()

catalog = {entry.name: entry for entry in list_backbones()}
if report.multi_label:  # the advisor's probe compares accuracy over one class per image
    refusals.refusals(ADVISOR)
else:
    advisor.backbone_advisor(dataset, report, ws.feature_cache)


def stop_unsaved() -> None:
    """Ends the page without saving, saying what training would use meanwhile."""
    meanwhile = (
        f"training uses the settings saved before ({saved.backbone})"
        if state.has_settings()
        else "there are no settings to train with"
    )
    st.info(f"Not saved: until this is settled, {meanwhile}.", icon=":material/info:")
    st.stop()


def backbone_label(name: str) -> str:
    if name == OTHER:
        return name
    info, offline = catalog[name].info, catalog[name].offline_weights
    return (
        f"{name} · {info.params_millions:.1f} M parameters with the 1000-class ImageNet head · "
        f"{info.input_size} px · {info.hint}" + (" · weights offline" if offline else "")
    )


options = [*catalog, OTHER]
start = options.index(saved.backbone if saved.backbone in catalog else OTHER)
# Keys keep each widget's identity while its saved default follows the user's changes.
choice = st.selectbox(
    "Backbone", options, index=start, format_func=backbone_label, key=state.BACKBONE_KEY
)
if choice == OTHER:
    backbone = st.text_input(
        "timm model name",
        value="" if saved.backbone in catalog else saved.backbone,
        placeholder="e.g. regnety_008",
        key=state.TIMM_NAME_KEY,
    ).strip()
    if not backbone:
        stop_unsaved()
else:
    backbone = choice
    entry = catalog[choice]
    st.caption(
        f"{entry.info.family}: {entry.info.description} Weights: "
        f"{entry.weights_source or 'downloaded from the model hub (needs internet)'}."
    )

pretrained = st.toggle(
    "Start from pretrained weights",
    value=saved.pretrained,
    help="Off trains the same network from random weights: the baseline "
    "that shows what transfer learning buys.",
    key="model_pretrained",
)
weights = None
if pretrained:
    upload = inputs.file_uploader(
        "Weights file (optional)",
        inputs.WEIGHTS_UPLOAD_MB,
        type=["safetensors", "pth", "pt", "bin"],
        help="Use it when the weights cannot be downloaded here.",
        key="model_weights_file",
    )
    if upload is not None:
        weights = str(ws.save_upload_once(upload, upload.file_id, upload.name, ws.weights))
    elif (
        saved.weights
        and saved.backbone == backbone
        and st.checkbox(
            f"Keep using {escape_markdown(Path(saved.weights).name)}", value=True, key="model_keep"
        )
    ):
        weights = saved.weights
    if choice != OTHER and not catalog[choice].offline_weights and weights is None:
        st.warning(
            "This backbone's weights are not on this computer: training will try to "
            "download them. Offline? Upload a weights file.",
            icon=":material/cloud_off:",
        )

try:
    groups = groups_of(backbone, len(report.class_names))
except TLStudioError as error:
    feedback.show_error(error)
    stop_unsaved()
n = len(groups) - 1  # the head (last group) always trains
mode, freeze = recipes.choose_mode(saved, n)
frozen = freeze.resolve(n)
trainable = sum(g.num_params for g in groups[frozen:])
total = sum(g.num_params for g in groups)
at_end = " at the end" if mode == GRADUAL else ""
# The catalog counts the 1000-class ImageNet head; this total counts the head that trains.
st.caption(
    f"**{trainable:,}** of {total:,} parameters will train{at_end}, with your new "
    f"{len(report.class_names)}-{'tag' if report.multi_label else 'class'} head in place of "
    "the 1000-class ImageNet head "
    f"({frozen} of {n} backbone groups frozen)."
)
st.plotly_chart(freeze_figure(groups, frozen), key="freeze_figure", config=STATIC_CHART_CONFIG)

first_of_each_class: dict[str, str] = {}
for item in report.items:
    first_of_each_class.setdefault(item.label, str(item.path))
settings = training_settings(saved, backbone, list(first_of_each_class.values()))
try:
    config = saved.replace(
        backbone=backbone,
        weights=weights,
        pretrained=pretrained,
        mode=mode,
        freeze=freeze,
        **settings,
    )
    if mode == GRADUAL:
        st.caption("Gradual unfreezing in " + describe_stages(training_stages(config, n), n) + ".")
except TLStudioError as error:
    feedback.show_error(error)
    stop_unsaved()
state.save_settings(config)
st.success("Saved: the next training run uses these settings.", icon=":material/check_circle:")
recipes.lr_finder(config)
st.page_link(state.TRAIN_PAGE, label="Next: train", icon=":material/arrow_forward:")
