"""One call from a data spec to a ready cache: embed what is missing, reuse what matches."""
from __future__ import annotations

from pathlib import Path

from ..towers import ImageTower
from .items import ImageItem, load_items
from .manifest import CacheMismatch, Manifest
from .reader import EmbeddingCache
from .writer import EmbedOptions, embed_items, shard_done


def embed(spec: str, tower: ImageTower, out: str | Path, opts: EmbedOptions | None = None,
          verify: bool = False, **source_kwargs) -> Manifest:
    """Embed the data set ``spec`` with ``tower`` into ``out`` (resumes a partial run, re-embeds broken
    shards; ``verify``: also those whose files' SHA-256 changed)."""
    items, bad_rows = load_items(spec, **source_kwargs)
    return embed_items(items, tower, out, source=spec, opts=opts, bad_rows=bad_rows, verify=verify)


def ensure_cache(spec: str, tower: ImageTower, out: str | Path, opts: EmbedOptions | None = None,
                 **source_kwargs) -> EmbeddingCache:
    """The cache at ``out`` if it is complete and made by ``tower``; otherwise embed (or finish) it."""
    out = Path(out)
    items, bad_rows = load_items(spec, **source_kwargs)
    try:
        m = Manifest.read(out)
    except FileNotFoundError:
        m = None
    if m is None or not m.complete or not all(shard_done(out, k) for k in range(m.n_shards)):
        embed_items(items, tower, out, source=spec, opts=opts, bad_rows=bad_rows)  # resumes, repairs missing shards
    cache = EmbeddingCache(out)
    cache.check(tower)
    check_source(cache, items, spec)
    return cache


def check_source(cache: EmbeddingCache, items: list[ImageItem], spec: str) -> None:
    """Refuse a complete cache whose source has changed since (other images or captions)."""
    m = cache.manifest
    diffs = [f"{name}: cache has {have}, source has {want}" for name, have, want in (
        ("n_items", m.n_items, len(items)), ("n_captions", m.n_captions, sum(len(i.captions) for i in items)))
        if have != want]
    if not diffs:
        captions = {it.key: it.captions for it in items}
        for key, caps in zip(cache.keys, cache.captions):
            if captions.get(key) != caps:
                diffs.append(f"image {key!r}: not in the source, or its captions changed")
                break
    if diffs:
        raise CacheMismatch(f"embedding cache {cache.folder} was made from another version of {spec}:\n  "
                            + "\n  ".join(diffs) + "\nre-embed into a new folder (or delete this one)")
