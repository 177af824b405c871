"""Backbones: the catalog, creating a model, layer groups and freezing, weight sources,
preprocessing, batch norms folded for forward-only passes.

Modules (each says what it holds in its own docstring):
    batchnorm_folding, catalog, creation, freezing, grouping, hub, preprocessing, weights
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "batchnorm_folding": (
            "FOLDABLE_NORMS",
            "conv_norm_pairs",
            "folded_copy",
            "probe_images",
        ),
        "catalog": (
            "CATALOG",
            "SPEED_HINTS",
            "catalog_entry",
            "list_backbones",
        ),
        "creation": (
            "create_model",
            "load_pretrained_imagenet",
            "resolve_backbone_name",
        ),
        "freezing": (
            "FreezeSummary",
            "apply_freeze",
            "in_eval_mode",
            "norm_param_names",
            "set_train_mode",
        ),
        "grouping": (
            "LayerGroup",
            "layer_groups",
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
