"""Using a trained run: predictions, evaluation on labelled images, saliency maps.

Modules (each says what it holds in its own docstring):
    calibration, evaluation, multilabel_evaluation, multilabel_scores, open_set,
    open_set_scores, predict, prediction_report, reliable_head, saliency, thresholds
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
        "multilabel_evaluation": (
            "MultiLabelEvaluation",
            "build_multi_label_evaluation",
            "multi_hot",
            "tagged_images",
            "tagged_validation_images",
        ),
        "multilabel_scores": (
            "DEFAULT_THRESHOLD",
            "METRIC_NAME",
            "average_precision",
            "average_precisions",
            "best_thresholds",
            "f1_from_counts",
            "macro_f1",
            "mean_average_precision",
            "tag_counts",
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
            "NO_TAG",
            "Predictor",
            "collect_image_paths",
            "predictions_frame",
            "tags_text",
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
            "MULTI_LABEL_OUTPUT_NAMES",
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
        "thresholds": (
            "NOT_CALIBRATED",
            "choose_thresholds",
            "read_thresholds",
            "set_thresholds",
            "threshold_record",
            "write_thresholds",
        ),
    },
)
