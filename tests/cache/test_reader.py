"""EmbeddingCache on its own, without a tower (fast: the mutation run of reader.py reads it per mutant).

A synthetic cache in embed's format (``cache/synth.py``): 3 shards of 4 rows and one of 2, float32,
so every row read can be compared with the shard files bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from littune.cache import CacheMismatch, EmbeddingCache, Manifest
from littune.cache.synth import write_synthetic

ROWS, SHARD, DIM, VIEWS = 14, 4, 8, 2  # shards of rows 0-3, 4-7, 8-11, 12-13


def _emb(folder: Path, k: int, sub: str = "img_emb") -> np.ndarray:
    return np.load(folder / sub / f"img_emb_{k}.npy")


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "cache"
    write_synthetic(out, ROWS, tower="test-vit", fingerprint="f" * 16, preprocess={}, embed_dim=DIM,
                    shard_size=SHARD, dtype="float32", max_captions=2, seed=7)
    return out


@pytest.fixture
def with_views(folder) -> Path:
    """The same cache with VIEWS augmented views per row, as ``embed --views 2`` stores them."""
    m = Manifest.read(folder)
    rng = np.random.default_rng(1)
    for s in m.shards:
        (folder / "img_emb_views").mkdir(exist_ok=True)
        np.save(folder / "img_emb_views" / f"img_emb_{s['index']}.npy",
                rng.standard_normal((s["count"], VIEWS, DIM), dtype=np.float32))
    m.views = VIEWS
    m.write(folder)
    return folder


def _all(folder: Path) -> np.ndarray:
    return np.concatenate([_emb(folder, k) for k in range(4)])


def _overwrite(path: Path, row: int, value: float) -> None:
    """Change one row of a shard file in place (the same file, as a memory map sees it)."""
    arr = np.load(path, mmap_mode="r+")
    arr[row] = value
    arr.flush()
    del arr


def test_rows_are_the_shard_files_rows_in_the_order_asked(folder):
    cache = EmbeddingCache(folder)
    want = _all(folder)
    assert len(cache) == ROWS and cache.embed_dim == DIM
    index = [13, 0, 5, 4, 11, 12, 3]
    got = cache.rows(index)
    assert got.dtype == torch.float32 and got.shape == (7, DIM)
    np.testing.assert_array_equal(got.numpy(), want[index])
    np.testing.assert_array_equal(cache.all().numpy(), want)


@pytest.mark.parametrize("make", [
    lambda i: np.asarray(i, dtype=np.uint64),  # unsigned: minus an int64 start, numpy would give floats
    lambda i: np.asarray(i, dtype=np.int32),
    lambda i: torch.tensor(i, dtype=torch.int64),
    lambda i: torch.tensor(i, dtype=torch.int32),
], ids=["uint64", "int32", "torch-int64", "torch-int32"])
def test_rows_take_any_integer_index(folder, make):
    cache = EmbeddingCache(folder)
    index = [12, 1, 9, 6, 13]
    np.testing.assert_array_equal(cache.rows(make(index)).numpy(), _all(folder)[index])


def test_starts_written_as_json_floats_read_the_same_rows(folder):
    """JSON does not tell 8 from 8.0; a manifest rewritten by another tool may say 8.0."""
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    for s in m["shards"]:
        s["start"] = float(s["start"])
    path.write_text(json.dumps(m))
    cache = EmbeddingCache(folder)
    np.testing.assert_array_equal(cache.rows([13, 4, 0, 8]).numpy(), _all(folder)[[13, 4, 0, 8]])


def test_opening_reads_no_rows_they_are_read_through_the_memory_map(with_views):
    cache = EmbeddingCache(with_views)
    # A row changed on disk after opening is what rows() returns: nothing was read up front.
    _overwrite(with_views / "img_emb" / "img_emb_1.npy", 2, 5.0)
    _overwrite(with_views / "img_emb_views" / "img_emb_2.npy", 1, -3.0)
    np.testing.assert_array_equal(cache.rows([6]).numpy(), np.full((1, DIM), 5.0, np.float32))
    got = cache.rows([9, 9, 6], view=np.array([1, 2, 0])).numpy()
    np.testing.assert_array_equal(got, np.stack([np.full(DIM, -3.0), np.full(DIM, -3.0),
                                                 np.full(DIM, 5.0)]).astype(np.float32))


def test_views_pick_the_plain_row_or_the_augmented_one(with_views):
    cache = EmbeddingCache(with_views)
    views = np.concatenate([_emb(with_views, k, "img_emb_views") for k in range(4)])
    index, view = np.array([0, 13, 5, 5, 10]), np.array([0, 2, 1, 0, 2])
    want = [_all(with_views)[0], views[13, 1], views[5, 0], _all(with_views)[5], views[10, 1]]
    np.testing.assert_array_equal(cache.rows(index, view).numpy(), np.stack(want))


def test_resident_keeps_the_most_recently_used_shards_whole(folder):
    cache = EmbeddingCache(folder)
    want = _all(folder)
    cache.resident(2)
    assert cache.captions.max_shards == 2  # the captions column keeps as many shards
    for rows, held in [([0, 1], [0]), ([5], [0, 1]), ([2], [1, 0]), ([9, 3], [0, 2]), ([13], [2, 3])]:
        np.testing.assert_array_equal(cache.rows(rows).numpy(), want[rows])
        assert list(cache._resident) == held, rows  # least recently used first; at most 2
    # Held shards were read whole: a change on disk is not seen until the shard is read again.
    _overwrite(folder / "img_emb" / "img_emb_3.npy", 0, 7.0)
    _overwrite(folder / "img_emb" / "img_emb_1.npy", 0, 7.0)
    np.testing.assert_array_equal(cache.rows([12]).numpy(), want[[12]])  # shard 3: held, old row
    np.testing.assert_array_equal(cache.rows([4]).numpy(), np.full((1, DIM), 7.0, np.float32))  # re-read
    assert list(cache._resident) == [3, 1]
    caps = cache.captions
    caps.take([0, 5, 9, 13])
    assert len(caps._loaded) == 2


def test_an_unfinished_cache_says_how_to_finish_it(folder):
    m = Manifest.read(folder)
    m.complete = False
    m.write(folder)
    with pytest.raises(CacheMismatch, match=r"embedding did not finish; run the same `littune embed` command "
                                            r"again to complete it$"):
        EmbeddingCache(folder)
