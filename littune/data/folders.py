"""Folders of images: ``folder:DIR`` sources, and labelled folders in the ``ImageFolder`` layout.

``ROOT/<class>/<image>`` folders serve zero-shot classification and linear probes (e.g. the
flowers data set); any folder of images serves the image index. Listings are sorted so keys,
labels and order are identical on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .images import BadInputLog
from .sources import Record

__all__ = ["FolderSource", "list_labelled_images", "list_images", "label_of", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _hidden(parts: tuple[str, ...]) -> bool:
    # Hidden entries (.DS_Store, ._foo.jpg from macOS archives, .ipynb_checkpoints) are not data.
    return any(part.startswith(".") for part in parts)


def _images_under(folder: Path) -> list[Path]:
    # Anything named like an image but a folder is listed: a FIFO, a device or a dangling link named
    # x.jpg is then skipped by load_image with its reason in the bad-input list, not silently.
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p.relative_to(folder).parts)
                  and not p.is_dir())


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
    _refuse_split_folders(root, class_folders)

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


SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval"})


def _refuse_split_folders(root: Path, folders: list[str]) -> None:
    """``flowers/`` holding ``train/daisy/`` and ``test/daisy/`` is a folder of splits: read as classes
    it would score "train" against "test". Refused when a folder is named like a split and none
    holds images of its own, only sub-folders."""
    if not set(folders) & SPLIT_NAMES:
        return
    subs = []
    for name in folders:
        entries = list((root / name).iterdir())
        if any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in entries):
            return  # images directly inside: a class folder
        subs.append(sorted(p.name for p in entries if p.is_dir() and not _hidden((p.name,))))
    if all(subs):
        pick = next(f for f in ("test", "val", "validation", "dev", *folders) if f in folders)
        classes = subs[folders.index(pick)]
        raise ValueError(f"{root}: its sub-folders ({', '.join(folders)}) look like splits that each hold class "
                         f"folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}), not like "
                         f"classes; point at one split, e.g. {root / pick}")


def label_of(key: str) -> str:
    """The class folder of an image key of a labelled folder (``daisy/123.jpg`` -> ``daisy``)."""
    head, sep, _ = key.partition("/")
    return head if sep else ""


class FolderSource:
    """Every image under a folder (sub-folders too, hidden entries skipped), without captions.

    The key of an image is its path relative to the folder (POSIX separators, every character
    kept), so ``daisy/123.jpg`` in a labelled folder carries its class in its first component.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))  # abspath, not resolve: class folders may be symlinks
        if not self.root.is_dir():
            raise ValueError(f"{root}: not a directory")
        self.bad = BadInputLog()

    def __iter__(self) -> Iterator[Record]:
        for path in list_images(self.root):
            key = path.relative_to(self.root).as_posix()
            yield Record(key=key, image=str(path), caption="", image_key=key)

    def __len__(self) -> int:
        return len(list_images(self.root))
