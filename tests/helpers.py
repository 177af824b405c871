"""Small image folders and zips drawn with PIL, for tests across the suite."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# Well-separated base colours, so a model can learn tiny datasets built from them.
CLASS_COLORS = ((220, 40, 40), (40, 200, 60), (40, 80, 230), (230, 200, 30), (160, 60, 200))


def make_image(
    size: tuple[int, int] = (48, 40), color: tuple[int, int, int] = (128, 128, 128), seed: int = 0
) -> Image.Image:
    """An RGB image of ``color`` with seeded noise, so every seed gives different bytes."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 25, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.array(color, float) + noise, 0, 255).astype(np.uint8))


def make_image_folder(
    root: str | Path,
    classes: dict[str, int],
    size: tuple[int, int] = (48, 40),
    suffix: str = ".png",
    seed: int = 0,
) -> Path:
    """Writes ``root/<class>/<class>_<i><suffix>``: ``classes`` maps class name to image count.

    Each class has its own base colour and every image its own noise, so no two files are
    identical and the classes are learnable. The format follows ``suffix`` (.png, .jpg, ...).

    Returns:
        ``root``.
    """
    root = Path(root)
    for class_index, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        color = CLASS_COLORS[class_index % len(CLASS_COLORS)]
        for i in range(count):
            image = make_image(size, color, seed=seed * 100_003 + class_index * 1009 + i)
            image.save(folder / f"{name}_{i}{suffix}")
    return root


def make_zip(
    folder: str | Path,
    zip_path: str | Path,
    wrap: str | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Zips the files under ``folder``, optionally inside a top folder named ``wrap``.

    Args:
        folder: Folder whose contents are archived (dotfiles included).
        zip_path: Archive to write.
        wrap: Name of a single top folder to put everything in; None puts the contents at
            the archive's root.
        extra: Additional members, name to bytes, written verbatim (e.g. ``__MACOSX/...``).

    Returns:
        ``zip_path``.
    """
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{wrap}/{name}" if wrap else name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return zip_path
