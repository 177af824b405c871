"""Using a trained run: predictions, evaluation on labelled images, saliency maps.

Modules (each says what it holds in its own docstring):
    calibration, evaluation, open_set, open_set_scores, predict, prediction_report,
    reliable_head, saliency
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "calibration": (
            "Calibration",
            "CalibrationReport",
            "calibration_report",
            "expected_calibration_error",
            "fit_calibration",
            "fit_temperature",
            "read_calibration",
            "reliability_bins",
            "write_calibration",
        ),
        "evaluation": (
            "Evaluation",
            "build_evaluation",
            "class_summary",
            "evaluate_run",
            "per_class_scores",
            "recorded_validation_scores",
            "split_counts",
        ),
        "open_set": (
            "OpenSetModel",
            "RejectionCost",
            "choose_threshold",
            "fit_open_set",
            "read_open_set",
            "write_open_set",
        ),
        "open_set_scores": (
            "energy_scores",
            "fit_mahalanobis",
            "knn_heldout_scores",
            "knn_scores",
            "mahalanobis_heldout_scores",
            "mahalanobis_scores",
            "max_softmax_scores",
        ),
        "predict": (
            "BatchOutputs",
            "ImagePrediction",
            "Predictor",
            "collect_image_paths",
            "predictions_frame",
        ),
        "prediction_report": (
            "DomainShiftSummary",
            "answer_text",
            "domain_shift_summary",
            "open_set_frame",
            "prediction_rows",
            "unknown_first",
        ),
        "reliable_head": (
            "NetworkWithReliableHead",
            "OUTPUT_NAMES",
            "ReliableHead",
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
