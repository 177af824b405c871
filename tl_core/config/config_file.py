"""A training's settings as a JSON file: how a training is handed to another process
(``tl-studio train --config FILE``, as the multi-GPU job and torchrun's processes start it)."""

from __future__ import annotations

import json
from pathlib import Path

from tl_core.common import TLStudioError
from tl_core.config.train_config import TrainConfig

_HINT = (
    "Give a JSON file of training settings, as TrainConfig.to_dict() writes them, "
    "or a run's config.json."
)


def write_train_config(config: TrainConfig, path: str | Path) -> Path:
    """Writes ``config`` as JSON (``TrainConfig.to_dict()``) to ``path``; returns ``path``."""
    path = Path(path)
    path.write_text(json.dumps(config.to_dict(), indent=2))
    return path


def read_train_config(path: str | Path) -> TrainConfig:
    """Reads the settings :func:`write_train_config` wrote, or a run's config.json (its "train"
    settings, so that a run's recipe can be trained again).

    Raises:
        TLStudioError: The file cannot be read, is not JSON of settings, or the settings are
            invalid.
    """
    path = Path(path)
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        raise TLStudioError(f"The settings file {path} does not exist.", _HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TLStudioError(f"Cannot read the settings file {path}: {exc}.", _HINT) from None
    except json.JSONDecodeError as exc:
        raise TLStudioError(f"The settings file {path} is not valid JSON: {exc}.", _HINT) from None
    if isinstance(settings, dict) and isinstance(settings.get("train"), dict):
        settings = settings["train"]  # a run's config.json
    if not isinstance(settings, dict) or not isinstance(settings.get("data"), str):
        raise TLStudioError(f"The settings file {path} holds no training settings.", _HINT)
    try:
        return TrainConfig.from_dict(settings)
    except TypeError as exc:  # a setting of the wrong kind, e.g. a list for a number
        raise TLStudioError(
            f"The settings file {path} has a setting of the wrong kind.", _HINT
        ) from exc
    except TLStudioError as exc:
        raise TLStudioError(f"{path}: {exc.message}", exc.hint or _HINT) from None
