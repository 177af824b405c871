"""Images and datasets: decoding, folders and archives, scanning and the health report, the split,
near-identical images, reviewed versions of a dataset, the built-in sample.

Modules (each says what it holds in its own docstring):
    archives, folders, image_dataset, image_hash, images, multilabel, multilabel_split,
    near_duplicates, records, retagging, sample, scanning, splitting, versions
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "archives": ("extract_zip",),
        "folders": (
            "find_root",
            "visible_entries",
            "walk_visible_files",
        ),
        "image_dataset": (
            "ImageFolderDataset",
            "default_num_workers",
            "item_targets",
        ),
        "image_hash": (
            "Fingerprint",
            "connected_groups",
            "fingerprint",
            "similar_pairs",
        ),
        "images": (
            "IMAGE_SUFFIXES",
            "SKIP_CORRUPT",
            "SKIP_EMPTY",
            "SKIP_NOT_IMAGE",
            "SKIP_NOT_REGULAR",
            "load_image",
        ),
        "multilabel": (
            "LABELS_CSV",
            "TAG_SEPARATOR",
            "is_multi_label",
            "join_tags",
            "read_labels_csv",
            "split_tags",
            "tag_counts",
            "write_labels_csv",
        ),
        "multilabel_split": ("iterative_split",),
        "near_duplicates": ("near_duplicate_groups",),
        "records": (
            "DatasetReport",
            "DuplicateGroup",
            "ImageItem",
            "Issue",
            "SKIP_LISTED_MISSING",
            "SKIP_NOT_LISTED",
            "SkippedFile",
            "co_occurrence",
            "tags_per_image",
        ),
        "retagging": (
            "current_tags",
            "retag_images",
        ),
        "sample": (
            "SAMPLE_DATASET_DIR",
            "sample_dataset_path",
        ),
        "scanning": (
            "IMBALANCE_WARNING_RATIO",
            "SKIP_LOOSE",
            "scan_dataset",
            "scanned_dataset",
        ),
        "splitting": (
            "Leakage",
            "check_validation_classes",
            "overlap_issue",
            "split_leakage",
            "split_overlap",
            "stratified_split",
        ),
        "versions": (
            "DatasetVersion",
            "Decision",
            "EXCLUDE",
            "KEEP",
            "RELABEL",
            "VERSION_FILE",
            "base_dataset",
            "create_version",
            "image_keys",
            "list_versions",
            "original_image",
            "read_version",
            "reviewed",
            "version_info",
        ),
    },
)
