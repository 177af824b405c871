"""The Train page's live charts are built again only when a new batch or epoch arrives."""

from __future__ import annotations

import dataclasses

from app_pages.panels import live
from tests.training import tiny_config
from tl_core.jobs import TrainingJob


def test_live_figures_are_reused_until_what_they_show_changes(tiny_dataset, tmp_path):
    snap = TrainingJob(tiny_config(tiny_dataset), tmp_path / "run").snapshot()  # not started
    first = live.live_figures(snap)
    assert live.live_figures(dataclasses.replace(snap, step=3)) is first  # nothing new to draw

    one_batch = dataclasses.replace(snap, batch_losses=((0.1, 1.4),))
    drawn = live.live_figures(one_batch)
    assert drawn is not first
    (line,) = drawn[0].data
    assert list(line.y) == [1.4]
    assert live.live_figures(dataclasses.replace(one_batch, eta_seconds=5.0)) is drawn

    epoch = {"epoch": 1, "train_loss": 1.2, "val_loss": 1.1, "train_accuracy": 0.5,
             "val_accuracy": 0.6}  # fmt: skip
    with_epoch = live.live_figures(dataclasses.replace(one_batch, history=(epoch,)))
    assert with_epoch is not drawn and len(with_epoch[0].data) == 2  # validation loss added
    # The list of batch losses is thinned when it grows long: same length, new last point.
    thinned = dataclasses.replace(one_batch, batch_losses=((0.2, 1.3),))
    assert list(live.live_figures(thinned)[0].data[0].y) == [1.3]
