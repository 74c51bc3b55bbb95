"""Evaluators as plug-ins (big_vision's ``config.evals``): a registry entry with a typed config and
one contract, ``Evaluator(cfg).run(model) -> metrics``.

    zeroshot   a folder of class sub-folders: prompt-ensembled zero-shot top-1 / top-5 (CLIP Sec. 3.1.4)
    retrieval  a data spec with captions: image->text and text->image Recall@1/5/10
    probe      two labelled folders: logistic regression on the locked image features

An experiment names its evaluations in ``evals`` (``{name: {kind, every, ...options}}``); training,
``littune eval``, the demo and studies all build them here, so each metric is named once (each
evaluator's ``scalars``). An evaluator keeps a locked tower's image features between runs: during
training only the text side changes, so a periodic evaluation embeds no image twice.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from omegaconf import MISSING

from ..config import ConfigError, parse_options
from ..data.flickr8k import SPLITS
from ..data.folders import label_of, list_labelled_images
from ..encode import encode_features, encode_text_features, encode_texts
from ..model import LiTModel
from ..registry import Registry
from ..towers import ImageTower
from .class_knowledge import add_class_knowledge, check_knowledge
from .classnames import resolve_classnames
from .features import ImageFeatures, image_features, text_features
from .probe import PROTOCOLS, linear_probe
from .retrieval import RECALL_KEYS, retrieval_metrics
from .templates import get_templates
from .zeroshot import build_classifier, token_rows, zeroshot_metrics

EVALUATORS: Registry[type["Evaluator"]] = Registry("evaluator")


class Evaluator:
    """Base class: ``kind``, its typed ``Config``, the ``scalars`` it reports, ``run(model)``."""

    kind: ClassVar[str]
    Config: ClassVar[type]
    scalars: ClassVar[tuple[str, ...]]

    def __init__(self, cfg: Any, *, cache_root: str | Path | None = None, progress: bool = True):
        self.cfg, self.cache_root, self.progress = cfg, cache_root, progress
        self._prepared: dict[str, Any] = {}  # locked tower fingerprint -> prepared image side
        self._prepared_text: dict[str, Any] = {}  # the same for a locked text tower

    def run(self, model: LiTModel) -> dict[str, Any]:
        raise NotImplementedError

    def _image_side(self, tower: ImageTower, make):
        """``make(tower)`` once per locked tower (the cache makes it cheap anyway), every time for
        an unlocked one (its weights change between evaluations)."""
        if not tower.locked:
            return make(tower)
        fp = tower.fingerprint()
        if fp not in self._prepared:
            self._prepared = {fp: make(tower)}
        return self._prepared[fp]

    def _text_side(self, tower, make):
        """``make(tower)`` once per locked text tower (identified by weights and tokenizer)."""
        key = f"{tower.fingerprint()}|{tower.tokenizer.fingerprint()}"
        if key not in self._prepared_text:
            self._prepared_text = {key: make(tower)}
        return self._prepared_text[key]

    def _features(self, tower: ImageTower, spec: str, **kw) -> ImageFeatures:
        return image_features(tower, spec, self.cache_root, self.progress, **kw)


def _folder_spec(folder: str) -> str:
    return f"folder:{os.path.abspath(folder)}"  # abspath, not resolve: class folders may be symlinks


def _labelled(ev: Evaluator, tower: ImageTower, folder: str) -> dict:
    """A labelled folder's features and labels: {'features', 'labels', 'class_folders', 'bad'}."""
    _, _, classes = list_labelled_images(folder)  # refuses a folder without class folders
    index = {c: i for i, c in enumerate(classes)}
    f = ev._features(tower, _folder_spec(folder))
    rows = [i for i, k in enumerate(f.keys) if label_of(k) in index]
    return {"features": f.features[rows], "labels": torch.tensor([index[label_of(f.keys[i])] for i in rows]),
            "class_folders": classes, "bad": f.bad}


