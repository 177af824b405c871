"""The training settings (one frozen dataclass, read and written as config.json's "train"), the
freeze depth they carry, and the defaults that the app and the command line share.

Modules (each says what it holds in its own docstring):
    freeze, train_config
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
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
