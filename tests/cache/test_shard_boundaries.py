"""Embedding keeps one DataLoader across shard boundaries (no refill pause at each shard) and writes
exactly what embedding each shard alone writes."""
from __future__ import annotations

import numpy as np

from littune.cache import EmbedOptions, EmbeddingCache, embed
from littune.cache import writer

from .tiny_data import make_dataset


def test_one_loader_for_all_shards_same_rows(tmp_path, tower, monkeypatch):
    csv = make_dataset(tmp_path / "data", 22)
    (tmp_path / "data" / "images" / "img_009.jpg").write_bytes(b"not a jpeg")  # a bad image in shard 1
    made = []

    class CountingLoader(writer.DataLoader):
        def __init__(self, *a, **kw):
            made.append(kw.get("batch_sampler"))
            super().__init__(*a, **kw)

    monkeypatch.setattr(writer, "DataLoader", CountingLoader)

    def run(out, shard_size):
        return embed(str(csv), tower, tmp_path / out, EmbedOptions(shard_size=shard_size, batch_size=4, views=1,
                                                                   num_workers=1, progress=False, dtype="float32"))

    m = run("sharded", 8)  # shards of 8, 8, 6 images
    assert len(made) == 1 and len(m.shards) == 3  # one loader (one set of workers) served all three shards
    # its batches never cross a shard: 0-3 4-7 | 8-11 12-15 | 16-19 20-21
    assert [(b[0], b[-1]) for b in made[0]] == [(0, 3), (4, 7), (8, 11), (12, 15), (16, 19), (20, 21)]
    run("whole", 64)
    a, b = EmbeddingCache(tmp_path / "sharded"), EmbeddingCache(tmp_path / "whole")
    assert list(a.keys) == list(b.keys) and len(a) == 21 and "images/img_009.jpg" not in list(a.keys)
    np.testing.assert_array_equal(a.all().numpy(), b.all().numpy())
    views = [np.concatenate([np.load(d / "img_emb_views" / f"img_emb_{k}.npy") for k in range(n)])
             for d, n in ((a.folder, 3), (b.folder, 1))]
    np.testing.assert_array_equal(*views)  # each image's augmented view drew the same seed
    rows = (tmp_path / "sharded" / "bad" / "bad_1.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["images/img_009.jpg"]  # named by its shard-local index
