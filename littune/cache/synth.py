"""Synthetic embedding caches of any size, in the very format ``littune embed`` writes.

For measuring what grows with the number of rows (``benchmarks/bench_cache_scale.py``, the hidden
``littune cache synth``): shards of ``shard_size`` rows of random features of the tower's width
(float16 by default: 1280-d rows are 2,560 bytes, so 10 million are 25.6 GB), metadata parquet with a
key, a made-up image path and generated captions (one to ``max_captions`` per image, drawn from a
small grammar, so their lengths look like Flickr8k's), empty bad-input lists and a manifest carrying
the tower's identity, so ``littune train`` accepts the cache as that tower's. The features are noise:
speed and memory do not depend on their values. No source images exist, so no source hashes are
recorded (``littune cache verify`` notes that).

Written shard by shard with the writer's own functions: memory stays at one shard whatever the size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import BadInputLog
from .items import ImageItem
from .manifest import Manifest
from .writer import _write_metadata, finalize, save_atomic, save_npy
from .verify import bad_file

SUBJECTS = ["a dog", "two children", "a man in a red shirt", "a woman", "a brown horse", "a group of people",
            "a little girl", "a cyclist", "a black cat", "an old man", "three boys", "a surfer"]
VERBS = ["runs across", "is sitting on", "jumps over", "walks along", "is playing in", "stands next to",
         "climbs", "looks at", "rides through", "waits beside"]
PLACES = ["the grass", "a wooden bench", "the beach", "a snowy hill", "a busy street", "the water",
          "a rock wall", "the park", "a dirt road", "the fence"]


@dataclass
class SynthReport:
    rows: int
    shards: int
    write_s: float  # features, metadata and the manifest (with every file's SHA-256)
    bytes_on_disk: int


def captions_for(rng: np.random.Generator, start: int, n: int, max_captions: int) -> list[list[str]]:
    """``n`` images' captions, 1..max_captions each, numbered so no two images share one."""
    counts = rng.integers(1, max_captions + 1, n)
    s, v, p = (rng.integers(0, len(x), int(counts.sum())) for x in (SUBJECTS, VERBS, PLACES))
    out, j = [], 0
    for i, c in enumerate(counts):
        out.append([f"{SUBJECTS[s[j + q]]} {VERBS[v[j + q]]} {PLACES[p[j + q]]} (#{start + i})" for q in range(c)])
        j += c
    return out


def write_synthetic(folder: str | Path, rows: int, *, tower: str, fingerprint: str, preprocess: dict,
                    embed_dim: int, shard_size: int = 4096, dtype: str = "float16", max_captions: int = 1,
                    seed: int = 0) -> SynthReport:
    """Write a complete cache of ``rows`` synthetic rows into ``folder`` (which must not hold one)."""
    folder = Path(folder)
    if (folder / "manifest.json").exists():
        raise FileExistsError(f"{folder} already holds a cache; choose a new folder")
    if rows < 1 or shard_size < 1:
        raise ValueError(f"rows {rows} and shard_size {shard_size} must be positive")
    t0 = time.perf_counter()
    m = Manifest(tower=tower, fingerprint=fingerprint, preprocess=preprocess, embed_dim=embed_dim, dtype=dtype,
                 source=f"synthetic:{rows}:seed{seed}", shard_size=shard_size, n_items=rows)
    folder.mkdir(parents=True, exist_ok=True)
    m.write(folder)
    n_captions = 0
    for k in range(m.n_shards):
        start = k * shard_size
        n = min(shard_size, rows - start)
        rng = np.random.default_rng([seed, k])  # per shard: any shard can be rewritten alone
        caps = captions_for(rng, start, n, max_captions)
        n_captions += sum(map(len, caps))
        items = [ImageItem(f"synth/{start + i:09d}.jpg", "", c) for i, c in enumerate(caps)]
        feats = rng.standard_normal((n, embed_dim), dtype=np.float32).astype(dtype)
        save_atomic(folder / bad_file(k), lambda p: BadInputLog().write(p))
        _write_metadata(folder / "metadata" / f"metadata_{k}.parquet", items)
        save_atomic(folder / "img_emb" / f"img_emb_{k}.npy", lambda p: save_npy(p, feats))
    m.n_captions = n_captions
    finalize(folder, m)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return SynthReport(rows, m.n_shards, time.perf_counter() - t0, size)


__all__ = ["SynthReport", "write_synthetic", "captions_for"]
