"""Class knowledge in zero-shot prompts: a class's WordNet gloss written beside its name.

"a photo of a tench." becomes, as an extra member of the prompt ensemble, "a photo of a tench, a
freshwater dace-like game fish." The knowledge comes from the synset files timm ships in its package
data (``timm/data/_info/imagenet_synset_to_lemma.txt`` and ``..._to_definition.txt``: the 21,843
synsets of ImageNet-21k, with their WordNet lemmas and definitions); nothing is downloaded.

A class maps to a synset when its folder is a synset id (``n01440764``), or when one of its names is
a lemma of exactly one synset (``sunflower`` -> n11978233), or of several of which exactly one is an
ImageNet-1k class. Any other class (``rose``: a colour, a wine and a shrub) gets no knowledge and is
listed as unmapped: a guess could write the wrong meaning into its prompts.

Modes (``ZeroShotConfig.knowledge``):
- ``hypernym``: the genus phrase that opens the definition ("any of several herbs of the genus
  Taraxacum ..." -> "herb"). timm ships no hypernym links, and a WordNet gloss names its genus
  first, so this stands in for the synset's hypernym (CuPL, arXiv 2209.03320, and "Visual
  classification via description", arXiv 2210.07183, add such descriptions to CLIP's prompts).
- ``definition``: the definition's first clause, up to ``;``.
The knowledge alias is added to the class's own names, so the classifier averages over both (the
plain prompts stay in the ensemble). Measured in docs/class_knowledge.md.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MODES = ("none", "hypernym", "definition")
SYNSET = re.compile(r"^n\d{8}$")
# Where a definition's genus phrase ends: a relative clause, a participle, a preposition or a comma.
_GENUS_END = re.compile(r"\s(?:having|of|that|which|with|noted|used|from|in|on|for|found|growing|"
                        r"bearing|native|usually|especially|whose|resembling|related|equipped|made|valued|widespread|"
                        r"carried|living|cultivated|consisting|containing|designed|worn|often|to|where|formerly|constructed)\s|[,;(:]")
_QUANTIFIER = re.compile(r"^(?:any of (?:numerous|several|many|various|the|a number of|\w+ )?|any |"
                         r"one of (?:the |several |many )?|a |an |the )", re.I)


@dataclass
class Synsets:
    """WordNet as timm ships it: lemmas and definition per synset id, and ImageNet-1k's ids."""
    lemmas: dict[str, list[str]]
    definitions: dict[str, str]
    in1k: set[str]
    by_lemma: dict[str, list[str]] = field(default_factory=dict)  # lower-case lemma -> synset ids


def _info_dir() -> Path:
    spec = importlib.util.find_spec("timm")  # its folder only: importing timm would import torch's models
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("class knowledge reads timm's synset files: `pip install timm`")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


@lru_cache(maxsize=1)
def load_synsets() -> Synsets:
    info = _info_dir()

    def table(name: str) -> dict[str, str]:
        path = info / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: timm's synset file is missing (timm too old?)")
        rows = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
        return {k: v.strip() for k, v in rows}

    lemmas = {k: [w.strip() for w in v.split(",")] for k, v in table("imagenet_synset_to_lemma.txt").items()}
    s = Synsets(lemmas, table("imagenet_synset_to_definition.txt"),
                set((info / "imagenet_synsets.txt").read_text().split()))
    for sid, words in lemmas.items():
        for w in words:
            s.by_lemma.setdefault(w.lower(), []).append(sid)
    return s


def synset_of(folder: str, names: list[str], s: Synsets) -> str | None:
    """The synset a class means, or None when no name maps to exactly one (see the module docstring)."""
    if SYNSET.match(folder) and folder in s.definitions:
        return folder
    for name in [*names, folder.replace("_", " ")]:
        name = name.lower().strip()
        ids = s.by_lemma.get(name) or s.by_lemma.get(_singular(name), [])  # folders are often plural
        if len(ids) > 1:
            ids = [i for i in ids if i in s.in1k]
        if len(ids) == 1:
            return ids[0]
    return None


def _singular(word: str) -> str:
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def hypernym_phrase(definition: str) -> str:
    """The genus phrase a WordNet gloss opens with: "any of several herbs of the genus X" -> "herb"."""
    text = definition.split(";")[0].strip()
    text = _QUANTIFIER.sub("", text, count=1)
    head = _GENUS_END.split(" " + text + " ", maxsplit=1)[0].strip()
    if head:  # "any of numerous plants", "small golden freshwater fishes": glosses often name a plural genus
        *rest, last = head.split(" ")
        head = " ".join([*rest, _singular(last)])
    return head


def _article(phrase: str) -> str:
    return f"an {phrase}" if phrase[:1].lower() in "aeiou" else f"a {phrase}"


def knowledge_alias(name: str, synset: str, mode: str, s: Synsets) -> str | None:
    definition = s.definitions.get(synset, "")
    if mode == "hypernym":
        genus = hypernym_phrase(definition)
        if not genus or genus.lower() == name.lower():
            return None
        return f"{name}, {_article(genus)}"
    if mode == "definition":
        gloss = definition.split(";")[0].strip()
        return f"{name}, {gloss}" if gloss else None
    check_knowledge(mode)
    return None


def check_knowledge(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"knowledge: unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def add_class_knowledge(aliases: list[list[str]], folders: list[str], mode: str) -> tuple[list[list[str]], dict]:
    """Each class's aliases plus its knowledge alias (``mode`` 'none' changes nothing), and a report
    {'mode', 'mapped': {folder: synset}, 'unmapped': [folders]} for the evaluation's metrics."""
    check_knowledge(mode)
    if mode == "none":
        return aliases, {"mode": "none"}
    s = load_synsets()
    out, mapped, unmapped = [], {}, []
    for names, folder in zip(aliases, folders):
        sid = synset_of(folder, names, s)
        extra = knowledge_alias(names[0], sid, mode, s) if sid else None
        if sid:
            mapped[folder] = sid
        else:
            unmapped.append(folder)
        out.append([*names, extra] if extra and extra not in names else list(names))
    return out, {"mode": mode, "mapped": mapped, "unmapped": unmapped}
