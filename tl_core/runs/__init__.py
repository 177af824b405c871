"""Run folders: their layout, their one writer and reader (group files included), checks of
damaged runs, the run table, locks, the workspace that holds runs, datasets and uploads, and
which folders of the server's disk may be read for a user.

Modules (each says what it holds in its own docstring):
    checks, folder_access, groups, layout, listing, locks, reader, table, workspace, writer
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "checks": (
            "check_validation_split",
            "damaged",
        ),
        "folder_access": ("is_loopback",),
        "groups": (
            "AUTO_KIND",
            "SWEEP_FILE",
            "SWEEP_KIND",
            "TRANSFER_FILE",
            "TRANSFER_KIND",
            "read_group_file",
            "write_group_file",
        ),
        "layout": (
            "CALIBRATION_FILE",
            "CONFIG_FILE",
            "LABELS_FILE",
            "MAX_NOTE_LENGTH",
            "METRICS_FILE",
            "MULTI_LABEL_METRIC",
            "NOTE_FILE",
            "OPEN_SET_FILE",
            "PREDICTIONS_FILE",
            "SPLIT_FILE",
            "THRESHOLDS_FILE",
            "WEIGHTS_FILE",
            "live_status",
            "new_run_dir",
            "read_json",
            "read_json_or_none",
            "require_new_run_dir",
            "run_is_live",
        ),
        "listing": (
            "RunGroup",
            "list_groups",
            "list_runs",
            "read_group",
        ),
        "locks": (
            "FolderLock",
            "LOCK_FILE",
        ),
        "reader": (
            "Run",
            "RunSummary",
            "as_run",
            "describe_freeze",
            "load_run",
            "preferred_run",
            "read_note",
            "run_dataset",
            "summarize_run",
            "weights_metadata",
            "write_note",
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
            "save_stream",
        ),
        "writer": (
            "RunWriter",
            "save_weights",
        ),
    },
)
