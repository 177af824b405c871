"""The options that several commands share: argument types, the training recipe's options and
the one conversion from them to a ``TrainConfig``, the feature cache's options, and the help
formatter that shows every default.

Recipe options are stored under the name of the ``TrainConfig`` field they set and stay None
unless given: :func:`config_from_args` then knows what the command line said, takes the rest
from a ``--config`` file or from ``TrainConfig``'s own defaults, and the help shows those.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from tl_core.common import TLStudioError, UsageError
from tl_core.config import (
    AUGMENT_CHOICES,
    AUTO_CLASS_WEIGHTING_RATIO,
    CLASS_WEIGHTING_CHOICES,
    DEVICE_CHOICES,
    MODES,
    TrainConfig,
    check_mode_freeze,
    freeze_option,
)

# One source of truth for defaults: the CLI shows what a bare TrainConfig would use.
DEFAULTS = TrainConfig(data="")
RECIPE_FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig))
DATA_HELP = "folder with one subfolder per class, or a .zip of one"
CONFIG_HELP = (
    "read the training settings from a JSON file, as TrainConfig.to_dict() writes them (a "
    "run's config.json works too: its training settings). An option given beside it replaces "
    "the file's setting: DATA its data, --mode or --freeze its mode and freeze together, "
    "--val-fraction its separate validation folder; the file's other settings stay"
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show; a recipe option (None
    until given) shows ``TrainConfig``'s default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            shown = getattr(action, "shown_default", None)
            return action.help if shown is None else f"{action.help} (default: {shown})"
        return super()._get_help_string(action)


# ---- argument types ----------------------------------------------------------------------------


def _checked(name: str, convert: Callable[[str], float], accept: Callable, problem: str):
    """An argument type: ``convert`` the text, then refuse a value ``accept`` rejects, saying
    ``problem``; argparse names it ``name`` in its messages ("invalid positive_int value")."""

    def parse(text: str):
        value = convert(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name
    return parse


positive_int = _checked("positive_int", int, lambda v: v >= 1, "must be at least 1")
at_least_two = _checked("at_least_two", int, lambda v: v >= 2, "must be at least 2")
non_negative_int = _checked("non_negative_int", int, lambda v: v >= 0, "cannot be negative")
# Every test above and below fails for nan, so nan is refused too.
positive_float = _checked("positive_float", float, lambda v: v > 0, "must be a positive number")
non_negative_float = _checked("non_negative_float", float, lambda v: v >= 0, "cannot be negative")
fraction = _checked("fraction", float, lambda v: 0 < v < 1, "must be between 0 and 1, e.g. 0.2")


# ---- shared flags ------------------------------------------------------------------------------


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")


def add_json_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--json", action="store_true", help=help)


# ---- the training recipe -----------------------------------------------------------------------


def _recipe_option(target, *flags: str, field: str, **kwargs) -> None:
    """An option that sets ``field`` of the config: None unless given, its help showing the
    field's default (``target`` is a parser or a group of one)."""
    if "choices" not in kwargs:  # the option's own name, not the field's, in the usage
        kwargs.setdefault("metavar", flags[0].lstrip("-").replace("-", "_").upper())
    action = target.add_argument(*flags, dest=field, default=None, **kwargs)
    action.shown_default = getattr(DEFAULTS, field)


