"""Helpers of the cache fault tests: a tiny embedded data set."""
from __future__ import annotations

from pathlib import Path

from tests.cache.tiny_data import make_dataset


def embedded(root: Path, tower, n: int, **opts) -> dict[str, Path]:
    """``n`` tiny images with captions at ``root/data`` embedded by ``tower`` into ``root/cache``."""
    from littune.cache import EmbedOptions, embed

    csv = make_dataset(root / "data", n)
    embed(str(csv), tower, root / "cache", EmbedOptions(**opts))
    return {"csv": csv, "cache": root / "cache"}
