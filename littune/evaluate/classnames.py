"""Human-readable class names for zero-shot prompts.

Zero-shot classification (CLIP arXiv 2103.00020, LiT arXiv 2111.07991) writes
class NAMES into prompts, so folder ids such as ``n01440764`` or
``barbeton_daisy`` must be turned into words ("tench", "barbeton daisy").

Sources, in order of preference:
1. a ``folder,name`` CSV file written by the user;
2. ImageNet synset folders (``n########``), named from timm's bundled ImageNet
   metadata (first WordNet lemma of each description);
3. the folder name with ``_`` replaced by a space.

A class may have several names (aliases): ``roses,rose;roses;garden rose`` (the folder, then names
separated by ``;``). The zero-shot classifier embeds every alias in every template and averages them
all (``zeroshot.build_classifier``, as big_vision does); results name the class by its first alias.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

__all__ = [
    "load_classnames",
    "load_class_aliases",
    "split_aliases",
    "read_classnames_file",
    "imagenet_classnames",
    "imagenet_synsets",
    "synset_classnames",
    "get_classnames",
]

_SYNSET = re.compile(r"^n\d{8}$")

# The first lemma is ambiguous for three ImageNet-1k classes; give each a distinct,
# prompt-friendly name (duplicate names would give identical classifier rows).
_IMAGENET_OVERRIDES = {134: "crane bird", 517: "construction crane", 639: "tank suit"}


def _imagenet_info():
    from timm.data import ImageNetInfo  # local import: timm is only needed for ImageNet names

    return ImageNetInfo("imagenet-1k")


@lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    info = _imagenet_info()
    names = []
    for i in range(info.num_classes()):
        # Descriptions look like "tench, Tinca tinca": keep the first comma-separated lemma.
        names.append(_IMAGENET_OVERRIDES.get(i, info.index_to_description(i).split(",")[0].strip()))
    if len(set(names)) != len(names):  # guard against a different timm metadata version
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                names[i] = f"{n} ({info.index_to_label_name(i)})"
            seen.add(names[i])
    return tuple(names)


def imagenet_classnames() -> list[str]:
    """The 1000 ImageNet-1k class names in label-index order (index 985 is "daisy")."""
    return list(_imagenet_names())


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids (``n01440764`` ...) in label-index order."""
    return list(_imagenet_info().label_names())


def synset_classnames(synsets: list[str]) -> list[str]:
    """Map ImageNet synset ids (e.g. folder names ``n01440764``) to class names."""
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    unknown = [s for s in synsets if s not in index]
    if unknown:
        raise ValueError(
            f"{len(unknown)} synset(s) are not ImageNet-1k classes: {_preview(unknown)}"
        )
    names = _imagenet_names()
    return [names[index[s]] for s in synsets]


def get_classnames(name: str) -> list[str]:
    """Built-in class-name lists by name. Available: ``"imagenet"``."""
    if name.lower() in ("imagenet", "imagenet-1k", "imagenet1k"):
        return imagenet_classnames()
    raise ValueError(f"unknown class-name set {name!r}; available: 'imagenet'")


def split_aliases(text: str, where: str) -> list[str]:
    """``"rose;roses;garden rose"`` -> ``["rose", "roses", "garden rose"]``; empty or repeated names
    are refused with ``where`` (a file:line or a label number) in the message."""
    names = [n.strip() for n in text.split(";")]
    if not text.strip() or not all(names):
        raise ValueError(f"{where}: empty name in {text!r}; give one name, or several separated by ';' "
                         "(e.g. 'rose;garden rose')")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: name {twice[0]!r} given twice in {text!r}")
    return names


def read_classnames_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """Parse ``folder,name`` / ``folder,alias;alias;...`` lines into {folder: [names]}.

    Split on the FIRST comma only, so names may contain commas (but not ``;``, which separates
    aliases). Blank lines and lines starting with ``#`` are ignored. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classnames file not found: {path}")
    mapping: dict[str, list[str]] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if "," not in line:
            raise ValueError(f"{where}: expected 'folder,name' or 'folder,name;alias;...', got {line!r}")
        folder, names = (part.strip() for part in line.split(",", 1))
        if not folder:
            raise ValueError(f"{where}: empty folder in {line!r}")
        if not names:
            raise ValueError(f"{where}: folder {folder!r} has no name (expected 'folder,name')")
        aliases = split_aliases(names, where)
        if folder in mapping and mapping[folder] != aliases:
            raise ValueError(f"{where}: folder {folder!r} named twice "
                             f"({';'.join(mapping[folder])!r} and {';'.join(aliases)!r})")
        mapping[folder] = aliases
    return mapping


def load_class_aliases(folders: list[str], classnames_file: str | os.PathLike | None = None) -> list[list[str]]:
    """The names of each class folder, in the same order: a list of one or more aliases per class.

    Args:
        folders: class folder names (e.g. the sub-directories of an image-folder dataset).
        classnames_file: optional ``folder,name`` / ``folder,alias;alias`` file; must name every
            folder (extra entries are allowed).

    Without a file: if every folder is an ImageNet synset id, use ImageNet names;
    otherwise replace ``_`` with a space in each folder name (one name per class).
    """
    folders = list(folders)
    if not folders:
        raise ValueError("no class folders given")
    if classnames_file is not None:
        mapping = read_classnames_file(classnames_file)
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise ValueError(
                f"classnames file {classnames_file} has no name for {len(missing)} folder(s): "
                f"{_preview(missing)}"
            )
        return [list(mapping[f]) for f in folders]
    if all(_SYNSET.match(f) for f in folders):
        known = set(imagenet_synsets())
        if all(f in known for f in folders):
            return [[n] for n in synset_classnames(folders)]
    return [[f.replace("_", " ").strip()] for f in folders]


def load_classnames(folders: list[str], classnames_file: str | os.PathLike | None = None) -> list[str]:
    """One display name per class folder (its first alias); see :func:`load_class_aliases`."""
    return [names[0] for names in load_class_aliases(folders, classnames_file)]


def _preview(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
