"""Figure builders: the right traces and points for the data given, no browser needed."""

from types import SimpleNamespace

import pandas as pd
import plotly.graph_objects as go
import pytest

from tl_core import figures

HISTORY = [
    {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75},
    {"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.6, "val_loss": 0.8, "val_accuracy": 0.55},
]


def test_class_counts_figure_has_one_bar_per_class_in_order():
    fig = figures.class_counts_figure({"cats": 12, "dogs": 7, "owls": 3})
    assert isinstance(fig, go.Figure)
    (bar,) = fig.data
    assert list(bar.x) == ["cats", "dogs", "owls"]
    assert list(bar.y) == [12, 7, 3]


def test_loss_figure_draws_batches_as_a_line_and_validation_per_epoch_sorted():
    batches = [(0.25, 1.2), (0.5, 1.0), (0.75, 0.9), (1.0, 0.8)]
    fig = figures.loss_figure(batches, HISTORY)
    train, val = fig.data
    assert list(train.x) == [0.25, 0.5, 0.75, 1.0] and list(train.y) == [1.2, 1.0, 0.9, 0.8]
    assert list(val.x) == [1, 2] and list(val.y) == [0.8, 0.6]
    assert "batch" in train.name and "validation" in val.name


def test_the_latest_batch_loss_is_a_visible_dot_even_alone():
    # A line through one point draws nothing: the first loss would be invisible.
    (first,) = figures.loss_figure([(0.1, 1.4)], []).data
    assert "markers" in first.mode and list(first.marker.size) == [figures.LATEST_BATCH_MARKER_SIZE]
    (later,) = figures.loss_figure([(0.1, 1.4), (0.2, 1.3), (0.3, 1.1)], []).data
    assert list(later.marker.size) == [0, 0, figures.LATEST_BATCH_MARKER_SIZE]


def test_loss_figure_falls_back_to_epoch_training_loss_without_batches():
    fig = figures.loss_figure([], pd.DataFrame(HISTORY))
    assert [t.name for t in fig.data] == ["training (per epoch)", "validation (per epoch)"]
    assert list(fig.data[0].y) == [0.9, 0.5]


def test_loss_figure_of_an_empty_job_is_empty_but_valid():
    assert len(figures.loss_figure([], []).data) == 0


def test_accuracy_figure_plots_both_curves():
    fig = figures.accuracy_figure(HISTORY)
    assert [t.name for t in fig.data] == ["training", "validation"]
    assert list(fig.data[1].y) == [0.55, 0.75]
    assert fig.layout.yaxis.tickformat == ".0%"


def test_training_figures_read_a_snapshot():
    snap = SimpleNamespace(batch_losses=((0.5, 2.0), (1.0, 1.5)), history=tuple(HISTORY))
    loss, accuracy = figures.training_figures(snap)
    assert list(loss.data[0].y) == [2.0, 1.5]
    assert len(accuracy.data) == 2


def confusion():
    labels = ["cat", "dog", "owl"]
    return pd.DataFrame([[5, 1, 0], [2, 4, 0], [0, 0, 3]], index=labels, columns=labels)


def test_confusion_figure_heatmap_and_one_pickable_marker_per_cell():
    fig = figures.confusion_figure(confusion())
    heatmap, picker = fig.data
    assert heatmap.type == "heatmap"
    assert [list(row) for row in heatmap.z] == [[5, 1, 0], [2, 4, 0], [0, 0, 3]]
    assert list(heatmap.y) == ["cat", "dog", "owl"]
    assert picker.name == figures.CONFUSION_PICKER
    assert len(picker.x) == 9
    # The marker at true "dog", predicted "cat" carries that cell's labels.
    index = list(zip(picker.y, picker.x, strict=True)).index(("dog", "cat"))
    assert list(picker.customdata[index]) == ["dog", "cat"]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({"points": [{"x": "cat", "y": "dog", "curve_number": 1}]}, ("dog", "cat")),
        ({"points": []}, None),
        (None, None),
        ({"points": [{"point_index": 3}]}, None),
    ],
)
def test_confusion_cell_from_selection(selection, expected):
    assert figures.confusion_cell_from_selection(selection) == expected


def test_per_class_figure_groups_three_scores():
    per_class = pd.DataFrame(
        {
            "label": ["a", "b"],
            "precision": [1.0, 0.5],
            "recall": [0.5, 1.0],
            "f1": [0.67, 0.67],
            "support": [2, 2],
        }
    )
    fig = figures.per_class_figure(per_class)
    assert [t.name for t in fig.data] == ["precision", "recall", "f1"]
    assert list(fig.data[1].y) == [0.5, 1.0]


def test_top_k_figure_lists_most_probable_first():
    fig = figures.top_k_figure([("owl", 0.7), ("cat", 0.2), ("dog", 0.1)])
    (bar,) = fig.data
    assert list(bar.y) == ["owl", "cat", "dog"]
    assert list(bar.text) == ["70.0%", "20.0%", "10.0%"]
    assert fig.layout.yaxis.autorange == "reversed"


def test_top_k_figure_axis_is_labelled_and_fixed_to_0_100_percent():
    fig = figures.top_k_figure([("owl", 0.3), ("cat", 0.2)])
    assert fig.layout.xaxis.title.text == "probability"
    assert tuple(fig.layout.xaxis.range) == (0, 1) and fig.layout.xaxis.tickformat == ".0%"
    assert fig.layout.xaxis.fixedrange and fig.layout.dragmode is False


def test_freeze_figure_colours_frozen_groups():
    groups = [
        SimpleNamespace(name=n, num_params=p)
        for n, p in (("stem", 500), ("blocks.0", 5_000), ("blocks.1", 90_000), ("head", 1_300))
    ]
    fig = figures.freeze_figure(groups, frozen=2)
    (bar,) = fig.data
    assert list(bar.x) == [500, 5_000, 90_000, 1_300]
    colors = list(bar.marker.color)
    assert colors[:2] == [figures.FROZEN_COLOR] * 2
    assert colors[2:] == [figures.TRAINABLE_COLOR] * 2
    assert fig.layout.xaxis.type == "log"


def test_freeze_figure_is_a_fixed_diagram_with_one_short_tick_per_power_of_ten():
    groups = [SimpleNamespace(name=n, num_params=p) for n, p in (("stem", 900), ("head", 2e6))]
    fig = figures.freeze_figure(groups, frozen=1)
    axis = fig.layout.xaxis
    assert axis.type == "log" and axis.dtick == 1 and axis.tickformat == "~s"
    assert fig.data[0].texttemplate  # each bar says its count
    assert axis.fixedrange and fig.layout.yaxis.fixedrange and fig.layout.dragmode is False
    assert figures.STATIC_CHART_CONFIG["displayModeBar"] is False


def test_class_counts_figure_is_a_fixed_diagram():
    fig = figures.class_counts_figure({"cats": 2, "dogs": 3})
    assert fig.layout.xaxis.fixedrange and fig.layout.dragmode is False
