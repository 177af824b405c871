"""Backbones: the catalog, creating a model, layer groups and freezing, weight sources,
preprocessing, batch norms folded for forward-only passes.

Modules (each says what it holds in its own docstring):
    backbones, batchnorm_folding, preprocessing, weights
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "backbones": (
            "CATALOG",
            "FreezeSummary",
            "LayerGroup",
            "SPEED_HINTS",
            "apply_freeze",
            "catalog_entry",
            "create_model",
            "in_eval_mode",
            "layer_groups",
            "list_backbones",
            "load_pretrained_imagenet",
            "norm_param_names",
            "parse_freeze",
            "resolve_backbone_name",
            "set_train_mode",
        ),
        "batchnorm_folding": (
            "FOLDABLE_NORMS",
            "conv_norm_pairs",
            "folded_copy",
            "probe_images",
        ),
        "preprocessing": (
            "AUGMENT_LEVELS",
            "Preprocessing",
            "augmentation_preview",
        ),
        "weights": (
            "classifier_prefixes",
            "is_classifier_key",
            "load_pretrained_model",
        ),
    },
)
