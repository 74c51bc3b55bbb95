"""Where automatic caches live: one folder per (data set, tower, weights, preprocessing, views).

A changed tower or other weights never reuse a cache; the same data reached from another working
folder does (local paths are made absolute before naming).
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
    """The same data named the same way from any working folder: local paths made absolute.

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


def auto_cache_dir(root: str | None, spec: str, tower: ImageTower, views: int) -> Path:
    """One folder per (data set, tower, weights, views): a changed tower never reuses a cache."""
    spec = canonical_spec(spec)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", spec).strip("_")[-60:]
    pre = sorted(tower.preprocess.to_dict().items())
    digest = hashlib.sha1(f"{spec}|{tower.name}|{tower.fingerprint()}|{pre}|{views}".encode()).hexdigest()[:10]
    return Path(root or default_cache_root()) / f"{slug}-{re.sub(r'[^A-Za-z0-9]+', '_', tower.name)}-{digest}"


