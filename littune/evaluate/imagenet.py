"""ImageNet-1k class names and the folder layouts of its evaluation variants.

Two name lists, both in label-index order (index = the synset's position in sorted WordNet ids):

    clip  CLIP's 1,000 hand-edited names (``resources/classnames/imagenet_clip.txt``, as open_clip's
          ``IMAGENET_CLASSNAMES`` and big_vision use them): the default, so figures stand beside
          published ones. The list repeats two names (missile: 657 and 744; sunglasses: 836 and 837);
          it is kept verbatim because published figures include the repeats.
    timm  timm's first WordNet lemma per class (littune's names before CLIP's), with three
          ambiguous lemmas made distinct; reachable as ``--classnames imagenet_timm``.

Folder layouts, resolved by :func:`imagenet_folder_names`:

    synset folders (``n01440764``)  ImageNet-1k val, ImageNet-Sketch (all 1,000), ImageNet-R and
                                    ImageNet-A (200-class subsets): each folder gets its class's name,
                                    as CLIP_benchmark masks the 1,000 names by the subset's synsets;
    numbered folders ``0``..``999``  ImageNet-V2: folder ``i`` is class index ``i``; the numbering must
                                    cover 0..999 exactly.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_names", "imagenet_synsets", "imagenet_folder_names", "is_synset", "KNOWN_REPEATS",
           "NAME_SETS"]

_SYNSET = re.compile(r"^n\d{8}$")
# The pairs CLIP's list names alike (label indices): kept, warned about once (zeroshot.check_prompt_rows).
KNOWN_REPEATS = ((657, 744), (836, 837))
NAME_SETS = {"imagenet": "clip", "imagenet_clip": "clip", "imagenet_timm": "timm"}  # --classnames NAME
# The first lemma is ambiguous for three classes; give each a distinct name (timm set only).
_TIMM_OVERRIDES = {134: "crane bird", 517: "construction crane", 639: "tank suit"}


def is_synset(folder: str) -> bool:
    return bool(_SYNSET.match(folder))


def _timm_info():
    from timm.data import ImageNetInfo  # local import: timm is only needed for ImageNet metadata

    return ImageNetInfo("imagenet-1k")


@lru_cache(maxsize=1)
def _synsets() -> tuple[str, ...]:
    return tuple(_timm_info().label_names())


@lru_cache(maxsize=2)
def _names(kind: str) -> tuple[str, ...]:
    if kind == "clip":
        text = resources.files("littune").joinpath("resources", "classnames", "imagenet_clip.txt").read_text("utf-8")
        names = tuple(line for line in text.splitlines() if line and not line.startswith("#"))
        if len(names) != 1000:
            raise RuntimeError(f"resources/classnames/imagenet_clip.txt holds {len(names)} names, not 1000")
        return names
    if kind != "timm":
        raise ValueError(f"unknown ImageNet name list {kind!r}; available: clip, timm")
    info = _timm_info()
    names = [_TIMM_OVERRIDES.get(i, info.index_to_description(i).split(",")[0].strip())
             for i in range(info.num_classes())]  # "tench, Tinca tinca" -> "tench"
    return tuple(names)


def imagenet_names(kind: str = "clip") -> list[str]:
    """The 1000 ImageNet-1k class names in label-index order (``clip`` or ``timm``)."""
    return list(_names(kind))


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids (``n01440764`` ...) in label-index order."""
    return list(_synsets())


def imagenet_folder_names(folders: list[str], kind: str = "clip", where: str = "imagenet") -> list[str] | None:
    """Names for ImageNet-style class folders (synset ids or V2's 0..999), or None for other folders.

    Synset folders may be any subset (R, A); numbered folders must be exactly 0..999 (V2), else the
    error names what is missing or extra. ``where`` names the data in errors."""
    if folders and all(is_synset(f) for f in folders):
        index = {s: i for i, s in enumerate(_synsets())}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise ValueError(f"{where}: {len(unknown)} synset folder(s) are not ImageNet-1k classes: "
                             f"{', '.join(unknown[:10])}")
        return [_names(kind)[index[f]] for f in folders]
    if folders and all(f.isdigit() for f in folders):
        numbers = {int(f) for f in folders}
        if len(numbers) != len(folders) or numbers != set(range(1000)) or any(f != str(int(f)) for f in folders):
            missing = sorted(set(range(1000)) - numbers)[:10]
            extra = sorted(f for f in folders if not (f == str(int(f)) and int(f) < 1000))[:10]
            raise ValueError(f"{where}: numbered class folders must be ImageNet-V2's 0..999, one each; "
                             f"missing {missing or 'none'}, unexpected {extra or 'none'} ({len(folders)} folders)")
        return [_names(kind)[int(f)] for f in folders]
    return None
