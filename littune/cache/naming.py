"""Where automatic caches live: one folder per (data content, tower, weights, preprocessing, views).

A cache is found by what it holds, not by how its path was spelled: the folder's digest is the
source's content fingerprint (``items.content_fingerprint``: every image's key relative to the
source root, file size and captions) with the tower's identity, so ``../shared/data``, an absolute
path and a symlinked folder all find one cache, and a changed caption or an added image gets a
folder of its own (the old one stays valid for the old data). The path is kept as information: the
manifest records it (``canonical_spec``) and the folder name starts with the source's kind.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..towers import ImageTower


def default_cache_root() -> Path:
    """Where automatic caches go: $LITTUNE_CACHE_DIR, else ~/.cache/littune."""
    return Path(os.environ.get("LITTUNE_CACHE_DIR") or Path.home() / ".cache" / "littune")


def canonical_spec(spec: str) -> str:
    """The spec with local paths made absolute: what the manifest records as the cache's source.

    ``kind:PATH[:rest]`` specs (``flickr8k:DIR:split``, ``folder:DIR``) keep their kind and rest.
    """
    if "://" in spec or spec.startswith("pipe:"):
        return spec
    m = re.match(r"^([A-Za-z][A-Za-z0-9_]+):(.*)$", spec)
    if m:
        kind, rest = m.groups()
        path, sep, tail = rest.partition(":")
        return f"{kind}:{os.path.abspath(path)}{sep}{tail}"
    return os.path.abspath(spec)


def source_kind(spec: str) -> str:
    """A path-free label of what a spec names (``flickr8k_test``, ``folder``, ``csv``, ``wds``): the
    start of the folder name, for people; the digest alone decides which cache is which."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9_]+):(?!//)(.*)$", spec)
    if m and m.group(1) != "pipe":
        kind, rest = m.groups()
        split = rest.rpartition(":")[2] if kind == "flickr8k" and ":" in rest else ""
        return f"{kind}_{split}" if split else kind
    lower = spec.lower()
    for ext in ("csv", "tsv", "jsonl"):
        if lower.endswith("." + ext):
            return ext
    return "wds" if ".tar" in lower or "::" in spec or spec.startswith("pipe:") else "data"


def auto_cache_dir(root: str | Path | None, spec: str, tower: ImageTower, views: int, content: str) -> Path:
    """The automatic cache of the data that ``content`` fingerprints (``items.content_fingerprint``),
    as embedded by ``tower`` with ``views`` augmented views; ``spec`` only labels the folder."""
    pre = sorted(tower.preprocess.to_dict().items())
    precision = getattr(tower, "cache_precision", "fp32")  # fp32 caches keep the folders they had before
    key = f"{content}|{tower.name}|{tower.fingerprint()}|{pre}|{views}"
    key += "" if precision == "fp32" else f"|{precision}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source_kind(spec)).strip("_")
    return Path(root or default_cache_root()) / f"{slug}-{re.sub(r'[^A-Za-z0-9]+', '_', tower.name)}-{digest}"
