"""The image side of an evaluation: tower features of a data spec, through the cache front door.

A locked tower's features come from the embedding cache (made once by ``cache.ensure_cache`` and
reused by every later evaluation, the index and training alike); an unlocked tower changes at every
step, so its features are computed live. Unreadable images are skipped either way and reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cache import EmbedOptions, auto_cache_dir, ensure_cache, load_items
from ..data.images import BadInputLog
from ..encode import tower_features
from ..towers import ImageTower


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (n, D) the tower's pooled features of the readable images
    keys: list[str]  # (n,) their keys, in row order
    captions: list[list[str]]  # (n,) their captions ([] for folders of images)
    bad: list[dict] = field(default_factory=list)  # {"key", "reason"} of every skipped image
    folder: Path | None = None  # the embedding cache they came from (None: computed live)


def image_features(tower: ImageTower, spec: str, cache_root: str | Path | None = None, progress: bool = True,
                   cache_dir: str | Path | None = None, **source_kwargs) -> ImageFeatures:
    """Features of every readable image of ``spec`` (csv/jsonl/WebDataset, flickr8k:DIR:split, folder:DIR)."""
    if tower.locked:
        out = cache_dir or auto_cache_dir(str(cache_root) if cache_root else None, spec, tower, 0)
        cache = ensure_cache(spec, tower, out, EmbedOptions(progress=progress), **source_kwargs)
        bad = [{"key": b.key, "reason": b.reason} for b in BadInputLog.read(Path(out) / "bad_inputs.tsv")]
        return ImageFeatures(cache.all(), cache.keys, cache.captions, bad, Path(out))
    items, _ = load_items(spec, **source_kwargs)
    feats, kept, bad_rows = tower_features(tower, [it.image for it in items], progress=progress,
                                           desc=f"embed {Path(spec.split(':')[-1]).name or spec}")
    bad = [{"key": items[int(i)].key, "reason": r} for i, r in bad_rows]
    return ImageFeatures(feats, [items[i].key for i in kept], [items[i].captions for i in kept], bad)


def text_features(tower, texts: list[str], image_cache: Path | None, progress: bool = True) -> torch.Tensor:
    """A locked text tower's features of ``texts`` (the captions of ``image_cache``): from a text cache
    kept inside that image cache, so later evaluations (and training) reuse them."""
    from ..cache.text import TextEmbedOptions, embed_texts, ensure_text_cache, text_cache_dir

    opts = TextEmbedOptions(progress=progress)
    if image_cache is None:  # nowhere to keep them: compute (once per evaluator) in a temporary folder
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return embed_texts(texts, tower, tmp, opts).all()
    return ensure_text_cache(texts, tower, text_cache_dir(image_cache, tower), opts).all()
