"""One call from a data spec to a ready cache: embed what is missing, reuse what matches.

A cache is found by what it holds (naming.py): ``ensure_cache(spec, tower)`` without a folder uses
the automatic one of the source's content fingerprint, so the same data under another spelling
finds it and changed data gets a new one. A folder the user named (``--out``, ``data.train_cache``)
is never silently overwritten: one made from other data is refused, naming what changed.
"""
from __future__ import annotations

from pathlib import Path

from ..towers import ImageTower
from .items import ImageItem, content_fingerprint, load_items
from .manifest import CacheMismatch, Manifest
from .naming import auto_cache_dir, canonical_spec
from .reader import EmbeddingCache
from .writer import EmbedOptions, embed_items, say_complete, shard_done


def embed(spec: str, tower: ImageTower, out: str | Path, opts: EmbedOptions | None = None,
          verify: bool = False, **source_kwargs) -> Manifest:
    """Embed the data set ``spec`` with ``tower`` into ``out`` (resumes a partial run, re-embeds broken
    shards; ``verify``: also those whose files' SHA-256 changed)."""
    items, bad_rows = load_items(spec, **source_kwargs)
    return embed_items(items, tower, out, source=canonical_spec(spec), opts=opts, bad_rows=bad_rows, verify=verify)


def ensure_cache(spec: str, tower: ImageTower, out: str | Path | None = None, opts: EmbedOptions | None = None,
                 *, cache_root: str | Path | None = None, **source_kwargs) -> EmbeddingCache:
    """The cache at ``out`` if it is complete, made by ``tower`` from this data; otherwise embed (or finish) it.

    ``out=None``: the automatic folder of this data's content under ``cache_root`` (else
    ``$LITTUNE_CACHE_DIR``, else ``~/.cache/littune``).
    """
    opts = opts or EmbedOptions()
    items, bad_rows = load_items(spec, **source_kwargs)
    content = content_fingerprint(items)
    out = Path(out) if out is not None else auto_cache_dir(cache_root, spec, tower, opts.views, content)
    try:
        m = Manifest.read(out)
    except FileNotFoundError:
        m = None
    if m is None or not m.complete or not all(shard_done(out, k) for k in range(m.n_shards)):
        # resumes, repairs missing shards; refuses a partial cache of other data
        embed_items(items, tower, out, source=canonical_spec(spec), opts=opts, bad_rows=bad_rows, content=content)
    else:
        say_complete(out, m, opts.progress)
    cache = EmbeddingCache(out)
    cache.check(tower)
    check_source(cache, items, spec, content)
    return cache


def check_source(cache: EmbeddingCache, items: list[ImageItem], spec: str, content: str | None = None) -> None:
    """Refuse a complete cache whose source has changed since (other images, file sizes or captions)."""
    m = cache.manifest
    content = content or content_fingerprint(items)
    if m.content == content:
        return
    diffs = [f"{name}: cache has {have}, source has {want}" for name, have, want in (
        ("n_items", m.n_items, len(items)), ("n_captions", m.n_captions, sum(len(i.captions) for i in items)))
        if have != want]
    if not diffs:
        captions = {it.key: it.captions for it in items}
        for key, caps in zip(cache.keys, cache.captions):
            if captions.get(key) != caps:
                diffs.append(f"image {key!r}: not in the source, or its captions changed")
                break
    if not diffs and m.content:  # same names and captions: a file's size changed, or a skipped one appeared
        diffs.append(f"content fingerprint: cache has {m.content[:12]}, source has {content[:12]} "
                     "(an image file of another size, or one that was missing is back)")
    if diffs:
        raise CacheMismatch(f"embedding cache {cache.folder} was made from another version of {spec}:\n  "
                            + "\n  ".join(diffs) + "\nre-embed into a new folder (or delete this one)")
