"""Shared fixtures: tiny labelled image folders and zips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_image_folder, make_zip

TINY_CLASSES = {"red": 6, "green": 6, "blue": 6}


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A folder of 3 classes (red, green, blue) with 6 distinct 48x40 PNGs each."""
    return make_image_folder(tmp_path / "tiny", TINY_CLASSES)


@pytest.fixture
def tiny_dataset_zip(tiny_dataset: Path, tmp_path: Path) -> Path:
    """``tiny_dataset`` zipped inside a single top folder ``tiny/``."""
    return make_zip(tiny_dataset, tmp_path / "tiny.zip", wrap="tiny")
