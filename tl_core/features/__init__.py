"""Backbone features: pooled features of a batch, the on-disk store keyed by file hash, one pass
over a list of images through the store, and the frozen leading layers' outputs.

Modules (each says what it holds in its own docstring):
    frozen_prefix, image_pass, pooled, store
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "frozen_prefix": (
            "ActivationStore",
            "PrefixSplit",
            "compute_prefix_outputs",
            "split_frozen_prefix",
        ),
        "image_pass": (
            "Progress",
            "Tracker",
            "backbone_features",
        ),
        "pooled": (
            "BatchFeatures",
            "classify_features",
            "extract_features",
            "pooled_features",
        ),
        "store": (
            "FEATURE_CACHE_ENV",
            "FeatureKey",
            "FeatureRows",
            "FeatureStore",
            "KeyedStore",
            "StoredFeatures",
            "default_cache_dir",
            "feature_key_for",
            "file_digest",
        ),
    },
)
