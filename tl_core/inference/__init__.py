"""Using a trained run: predictions, evaluation on labelled images, saliency maps.

Modules (each says what it holds in its own docstring):
    evaluation, predict, saliency
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "evaluation": (
            "Evaluation",
            "build_evaluation",
            "class_summary",
            "evaluate_run",
            "per_class_scores",
            "recorded_validation_scores",
            "split_counts",
        ),
        "predict": (
            "Predictor",
            "collect_image_paths",
            "predictions_frame",
        ),
        "saliency": (
            "INFERNO",
            "explain_image",
            "overlay",
            "saliency_map",
            "split_eval_transform",
        ),
    },
)
