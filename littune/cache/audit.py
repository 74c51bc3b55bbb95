"""``littune cache verify DIR`` in Python: every cache in a folder checked, with every file's SHA-256.

With ``sources`` the images the cache was embedded from are checked too (``sources.py``): their sizes,
or with ``deep`` their bytes re-read and re-hashed.

An image cache folder may hold text caches of its captions (``text/<tower>-<digest>/``, see
``text.py``) and prefix caches (``prefix/<tower>-k<k>-<dtype>-<digest>/``, ``prefix.py``); they are
checked too. A text or prefix cache folder alone is checked as one.
"""
from __future__ import annotations

from pathlib import Path

from .manifest import Manifest
from .prefix import PrefixManifest
from .sources import check_sources
from .text import TextManifest, check_text_cache
from .verify import VerifyReport, check_cache


def verify_cache(folder: str | Path, hashes: bool = True, sources: bool = True,
                 deep: bool = False) -> list[VerifyReport]:
    """Check a cache folder: an image cache (and the text caches inside it) or a text cache alone;
    ``sources``: also the image cache's source images' sizes (``deep``: their re-read SHA-256)."""
    folder = Path(folder)
    if TextManifest.is_text(folder):
        return [check_text_cache(folder, hashes)]
    if PrefixManifest.is_text(folder):
        return [check_text_cache(folder, hashes, PrefixManifest)]
    m = Manifest.read(folder)
    report = check_cache(folder, m, hashes=hashes)
    if (sources or deep) and m.complete and -1 not in report.problems:  # the shards' records are sound
        check_sources(report, m, deep)
    reports = [report]
    texts = sorted(p for p in (folder / "text").iterdir() if p.is_dir()) if (folder / "text").is_dir() else []
    reports += [check_text_cache(sub, hashes) for sub in texts if TextManifest.is_text(sub)]
    prefixes = sorted(p for p in (folder / "prefix").iterdir() if p.is_dir()) if (folder / "prefix").is_dir() else []
    reports += [check_text_cache(sub, hashes, PrefixManifest) for sub in prefixes if PrefixManifest.is_text(sub)]
    return reports


__all__ = ["verify_cache"]
