"""Caches past memory (issue 24, items 1-2): a synthetic cache in embed's format, metadata read as
Arrow columns (never Python lists of every row), and a shuffle buffer of shards that keeps an epoch
a permutation (no image twice in a batch) while holding only the buffer's shards in memory.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

import littune.train.data as train_data
from littune.cache import EmbeddingCache, verify_cache
from littune.cache.columns import MetadataColumn
from littune.cli import main
from littune.train import Trainer, load_config
from littune.train.batches import PairSchedule
from tests.cache.conftest import tokenizer_file, tower_weights  # noqa: F401  (session fixtures)
from tests.cache.tiny_data import TOWER, model_overrides

ROWS, SHARD = 50, 8  # 7 shards, the last of 2 rows


@pytest.fixture(scope="module")
def synth(tmp_path_factory, tower_weights):  # noqa: F811
    out = tmp_path_factory.mktemp("synth") / "cache"
    assert main(["cache", "synth", "--rows", str(ROWS), "--out", str(out), "--tower", TOWER, "--checkpoint",
                 str(tower_weights), "--shard-size", str(SHARD), "--max-captions", "3"]) == 0
    return out


def test_synth_writes_the_format_embed_writes(synth, capsys):
    m = json.loads((synth / "manifest.json").read_text())
    assert (m["count"], m["n_items"], m["complete"], len(m["shards"]), m["embed_dim"]) == (ROWS, ROWS, True, 7, 64)
    assert np.load(synth / "img_emb" / "img_emb_6.npy").shape == (2, 64)
    meta = pq.read_table(synth / "metadata" / "metadata_1.parquet").to_pydict()
    assert meta["key"][0] == "synth/000000008.jpg" and meta["caption"][0] == meta["captions"][0][0]
    assert m["n_captions"] == sum(len(c) for k in range(7)
                                  for c in pq.read_table(synth / "metadata" / f"metadata_{k}.parquet")["captions"].to_pylist())
    (report,) = verify_cache(synth)
    assert report.ok and report.notes == ["shards 0-6: no source hashes recorded (embedded by an older littune or "
                                          "written synthetically)"]


def test_metadata_is_read_as_arrow_columns_shard_by_shard(synth):
    cache = EmbeddingCache(synth)
    caps = cache.captions
    assert isinstance(caps, MetadataColumn) and caps.nbytes() == 0  # nothing read by opening
    want = [c for k in range(7) for c in pq.read_table(synth / "metadata" / f"metadata_{k}.parquet")["captions"].to_pylist()]
    assert caps[17] == want[17] and caps[-1] == want[-1]
    assert len(caps._loaded) == 2  # the shards of rows 17 and 49 only
    assert caps.take([49, 0, 17, 9]) == [want[49], want[0], want[17], want[9]]
    assert list(caps) == want and caps == want and caps.counts().tolist() == [len(c) for c in want]
    assert list(cache.keys)[:2] == ["synth/000000000.jpg", "synth/000000001.jpg"]
    caps.max_shards = 2
    caps.take(np.arange(ROWS))
    assert len(caps._loaded) == 2  # bounded: the least recently used shards were dropped
    with pytest.raises(IndexError, match="row 50 of a cache of 50 rows"):
        caps[ROWS]


def test_a_shuffle_buffer_keeps_each_epoch_a_permutation_from_few_shards():
    starts = [0, 8, 16, 24, 32, 40, 48]  # six shards of 8: windows of 16 rows
    n_caps = np.ones(48, np.int64)
    s = PairSchedule(n_caps, batch_size=4, seed=3, shard_starts=starts, buffer=2)
    for e in range(2):
        order = s.epoch(e)[0]
        assert sorted(order.tolist()) == list(range(48))  # each image once per epoch: none twice in a batch
        shard = np.searchsorted(starts, order, side="right") - 1
        windows = [set(shard[w:w + 16].tolist()) for w in range(0, 48, 16)]
        assert all(len(w) == 2 for w in windows) and set().union(*windows) == set(range(6))
    for step in range(12):  # every batch: distinct rows from at most buffer + 1 shards
        rows = s.batch(step)[0]
        assert len(set(rows.tolist())) == 4
        assert len(set((np.searchsorted(starts, rows, side="right") - 1).tolist())) <= 3
    assert not np.array_equal(s.epoch(0)[0], s.epoch(1)[0])
    # buffer 0: the uniform shuffle, exactly as before shard options existed
    assert np.array_equal(PairSchedule(n_caps, 4, seed=3, shard_starts=starts).epoch(1)[0],
                          np.random.default_rng([3, 1]).permutation(48))
    with pytest.raises(ValueError, match="data.shuffle_buffer -1"):
        PairSchedule(n_caps, 4, shard_starts=starts, buffer=-1)


def _overrides(synth, weights, tokenizer, out, *extra):
    return [*model_overrides(weights, tokenizer=tokenizer), f"data.train_cache={synth}", f"train.out_dir={out}",
            "train.steps=4", "train.batch_size=8", "train.progress=false", "optim.warmup_steps=1",
            "train.log_every=1", *extra]


def test_training_through_a_shuffle_buffer_holds_only_its_shards(synth, tower_weights, tokenizer_file, tmp_path):  # noqa: F811
    tr = Trainer(load_config(None, _overrides(synth, tower_weights, tokenizer_file, tmp_path / "run",
                                              "data.shuffle_buffer=2")))
    summary = tr.fit()
    assert summary["step"] == 4
    cache = tr.batches.cache
    assert 1 <= len(cache._resident) <= 3 and len(cache.captions._loaded) <= 3  # buffer + 1 shards, not 7
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(steps) == 4 and all(np.isfinite(r["loss"]) for r in steps)
    for step in range(4):  # the rows trained are the schedule's, and the features are the file's rows
        rows = tr.schedule.batch(step)[0]
        want = np.concatenate([np.load(synth / "img_emb" / f"img_emb_{k}.npy") for k in range(7)])[rows]
        assert np.array_equal(tr.batches(step)["image_features"].numpy(), want.astype(np.float32))


def test_uniform_sampling_from_a_cache_larger_than_memory_says_so(synth, tower_weights, tokenizer_file, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    real = train_data.os.sysconf
    monkeypatch.setattr(train_data.os, "sysconf",  # a machine with 4 KiB of memory: the cache is "larger"
                        lambda name: 1 if name == "SC_PHYS_PAGES" else real(name))
    cfg = _overrides(synth, tower_weights, tokenizer_file, tmp_path / "run")
    with pytest.warns(train_data.LargeCacheWarning, match=r"drawn uniformly at random.*data.shuffle_buffer=64"):
        Trainer(load_config(None, cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("error", train_data.LargeCacheWarning)  # asked for: nothing to say
        Trainer(load_config(None, [*cfg, "data.shuffle_buffer=2", f"train.out_dir={tmp_path / 'run2'}"]))


def test_the_schedules_draws_are_the_ones_before_chunking(monkeypatch):
    """Caption indices are drawn in chunks (bounded memory at 10M rows): the same numbers as one draw."""
    n_caps = np.random.default_rng(1).integers(1, 6, 50)
    monkeypatch.setattr(PairSchedule, "CHUNK", 7)
    for views in (0, 2):
        order, caption, view = PairSchedule(n_caps, 4, seed=5, views=views).epoch(2)
        rng = np.random.default_rng([5, 2])  # the draws as the schedule made them in one go before
        want_order = rng.permutation(50)
        want_caption = (rng.random(50) * n_caps[want_order]).astype(np.int64)
        want_view = rng.integers(0, views + 1, 50) if views else np.zeros(50, np.int64)
        assert np.array_equal(order, want_order) and np.array_equal(caption, want_caption)
        assert np.array_equal(view, want_view) and (caption < n_caps[order]).all()


def test_a_shuffle_buffer_without_a_cache_is_refused_by_name(tower_weights, tokenizer_file, tmp_path):  # noqa: F811
    from tests.cache.tiny_data import make_dataset

    csv = make_dataset(tmp_path / "data", 4)
    cfg = [*model_overrides(tower_weights, tokenizer=tokenizer_file), f"data.train={csv}", "data.use_cache=false",
           "data.shuffle_buffer=2", f"train.out_dir={tmp_path / 'run'}", "train.batch_size=2", "train.progress=false"]
    with pytest.raises(ValueError, match=r"data.shuffle_buffer=2 reads the shards of an embedding cache, and this "
                                         r"run reads images"):
        Trainer(load_config(None, cfg))
