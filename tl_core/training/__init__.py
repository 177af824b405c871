"""Training: the plan, recipes and stages, optimiser and schedules, class weights, data loaders,
the trainer (the one loop), the learning-rate finder, several processes.

Modules (each says what it holds in its own docstring):
    class_weights, distributed, loaders, lr_finder, optim, plan, recipes, trainer
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "class_weights": (
            "balanced_weights",
            "class_weighting",
        ),
        "loaders": (
            "cached_feature_loaders",
            "feature_source_loaders",
            "features_on_first_pass",
            "frozen_prefix_split",
            "plan_feature_key",
            "training_loaders",
        ),
        "lr_finder": (
            "LRFinderResult",
            "LRFinderStopped",
            "find_learning_rate",
            "suggest",
            "sweep_learning_rates",
            "valley",
        ),
        "optim": (
            "build_optimizer",
            "even_mults",
            "group_learning_rates",
            "warmup_cosine_schedule",
            "warmup_steps",
        ),
        "plan": ("prepare_training",),
        "recipes": (
            "MODE_ADVICE",
            "MODE_LABELS",
            "Stage",
            "describe_stages",
            "training_stages",
        ),
        "trainer": (
            "Trainer",
            "train",
        ),
    },
)
