"""Safe extraction of a dataset uploaded as a .zip: zip-slip paths, decompression bombs, oversized
archives and a full disk are refused before (or while) anything is written.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from tl_core.common import DatasetError
from tl_core.data.folders import is_clutter
from tl_core.data.images import MAX_IMAGE_BYTES

MAX_EXTRACT_BYTES = 4 * 1024**3
MAX_EXTRACT_FILES = 200_000
# Photos barely compress (JPEG, PNG and WebP are compressed already); a member that expands
# more than this many times and past _RATIO_FLOOR_BYTES is a decompression bomb, not a photo.
# Flat drawings saved as BMP can compress far better, but they stay small.
MAX_COMPRESSION_RATIO = 100
_RATIO_FLOOR_BYTES = 16 * 1024**2
# Extraction leaves this much disk free, so the workspace never fills the disk to the last byte.
DISK_HEADROOM_BYTES = 512 * 1024**2
_COPY_CHUNK = 1024 * 1024


def _safe_member_path(name: str) -> PurePosixPath:
    """The member's relative path; raises DatasetError for names that escape the folder."""
    normalised = name.replace("\\", "/")
    parts = PurePosixPath(normalised).parts
    if (
        normalised.startswith("/")
        or (parts and len(parts[0]) >= 2 and parts[0][1] == ":")  # a Windows drive, "C:"
        or ".." in parts
        or "\x00" in normalised
    ):
        raise DatasetError(
            f"The zip contains an unsafe path {name!r} that points outside its folder.",
            hint="The archive was not extracted. Re-create the zip from the dataset folder.",
        )
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_bytes: int = MAX_EXTRACT_BYTES,
    max_files: int = MAX_EXTRACT_FILES,
) -> Path:
    """Safely extracts a zip into ``dest``, which must not exist yet (or be an empty folder).

    Every member is checked before anything is written: absolute paths and ``..`` are rejected
    (zip slip), as are archives declaring more than ``max_files`` files or ``max_bytes`` bytes.
    Sizes are counted again while decompressing, since headers can lie. Hidden files, macOS
    resource forks and symbolic links are not extracted. Files go to a temporary sibling folder
    renamed to ``dest`` on success, so a failure leaves no half-extracted folder.

    Returns:
        ``dest``.

    Raises:
        DatasetError: The file is not a readable zip, is unsafe, too large, encrypted, or
            ``dest`` is a non-empty folder.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(
            f"Cannot extract into {dest}: it already exists and is not empty.",
            hint="Choose a new folder, or delete that one first.",
        )
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{zip_path.name} could not be read as a zip archive ({exc}).",
            hint="The file may be damaged or incompletely uploaded; create the zip again.",
        ) from exc
    with archive:
        members = _plan_extraction(archive, max_bytes=max_bytes, max_files=max_files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _check_free_space(dest.parent, sum(info.file_size for info, _ in members))
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            _extract_members(archive, members, staging, max_bytes=max_bytes)
            if dest.exists():
                dest.rmdir()  # Empty, checked above; os.replace cannot replace a folder everywhere.
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


def _plan_extraction(
    archive: zipfile.ZipFile, *, max_bytes: int, max_files: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = archive.infolist()
    # Validate every name, clutter included, so a hostile archive is refused as a whole.
    targets = [(info, _safe_member_path(info.filename)) for info in infos]
    files = [
        (info, target)
        for info, target in targets
        if not info.is_dir()
        and target.parts
        and not any(is_clutter(part) for part in target.parts)
        and stat.S_IFMT(info.external_attr >> 16) != stat.S_IFLNK
    ]
    for info, _ in files:
        if info.file_size > MAX_IMAGE_BYTES:
            raise DatasetError(
                f"{info.filename} in the zip is {info.file_size / 1024**2:,.0f} MB; one image "
                f"may be at most {MAX_IMAGE_BYTES / 1024**2:,.0f} MB.",
                hint="Remove that file from the zip (or resize it) and upload it again.",
            )
        _check_ratio(info, info.file_size)
    if len(files) > max_files:
        raise DatasetError(
            f"The zip holds {len(files):,} files, more than the limit of {max_files:,}.",
            hint="Split the dataset into smaller archives, or point at an extracted folder.",
        )
    declared = sum(info.file_size for info, _ in files)
    if declared > max_bytes:
        raise DatasetError(
            f"The zip would expand to {declared / 1024**3:.1f} GiB, more than the "
            f"{max_bytes / 1024**3:.1f} GiB limit.",
            hint="Use smaller images or fewer of them, or point at an extracted folder.",
        )
    return files


def _check_ratio(info: zipfile.ZipInfo, expanded: int) -> None:
    """Refuses a member that would expand like a decompression bomb.

    The declared size is enough to go by: zipfile never yields more than it, and a member that
    declares less than it holds fails its CRC check.
    """
    if expanded > _RATIO_FLOOR_BYTES and expanded > MAX_COMPRESSION_RATIO * max(
        info.compress_size, 1
    ):
        raise DatasetError(
            f"{info.filename} in the zip expands {expanded / max(info.compress_size, 1):,.0f} "
            f"times (to {expanded / 1024**2:,.0f} MB): real images never compress like that, "
            "so the archive was not extracted.",
            hint="The zip looks malformed or hostile; create it again from the image folders.",
        )


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed + DISK_HEADROOM_BYTES > free:
        raise DatasetError(
            f"Extracting the zip needs {needed / 1024**3:.2f} GB, but only "
            f"{free / 1024**3:.2f} GB are free on the disk holding {folder}.",
            hint="Free some disk space (for example delete old datasets and runs), then try again.",
        )


def _extract_members(
    archive: zipfile.ZipFile,
    members: Iterable[tuple[zipfile.ZipInfo, PurePosixPath]],
    staging: Path,
    *,
    max_bytes: int,
) -> None:
    written = 0
    for info, target in members:
        out_path = staging.joinpath(*target.parts)
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(out_path, "wb") as dst:
                while chunk := src.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise DatasetError(
                            "The zip expands to more than its declared size and the "
                            f"{max_bytes / 1024**3:.1f} GiB limit; extraction was stopped.",
                            hint="The archive looks malformed or hostile; create it again.",
                        )
                    dst.write(chunk)
        except RuntimeError as exc:  # zipfile's error for encrypted members
            raise DatasetError(
                f"{info.filename} in the zip is password-protected.",
                hint="Create the zip again without a password.",
            ) from exc
        except NotImplementedError as exc:
            raise DatasetError(
                f"{info.filename} in the zip uses an unsupported compression method.",
                hint="Create the zip again with standard (deflate) compression.",
            ) from exc
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{info.filename} in the zip is damaged ({exc}).",
                hint="The file may be incompletely uploaded; create the zip again.",
            ) from exc
        except OSError as exc:  # Disk full, a name clash between a file and a folder, ...
            raise DatasetError(
                f"Could not extract {info.filename} from the zip: {exc.strerror or exc}.",
                hint="Check the free disk space, and that no file and folder share a name.",
            ) from exc
