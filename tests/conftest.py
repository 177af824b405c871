"""Shared fixtures: tiny labelled image folders and zips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_image_folder, make_zip
from tl_core.runs import WORKSPACE_ENV, Workspace

TINY_CLASSES = {"red": 6, "green": 6, "blue": 6}


@pytest.fixture
def unfolded(monkeypatch) -> None:
    """Backbone passes run the model itself, without folding its batch norms into a copy.

    For tests that count the images a backbone sees (the fold's probe pass would add one) or
    that compare runs for exactness (folding reorders float arithmetic by about 1e-7 of each
    value, and AdamW turns such differences in gradients near zero into whole-learning-rate
    steps). The folding is tested in tests/test_batchnorm_folding.py.
    """
    from tl_core.features import frozen_prefix
    from tl_core.features import pooled as features

    def unchanged(module, probe, run=None):
        return module

    monkeypatch.setattr(features, "folded_copy", unchanged)
    monkeypatch.setattr(frozen_prefix, "folded_copy", unchanged)


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory) -> Iterator[Workspace]:
    """A workspace of its own for a whole test module: the app finds it through the
    environment, so runs trained once serve every test of the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WORKSPACE_ENV, str(tmp_path_factory.mktemp("app") / "ws"))
        yield Workspace.from_env()


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A folder of 3 classes (red, green, blue) with 6 distinct 48x40 PNGs each."""
    return make_image_folder(tmp_path / "tiny", TINY_CLASSES)


@pytest.fixture
def tiny_dataset_zip(tiny_dataset: Path, tmp_path: Path) -> Path:
    """``tiny_dataset`` zipped inside a single top folder ``tiny/``."""
    return make_zip(tiny_dataset, tmp_path / "tiny.zip", wrap="tiny")
