"""Training: the plan, recipes and stages, optimiser and schedules, class weights, data loaders,
the training step, the trainer (the one loop), a whole run, the learning-rate finder, several
processes.

Modules (each says what it holds in its own docstring):
    class_weights, distributed, epoch_scores, feature_loaders, features_first_pass, loaders,
    lost_processes, lr_finder, multilabel_results, optim, plan, recipes, reliability, steps,
    torchrun, trainer, training_run
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "class_weights": (
            "balanced_weights",
            "class_weighting",
            "tag_weighting",
        ),
        "feature_loaders": (
            "cached_feature_loaders",
            "feature_source_loaders",
            "plan_feature_key",
        ),
        "features_first_pass": ("features_on_first_pass",),
        "loaders": (
            "frozen_prefix_split",
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
        "steps": (
            "TrainingSteps",
            "backward_and_step",
            "grad_scaler",
        ),
        "trainer": ("Trainer",),
        "training_run": (
            "build_loaders",
            "train",
        ),
    },
)
