"""bench_scale's synthetic cache is one `littune train` opens: a cache format change that the
benchmark's writer does not follow fails here, not in an 8-minute benchmark run."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from littune.cache.reader import EmbeddingCache

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


def test_bench_scale_cache_opens_with_every_row(shared_data, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.SHARED = shared_data
    cache = EmbeddingCache(bench.make_cache(tmp_path / "cache"))
    assert len(cache) == 30_000  # Flickr8k train's captions, one row each
    row = cache.rows(np.array([0, 29_999])).numpy()
    assert row.shape == (2, 1280) and row.dtype in (np.float16, np.float32) and np.isfinite(row).all()
