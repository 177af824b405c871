"""The training settings (one frozen dataclass, read and written as config.json's "train") and
the defaults that the app and the command line share.

Modules (each says what it holds in its own docstring):
    config_file, defaults, freeze, train_config
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "config_file": (
            "read_train_config",
            "write_train_config",
        ),
        "defaults": (
            "ADVISOR_FOLDS",
            "ADVISOR_MAX_IMAGES",
            "LR_FINDER_STEPS",
            "PREDICT_TOP_K",
            "SWEEP_EPOCHS",
        ),
        "freeze": (
            "FreezeDepth",
            "freeze_option",
            "frozen_words",
            "gradual_words",
            "parse_freeze",
        ),
        "train_config": (
            "AUGMENT_CHOICES",
            "AUTO_CLASS_WEIGHTING_RATIO",
            "CLASS_WEIGHTING_CHOICES",
            "DEFAULT_BACKBONE",
            "DEVICE_CHOICES",
            "FEATURE_EXTRACTION",
            "FINE_TUNE",
            "FULL_FINE_TUNE",
            "GRADUAL",
            "MODES",
            "TrainConfig",
            "check_mode_freeze",
        ),
    },
)
