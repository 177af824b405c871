"""Helpers at the bottom of every package: errors as sentences, words and plurals, intervals,
progress, devices, job control, atomic file writes and safe names.

Modules (each says what it holds in its own docstring):
    control, count_progress, devices, errors, faces, failures, files, intervals, logs, outputs,
    text
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "control": (
            "BatchStats",
            "JobControl",
            "PHASE_FEATURES",
            "PHASE_PREPARING",
            "PHASE_SAVING",
            "PHASE_TRAINING",
            "Progress",
            "ProgressMeter",
            "TeeObserver",
            "TrainingObserver",
            "TrainingStopped",
        ),
        "count_progress": (
            "CountProgress",
            "describe",
        ),
        "devices": (
            "autocast_for",
            "describe_device",
            "describe_devices",
            "gpu_count",
            "in_preferred_layout",
            "prefers_channels_last",
            "release_memory",
            "resolve_device",
        ),
        "errors": (
            "DatasetError",
            "RunError",
            "TLStudioError",
            "UsageError",
            "WeightsError",
        ),
        "failures": (
            "REPORT_HINT",
            "explain_failure",
            "explain_os_error",
            "os_error_in",
        ),
        "files": (
            "MAX_NAME_BYTES",
            "atomic_write",
            "safe_name",
            "unique_path",
            "write_frame_csv",
            "write_json",
        ),
        "intervals": (
            "format_accuracy",
            "format_score",
            "wilson_interval",
        ),
        "logs": (
            "cause_in_words",
            "setup_logging",
        ),
        "outputs": (
            "check_output_file",
            "check_output_folder",
        ),
        "text": (
            "escape_markdown",
            "format_size",
            "plural",
            "shorten",
        ),
    },
)
