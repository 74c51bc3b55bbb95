"""``littune cache verify DIR`` in Python: every cache in a folder checked, with every file's SHA-256.

An image cache folder may hold text caches of its captions (``text/<tower>-<digest>/``, see
``text.py``); they are checked too. A text cache folder alone is checked as one.
"""
from __future__ import annotations

from pathlib import Path

from .text import TextManifest, check_text_cache
from .verify import VerifyReport, check_cache


def verify_cache(folder: str | Path, hashes: bool = True) -> list[VerifyReport]:
    """Check a cache folder: an image cache (and the text caches inside it) or a text cache alone."""
    folder = Path(folder)
    if TextManifest.is_text(folder):
        return [check_text_cache(folder, hashes)]
    reports = [check_cache(folder, hashes=hashes)]
    texts = sorted(p for p in (folder / "text").iterdir() if p.is_dir()) if (folder / "text").is_dir() else []
    reports += [check_text_cache(sub, hashes) for sub in texts if TextManifest.is_text(sub)]
    return reports


__all__ = ["verify_cache"]
