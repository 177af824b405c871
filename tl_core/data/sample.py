"""The built-in sample dataset: a few shape classes drawn by ``assets/make_sample_dataset.py``."""

from __future__ import annotations

from pathlib import Path

from tl_core.common import DatasetError

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATASET_DIR = REPO_ROOT / "assets" / "sample_dataset"


def sample_dataset_path() -> Path:
    """The folder of the built-in sample dataset (one subfolder per class).

    Raises:
        DatasetError: The folder is missing or holds no class folders, as in an install that
            does not ship the repository's ``assets`` folder.
    """
    if not SAMPLE_DATASET_DIR.is_dir() or not any(p.is_dir() for p in SAMPLE_DATASET_DIR.iterdir()):
        raise DatasetError(
            f"The sample dataset is missing from {SAMPLE_DATASET_DIR}.",
            hint="Run `python assets/make_sample_dataset.py` from the repository to draw it.",
        )
    return SAMPLE_DATASET_DIR
