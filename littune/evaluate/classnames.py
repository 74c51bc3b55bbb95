"""Human-readable class names for zero-shot prompts.

Zero-shot classification (CLIP arXiv 2103.00020, LiT arXiv 2111.07991) writes
class NAMES into prompts, so folder ids such as ``n01440764`` or
``barbeton_daisy`` must be turned into words ("tench", "barbeton daisy").

Sources (the ``classnames`` option), in order of preference:
1. a ``folder,name`` CSV file written by the user;
2. a built-in set: ``imagenet`` (CLIP's 1,000 names, ``imagenet.py``) or ``imagenet_timm`` (timm's
   first WordNet lemma, littune's names before CLIP's), for synset folders or ImageNet-V2's 0..999;
3. nothing: ImageNet synset folders (``n########``) and ImageNet-V2's exactly 1,000 folders ``0``..``999``
   get CLIP's names, any other folder its own name with ``_`` replaced by a space.

A class may have several names (aliases): ``roses,rose;roses;garden rose`` (the folder, then names
separated by ``;``). The zero-shot classifier embeds every alias in every template and averages them
all (``zeroshot.build_classifier``, as big_vision does); results name the class by its first alias.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .imagenet import KNOWN_REPEATS, NAME_SETS, imagenet_folder_names, imagenet_names, imagenet_synsets, is_synset

__all__ = [
    "ClassNames",
    "resolve_classnames",
    "load_classnames",
    "load_class_aliases",
    "split_aliases",
    "read_classnames_file",
    "imagenet_classnames",
    "imagenet_synsets",
    "synset_classnames",
    "get_classnames",
]


def imagenet_classnames(kind: str = "clip") -> list[str]:
    """The 1000 ImageNet-1k class names in label-index order: CLIP's (``clip``, default) or timm's."""
    return imagenet_names(kind)


def synset_classnames(synsets: list[str], kind: str = "clip") -> list[str]:
    """Map ImageNet synset ids (e.g. folder names ``n01440764``) to class names."""
    if not all(is_synset(s) for s in synsets):
        raise ValueError(f"not ImageNet synset ids: {_preview([s for s in synsets if not is_synset(s)])}")
    return imagenet_folder_names(list(synsets), kind, where="synsets")


def get_classnames(name: str) -> list[str]:
    """Built-in class-name lists by name: ``imagenet`` (CLIP's names), ``imagenet_timm``."""
    key = name.lower().replace("-", "_")
    key = {"imagenet1k": "imagenet", "imagenet_1k": "imagenet"}.get(key, key)
    if key in NAME_SETS:
        return imagenet_names(NAME_SETS[key])
    raise ValueError(f"unknown class-name set {name!r}; available: {', '.join(NAME_SETS)}")


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


@dataclass
class ClassNames:
    """What a set of class folders is called: ``aliases`` (the names written into prompts, one list per
    class), ``labels`` (one distinct display name per class) and ``repeats`` (class index pairs whose
    names are CLIP's own known repeats, allowed to give identical prompts)."""

    aliases: list[list[str]]
    labels: list[str]
    repeats: list[tuple[int, int]] = field(default_factory=list)


def resolve_classnames(folders: list[str], classnames: str | os.PathLike | None = None,
                       where: str = "classes") -> ClassNames:
    """Names of each class folder, in the same order (see the module docstring for the sources).

    ``classnames``: None, a built-in set (``imagenet``, ``imagenet_timm``) or a ``folder,name`` file
    that names every folder (extra entries are allowed; two folders named alike are refused).
    """
    folders = list(folders)
    if not folders:
        raise ValueError(f"{where}: no class folders given")
    spec = os.fspath(classnames) if classnames is not None else None
    key = spec.lower().replace("-", "_") if spec is not None else None
    if key in NAME_SETS and not Path(spec).is_file():
        names = imagenet_folder_names(folders, NAME_SETS[key], where)
        if names is None:
            raise ValueError(f"{where}: --classnames {spec} names ImageNet classes, but the class folders are "
                             f"neither synset ids (n01440764) nor ImageNet-V2's 0..999: {_preview(folders, 5)}")
        return _imagenet_classes(folders, names)
    if spec is not None:
        mapping = read_classnames_file(spec)
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise ValueError(f"classnames file {spec} has no name for {len(missing)} folder(s): {_preview(missing)}")
        first: dict[str, str] = {}
        for f in folders:
            other = first.setdefault(mapping[f][0], f)
            if other != f:
                raise ValueError(f"classnames file {spec}: folders {other!r} and {f!r} are both named "
                                 f"{mapping[f][0]!r}; give each class its own name")
        return ClassNames([list(mapping[f]) for f in folders], [mapping[f][0] for f in folders])
    if all(is_synset(f) for f in folders) or set(folders) == {str(i) for i in range(1000)}:  # ImageNet, -V2
        names = imagenet_folder_names(folders, "clip", where)
        return _imagenet_classes(folders, names)
    names = [f.replace("_", " ").strip() for f in folders]
    return ClassNames([[n] for n in names], names)


def _imagenet_classes(folders: list[str], names: list[str]) -> ClassNames:
    """CLIP's list names two pairs alike: prompts keep the names verbatim (as published figures do),
    display labels add the folder so results keep both classes apart."""
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    label = {f: (index[f] if is_synset(f) else int(f)) for f in folders}  # folder -> ImageNet label index
    pos = {label[f]: k for k, f in enumerate(folders)}
    repeats = [(pos[a], pos[b]) for a, b in KNOWN_REPEATS if a in pos and b in pos and names[pos[a]] == names[pos[b]]]
    labels = list(names)
    for a, b in repeats:
        labels[a], labels[b] = f"{names[a]} ({folders[a]})", f"{names[b]} ({folders[b]})"
    return ClassNames([[n] for n in names], labels, repeats)


def load_class_aliases(folders: list[str], classnames_file: str | os.PathLike | None = None) -> list[list[str]]:
    """The names of each class folder, in the same order: a list of one or more aliases per class
    (:func:`resolve_classnames`)."""
    return resolve_classnames(folders, classnames_file).aliases


def load_classnames(folders: list[str], classnames_file: str | os.PathLike | None = None) -> list[str]:
    """One display name per class folder (its first alias); see :func:`resolve_classnames`."""
    return resolve_classnames(folders, classnames_file).labels


def _preview(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