# ---- zero-shot ------------------------------------------------------------------------------------
@dataclass
class ZeroShotConfig:
    images: str = MISSING  # a folder with one sub-folder per class
    # 'folder,name' / 'folder,alias;alias' file, or imagenet (CLIP's names) / imagenet_timm (default: the
    # folder names; ImageNet synset folders get CLIP's names)
    classnames: Optional[str] = None
    templates: str = "simple"  # built-in set(s) or file(s) of lines with {}, joined by '+' (clip, flowers+simple)
    knowledge: str = "none"  # none | hypernym | definition: add the WordNet gloss as an alias (class_knowledge.py)

    def __post_init__(self):
        check_knowledge(self.knowledge)  # refused before any image is embedded


@EVALUATORS.register("zeroshot", description="zero-shot classification of a folder of class sub-folders")
class ZeroShot(Evaluator):
    Config = ZeroShotConfig
    scalars = ("top1", "top5", "mean_per_class")

    def run(self, model: LiTModel) -> dict[str, Any]:
        c = self.cfg
        data = self._image_side(model.image, lambda t: _labelled(self, t, c.images))
        if len(data["labels"]) == 0:
            raise ValueError(f"{c.images}: no readable images to evaluate")
        names = resolve_classnames(data["class_folders"], c.classnames, where=c.images)
        aliases, classnames = names.aliases, names.labels  # a class is reported under its label
        aliases, knowledge = add_class_knowledge(aliases, data["class_folders"], c.knowledge)
        prompts = get_templates(c.templates)
        # Prompts are checked as the text tower reads them (its tokenizer, its canonical form).
        classifier = build_classifier(lambda t: encode_texts(model, t), aliases, prompts,
                                      tokenize=token_rows(model.tokenize), labels=classnames, repeats=names.repeats)
        m = zeroshot_metrics(encode_features(model, data["features"]), data["labels"], classifier, classnames)
        extra = {"aliases": aliases} if any(len(names) > 1 for names in aliases) else {}
        extra.update({"knowledge": knowledge} if c.knowledge != "none" else {})
        return {**m, "classnames": classnames, **extra, "templates": c.templates, "n_templates": len(prompts),
                "n_skipped": len(data["bad"]), "skipped": data["bad"][:100]}


# ---- retrieval ------------------------------------------------------------------------------------
@dataclass
class RetrievalConfig:
    data: str = MISSING  # flickr8k:DIR:split, a Flickr8k folder, csv/tsv/jsonl or WebDataset shards
    split: Optional[str] = None  # for a Flickr8k folder given without one
    cache: Optional[str] = None  # an existing embedding cache of this data (default: automatic)
    chunk_size: int = 1024  # images scored at once


def flickr8k_parts(data: str) -> tuple[str | None, str | None]:
    """(folder, the split it names) for Flickr8k-style data (``flickr8k:DIR[:split]`` or a folder
    with captions.csv), else (None, None)."""
    if data.startswith("flickr8k:"):
        rest = data[len("flickr8k:"):]
        head, _, tail = rest.rpartition(":")
        return (head, tail) if head and tail in SPLITS else (rest, None)
    if Path(data).is_dir() and (Path(data) / "captions.csv").is_file():
        return data, None
    return None, None


def retrieval_spec(data: str, split: str | None) -> str:
    """``DIR`` or ``flickr8k:DIR`` plus a split -> ``flickr8k:DIR:split``; files pass through.

    A split that contradicts the one ``data`` names, or a split for data without splits, is an
    error: evaluating another split than the one asked for would be a silent wrong result.
    """
    folder, named = flickr8k_parts(data)
    if folder is None:
        if split:
            raise ValueError(f"split '{split}' asked for, but {data} has no splits (only Flickr8k-style data "
                             "has: flickr8k:DIR:SPLIT or a folder with captions.csv and splits/)")
        return data
    if named and split and named != split:
        raise ValueError(f"{data} names split '{named}' but split '{split}' was asked for: "
                         f"give one of them (e.g. flickr8k:{folder}:{split})")
    return f"flickr8k:{folder}:{split}" if split and not named else data


