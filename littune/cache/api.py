"""One call from a data spec to a ready cache: embed what is missing, reuse what matches."""
from __future__ import annotations

from pathlib import Path

from ..towers import ImageTower
from .items import load_items
from .manifest import Manifest
from .reader import EmbeddingCache
from .writer import EmbedOptions, embed_items


def embed(spec: str, tower: ImageTower, out: str | Path, opts: EmbedOptions | None = None,
          **source_kwargs) -> Manifest:
    """Embed the data set ``spec`` with ``tower`` into ``out`` (resumes a partial run)."""
    items, bad_rows = load_items(spec, **source_kwargs)
    return embed_items(items, tower, out, source=spec, opts=opts, bad_rows=bad_rows)


def ensure_cache(spec: str, tower: ImageTower, out: str | Path, opts: EmbedOptions | None = None,
                 **source_kwargs) -> EmbeddingCache:
    """The cache at ``out`` if it is complete and made by ``tower``; otherwise embed (or finish) it."""
    out = Path(out)
    try:
        m = Manifest.read(out)
    except FileNotFoundError:
        m = None
    if m is None or not m.complete:
        embed(spec, tower, out, opts, **source_kwargs)
    cache = EmbeddingCache(out)
    cache.check(tower)
    return cache
