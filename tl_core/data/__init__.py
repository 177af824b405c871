"""Images and datasets: decoding, folders and archives, scanning and the health report, the split,
near-identical images, reviewed versions of a dataset, the built-in sample.

Modules (each says what it holds in its own docstring):
    datasets, folders, image_dataset, image_hash, images, sample, versions
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "datasets": (
            "DatasetReport",
            "DuplicateGroup",
            "IMBALANCE_WARNING_RATIO",
            "ImageItem",
            "Issue",
            "Leakage",
            "SKIP_LOOSE",
            "check_validation_classes",
            "extract_zip",
            "near_duplicate_groups",
            "overlap_issue",
            "scan_dataset",
            "scanned_dataset",
            "split_leakage",
            "split_overlap",
            "stratified_split",
        ),
        "folders": (
            "find_root",
            "visible_entries",
            "walk_visible_files",
        ),
        "image_dataset": (
            "ImageFolderDataset",
            "default_num_workers",
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
        "sample": (
            "SAMPLE_DATASET_DIR",
            "sample_dataset_path",
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
