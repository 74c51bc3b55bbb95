"""Evaluators of a trained model on data: zero-shot, retrieval, linear probe.

Each is a function of (model, data) returning named metrics. The image side reuses the
embedding cache whenever the image tower is locked (so a second evaluation embeds nothing),
and class-name text embeddings are computed once per evaluation.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cache import EmbedOptions, EmbeddingCache, ensure_cache
from ..cache.items import ImageItem
from ..cache.writer import embed_items
from ..cache.manifest import Manifest
from ..data.folders import list_labelled_images
from ..data.images import BadInputLog
from ..encode import encode_features, encode_texts, tower_features
from ..model import LiTModel
from ..towers import ImageTower
from .classnames import load_classnames
from .probe import linear_probe
from .retrieval import retrieval_metrics
from .templates import get_templates
from .zeroshot import build_classifier, zeroshot_metrics


def _cache_dir(cache_root: str | Path | None, spec: str, tower: ImageTower) -> Path:
    from ..train.data import auto_cache_dir

    return auto_cache_dir(str(cache_root) if cache_root else None, spec, tower, 0)


def folder_features(tower: ImageTower, root: str | Path, cache_root: str | Path | None = None,
                    progress: bool = True) -> dict:
    """Tower features of a labelled folder: {'features' (n, D), 'labels' (n,), 'class_folders', 'bad'}.

    Cached (and reused) for a locked tower; computed live otherwise. Unreadable images are
    skipped, reported, and left out of the metrics' ``n``.
    """
    root = Path(os.path.abspath(root))  # abspath, not resolve: class folders may be symlinks
    paths, labels, folders = list_labelled_images(root)
    keys = [os.path.relpath(os.path.abspath(p), root) for p in paths]
    label_of = dict(zip(keys, labels))
    if tower.locked:
        out = _cache_dir(cache_root, f"folder:{root}", tower)
        if not _complete(out):
            items = [ImageItem(k, str(p)) for k, p in zip(keys, paths)]
            embed_items(items, tower, out, source=f"folder:{root}", opts=EmbedOptions(progress=progress))
        cache = EmbeddingCache(out)
        cache.check(tower)
        feats, kept_keys = cache.all(), cache.keys
        bad = [{"key": b.key, "reason": b.reason} for b in BadInputLog.read(out / "bad_inputs.tsv")]
    else:
        feats, kept, bad_rows = tower_features(tower, paths, progress=progress, desc=f"embed {root.name}")
        kept_keys = [keys[i] for i in kept]
        bad = [{"key": keys[int(k)], "reason": r} for k, r in bad_rows]
    return {"features": feats, "labels": torch.tensor([label_of[k] for k in kept_keys]),
            "class_folders": folders, "bad": bad}


def _complete(folder: Path) -> bool:
    try:
        return Manifest.read(folder).complete
    except FileNotFoundError:
        return False


def eval_zeroshot(model: LiTModel, images: str | Path, classnames_file: str | None = None,
                  templates: str = "simple", cache_root: str | Path | None = None, progress: bool = True) -> dict:
    data = folder_features(model.image, images, cache_root, progress)
    if len(data["labels"]) == 0:
        raise ValueError(f"{images}: no readable images to evaluate")
    classnames = load_classnames(data["class_folders"], classnames_file)
    prompts = get_templates(templates)
    classifier = build_classifier(lambda t: encode_texts(model, t), classnames, prompts)
    m = zeroshot_metrics(encode_features(model, data["features"]), data["labels"], classifier, classnames)
    return {**m, "classnames": classnames, "templates": templates, "n_templates": len(prompts),
            "n_skipped": len(data["bad"]), "skipped": data["bad"][:100]}


def retrieval_spec(data: str, split: str | None) -> str:
    """``DIR`` or ``flickr8k:DIR`` plus a split -> ``flickr8k:DIR:split``; files pass through."""
    p = Path(data)
    if data.startswith("flickr8k:"):
        parts = data.split(":")
        return data if len(parts) == 3 or split is None else f"{data}:{split}"
    if p.is_dir() and (p / "captions.csv").is_file() and split:
        return f"flickr8k:{p}:{split}"
    return data


def eval_retrieval(model: LiTModel, data: str, split: str | None = "test", cache_root: str | Path | None = None,
                   progress: bool = True, chunk_size: int = 1024) -> dict:
    """Image-to-text and text-to-image R@1/5/10, every caption of an image a positive."""
    spec = retrieval_spec(data, split)
    if model.image.locked:
        cache = ensure_cache(spec, model.image, _cache_dir(cache_root, spec, model.image),
                             EmbedOptions(progress=progress))
        feats, captions, n_bad = cache.all(), cache.captions, cache.manifest.n_bad
    else:
        from ..cache import load_items

        items, _ = load_items(spec)
        feats, kept, bad = tower_features(model.image, [it.image for it in items], progress=progress)
        captions, n_bad = [items[i].captions for i in kept], len(bad)
    texts = [c for caps in captions for c in caps]
    t2i = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    m = retrieval_metrics(encode_features(model, feats), encode_texts(model, texts), t2i, chunk_size=chunk_size)
    return {**m, "data": spec, "n_skipped": n_bad}


def eval_probe(model_or_tower: LiTModel | ImageTower, train: str | Path, test: str | Path,
               cache_root: str | Path | None = None, progress: bool = True) -> dict:
    """Logistic regression on the image tower's own features: what the tower knows."""
    tower = model_or_tower.image if isinstance(model_or_tower, LiTModel) else model_or_tower
    tr = folder_features(tower, train, cache_root, progress)
    te = folder_features(tower, test, cache_root, progress)
    if tr["class_folders"] != te["class_folders"]:
        raise ValueError(f"{train} and {test} have different class folders: "
                         f"{tr['class_folders']} vs {te['class_folders']}")
    m = linear_probe(tr["features"].numpy(), tr["labels"].numpy(), te["features"].numpy(), te["labels"].numpy())
    return {**m, "n_skipped": len(tr["bad"]) + len(te["bad"])}


__all__ = ["eval_zeroshot", "eval_retrieval", "eval_probe", "folder_features",
           "retrieval_spec"]