def split_or_default(data: str, split: str | None, default: str = "test") -> str | None:
    """``split``, else ``default`` for Flickr8k-style data that names no split (None for other data)."""
    if split is not None:
        return split
    folder, named = flickr8k_parts(data)
    return default if folder is not None and named is None else None


@EVALUATORS.register("retrieval", description="image-text retrieval Recall@1/5/10 on captioned data")
class Retrieval(Evaluator):
    Config = RetrievalConfig
    scalars = RECALL_KEYS

    def __init__(self, cfg: RetrievalConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.spec = retrieval_spec(cfg.data, cfg.split)  # a contradictory split fails here, before any work

    def run(self, model: LiTModel) -> dict[str, Any]:
        c, spec = self.cfg, self.spec
        f = self._image_side(model.image, lambda t: self._features(t, spec, cache_dir=c.cache))
        texts = [t for caps in f.captions for t in caps]
        if not texts:
            raise ValueError(f"{spec}: no captions to retrieve")
        t2i = torch.tensor([i for i, caps in enumerate(f.captions) for _ in caps])
        if model.text.locked:  # the text tower is fixed too: its features are computed once, then cached
            feats = self._text_side(model.text, lambda t: text_features(t, texts, f.folder, self.progress))
            txt = encode_text_features(model, feats)
        else:
            txt = encode_texts(model, texts)
        m = retrieval_metrics(encode_features(model, f.features), txt, t2i, chunk_size=c.chunk_size)
        return {**m, "data": spec, "n_skipped": len(f.bad)}


# ---- linear probe ---------------------------------------------------------------------------------
@dataclass
class ProbeConfig:
    train: str = MISSING  # labelled folder to fit on
    test: str = MISSING  # labelled folder to score
    protocol: str = "clip_benchmark"  # choosing C: clip_benchmark (log sweep + binary search) | quick (5 Cs)


@EVALUATORS.register("probe", description="linear probe (logistic regression) on the image tower's features")
class Probe(Evaluator):
    Config = ProbeConfig
    scalars = ("top1",)

    def __init__(self, cfg: ProbeConfig, **kw: Any):
        super().__init__(cfg, **kw)
        if cfg.protocol not in PROTOCOLS:  # before any image is embedded
            raise ConfigError(f"probe.protocol: {cfg.protocol!r} is not one of {', '.join(PROTOCOLS)}")

    def run(self, model: LiTModel | ImageTower) -> dict[str, Any]:
        tower = model.image if isinstance(model, LiTModel) else model
        return self._image_side(tower, self._fit)  # a function of the tower alone

    def _fit(self, tower: ImageTower) -> dict[str, Any]:
        tr, te = _labelled(self, tower, self.cfg.train), _labelled(self, tower, self.cfg.test)
        if tr["class_folders"] != te["class_folders"]:
            raise ValueError(f"{self.cfg.train} and {self.cfg.test} have different class folders: "
                             f"{tr['class_folders']} vs {te['class_folders']}")
        m = linear_probe(tr["features"].numpy(), tr["labels"].numpy(), te["features"].numpy(), te["labels"].numpy(),
                         protocol=self.cfg.protocol, classnames=tr["class_folders"])
        return {**m, "n_skipped": len(tr["bad"]) + len(te["bad"])}


# ---- building evaluators from config --------------------------------------------------------------
def create_evaluator(kind: str, options: Any = None, *, where: str = "evaluator", cache_root=None,
                     progress: bool = True) -> Evaluator:
    """An evaluator of ``kind`` from its options (a mapping or its Config); unknown options refused."""
    try:
        cls = EVALUATORS.resolve(kind)[0].factory
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None
    cfg = options if isinstance(options, cls.Config) else parse_options(cls.Config, options, where)
    return cls(cfg, cache_root=cache_root, progress=progress)


def list_evaluators() -> list[dict[str, str]]:
    return [{"name": e.name, "description": e.description} for e in EVALUATORS.list()]
