"""Labelled image folders in the ``ImageFolder`` layout: ``ROOT/<class>/<image>``.

Used for zero-shot classification and linear probes (e.g. the flowers data set). The listing is
sorted so labels and order are identical on every machine.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["list_labelled_images", "list_images", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _hidden(parts: tuple[str, ...]) -> bool:
    # Hidden entries (.DS_Store, ._foo.jpg from macOS archives, .ipynb_checkpoints) are not data.
    return any(part.startswith(".") for part in parts)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p.relative_to(folder).parts) and p.is_file())


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (sub-folders too, hidden entries skipped), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    return _images_under(root)


def list_labelled_images(root: str | Path) -> tuple[list[str], list[int], list[str]]:
    """List ``(paths, labels, class_folders)``; label i means ``class_folders[i]``.

    Class folders are sorted by name, images by their path within the class folder (sub-folders
    are searched too). Only image extensions count, case-insensitively.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    class_folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not _hidden((p.name,)))
    if not class_folders:
        raise ValueError(f"{root}: no class folders (expected {root}/<class>/<image>)")

    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_folders):
        folder = root / name
        images = _images_under(folder)
        if not images:
            # An empty class usually means a broken copy, and a class missing from one split
            # but not the other would make label indices disagree between splits.
            raise ValueError(f"{folder}: class folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        paths.extend(str(p) for p in images)
        labels.extend([label] * len(images))
    return paths, labels, class_folders