def add_train_options(
    parser: argparse.ArgumentParser,
    *,
    pretrained_flag: bool = False,
    freeze: bool = True,
    config_file: bool = False,
) -> None:
    """The data argument and the training recipe's options, shared by every command that trains.

    Args:
        parser: The command's parser.
        pretrained_flag: Add ``--no-pretrained`` (random initialisation).
        freeze: Add ``--mode`` and ``--freeze`` (a command that varies the freeze depth adds
            its own).
        config_file: Add ``--config FILE`` (settings from a JSON file); DATA becomes optional.
    """
    if config_file:
        parser.add_argument("data", nargs="?", help=f"{DATA_HELP} (with --config: the file's)")
        parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    else:
        parser.add_argument("data", help=DATA_HELP)
    _recipe_option(parser, "--backbone", field="backbone", help="any timm model name")
    parser.add_argument(
        "--weights", dest="weights", help="weights file (.safetensors or .pth) for the backbone"
    )
    if pretrained_flag:
        parser.add_argument(
            "--no-pretrained",
            dest="pretrained",
            action="store_const",
            const=False,
            help="random initialisation (baseline without transfer)",
        )
    if freeze:
        parser.add_argument(
            "--mode",
            choices=MODES,
            help="feature-extraction: head only; fine-tune: the groups above --freeze K; "
            "full-fine-tune: everything; gradual: head first, then one more group per stage "
            f"(default: what --freeze says, else {DEFAULTS.mode})",
        )
        parser.add_argument(
            "--freeze",
            type=freeze_option,
            help="'all' (head only), 'none', or K leading layer groups; with --mode gradual, "
            "the depth unfreezing stops at (default: what the mode implies)",
        )
    _recipe_option(
        parser, "--epochs", field="epochs", type=positive_int, help="passes over the training set"
    )
    _recipe_option(
        parser, "--batch-size", field="batch_size", type=positive_int, help="images per step"
    )
    _recipe_option(
        parser, "--lr", field="lr", type=positive_float, help="learning rate of the head"
    )
    _recipe_option(
        parser,
        "--lowest-lr-fraction",
        field="backbone_lr_scale",
        type=positive_float,
        help="the lowest trainable group's share of --lr; rates rise geometrically to the "
        "head's (1: one rate everywhere)",
    )
    _recipe_option(
        parser,
        "--weight-decay",
        field="weight_decay",
        type=non_negative_float,
        help="AdamW weight decay",
    )
    _recipe_option(
        parser,
        "--warmup-epochs",
        field="warmup_epochs",
        type=non_negative_float,
        help="linear warm-up, at most a quarter of the run (of each gradual stage)",
    )
    _recipe_option(
        parser,
        "--label-smoothing",
        field="label_smoothing",
        type=non_negative_float,
        help="label smoothing of the loss",
    )
    _recipe_option(
        parser,
        "--class-weighting",
        field="class_weighting",
        choices=CLASS_WEIGHTING_CHOICES,
        help="weight the loss by class so small classes count as much as big ones (auto: "
        f"when the largest class has {AUTO_CLASS_WEIGHTING_RATIO:g}x the smallest's images)",
    )
    parser.add_argument(
        "--image-size",
        dest="image_size",
        type=positive_int,
        help="input size (default: the backbone's)",
    )
    split = parser.add_mutually_exclusive_group()
    _recipe_option(
        split,
        "--val-fraction",
        field="val_fraction",
        type=fraction,
        help="share of each class held out for validation",
    )
    split.add_argument("--val", dest="val_data", metavar="VAL", help="separate validation folder")
    _recipe_option(parser, "--seed", field="seed", type=int, help="seeds the split and training")
    _recipe_option(
        parser,
        "--augment",
        field="augment",
        choices=AUGMENT_CHOICES,
        help="auto: none when only the head trains, light otherwise",
    )
    _recipe_option(
        parser,
        "--patience",
        field="early_stopping_patience",
        type=non_negative_int,
        help="early-stopping patience in epochs (0: off)",
    )
    _recipe_option(
        parser, "--device", field="device", choices=DEVICE_CHOICES, help="where to train"
    )
    _recipe_option(
        parser, "--workers", field="num_workers", type=int, help="data-loading processes"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training settings the command line gives: the one conversion from options to a
    ``TrainConfig`` (a ``--config`` file is read here too).

    The settings of ``--config FILE`` come first; each option given replaces the file's
    setting (``--mode`` and ``--freeze`` as a pair, ``--val-fraction`` the file's validation
    folder); what neither gives is ``TrainConfig``'s default.

    Raises:
        UsageError: The file or the settings are invalid (bad usage: exit 2).
    """
    from tl_core.config import read_train_config

    given = {
        name: getattr(args, name) for name in RECIPE_FIELDS if getattr(args, name, None) is not None
    }
    try:
        if "mode" in given or "freeze" in given:
            given["mode"] = check_mode_freeze(given.get("mode"), given.get("freeze"))
            given.setdefault("freeze", None)  # the mode's own
        if "val_fraction" in given:
            given["val_data"] = None
        if getattr(args, "config", None):
            return read_train_config(args.config).replace(**given)
        if "data" not in given:
            raise UsageError(
                "No data to train on.",
                "Give a folder with one subfolder per class (or a .zip of one), "
                "or a settings file with --config FILE.",
            )
        return TrainConfig(**given)
    except TLStudioError as exc:
        raise UsageError(exc.message, exc.hint) from None


# ---- the feature cache -------------------------------------------------------------------------


def add_feature_cache_options(parser: argparse.ArgumentParser) -> None:
    """--cache-dir and --no-feature-cache, for the commands that train."""
    parser.add_argument(
        "--cache-dir",
        help="where head-only runs (--freeze all, no augmentation) find and keep backbone "
        "features, shared with 'advise' "
        "(default: $TL_STUDIO_FEATURE_CACHE or ~/.cache/tl-studio/features)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="compute every backbone feature afresh and keep none",
    )


def feature_cache_of(args: argparse.Namespace) -> Path | None:
    """The feature cache folder the options ask for (None: no cache)."""
    from tl_core.features import default_cache_dir

    if args.no_feature_cache:
        return None
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()
