"""Run folders: their layout, their one writer and reader (group files included), checks of
damaged runs, the run table, locks, and the workspace that holds runs, datasets and uploads.

Modules (each says what it holds in its own docstring):
    checks, folders, locks, table, workspace
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "checks": ("check_validation_split",),
        "folders": (
            "CALIBRATION_FILE",
            "CONFIG_FILE",
            "LABELS_FILE",
            "MAX_NOTE_LENGTH",
            "METRICS_FILE",
            "NOTE_FILE",
            "OPEN_SET_FILE",
            "PREDICTIONS_FILE",
            "Run",
            "RunGroup",
            "RunSummary",
            "RunWriter",
            "SPLIT_FILE",
            "SWEEP_FILE",
            "TRANSFER_FILE",
            "WEIGHTS_FILE",
            "as_run",
            "describe_freeze",
            "list_groups",
            "list_runs",
            "live_status",
            "load_run",
            "new_run_dir",
            "preferred_run",
            "read_group",
            "read_json",
            "read_note",
            "require_new_run_dir",
            "run_dataset",
            "run_is_live",
            "save_weights",
            "summarize_run",
            "weights_metadata",
            "write_note",
        ),
        "locks": (
            "FolderLock",
            "LOCK_FILE",
        ),
        "table": (
            "DIFFERS",
            "RunDetails",
            "delete_run_or_group",
            "deletion_targets",
            "differing_settings",
            "group_outcome",
            "groups_frame",
            "histories",
            "load_runs",
            "runs_frame",
            "settings_frame",
        ),
        "workspace": (
            "StoredFolder",
            "WORKSPACE_ENV",
            "Workspace",
            "folder_signature",
            "is_loopback",
            "save_stream",
        ),
    },
)
