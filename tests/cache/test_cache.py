"""The embedding cache: what `littune embed` writes, what EmbeddingCache reads, and when a cache is refused."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from littune.cache import CacheMismatch, EmbedOptions, EmbeddingCache, Manifest, embed, ensure_cache
from littune.data.images import load_image

from .tiny_data import load_tower, make_images, model_overrides, write_csv

N_IMAGES = 40
EXTRA = {0: "a second caption of the first image", 5: "another caption for image five"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """40 images; images 0 and 5 get a second caption row further down the CSV."""
    folder = tmp_path_factory.mktemp("colours")
    rows = [(f"images/{name}", cap) for name, cap in make_images(folder / "images", N_IMAGES)]
    extra = [(rows[i][0], cap) for i, cap in EXTRA.items()]
    csv_rows = rows[:20] + extra[:1] + rows[20:] + extra[1:]
    return write_csv(folder / "data.csv", csv_rows), rows


def _opts(**kw) -> EmbedOptions:
    # The torch engine: these tests compare the cache with the tower's own forward bit for bit
    # (other engines agree to cosine 0.999: tests/cache/test_engines.py).
    return EmbedOptions(**{"shard_size": 16, "batch_size": 16, "num_workers": 0, "progress": False,
                           "engine": "torch", **kw})


def _direct_features(tower, paths: list[str], batch_size: int = 16) -> torch.Tensor:
    """The tower's features computed here, batched the way the writer batches them."""
    tf = tower.preprocess.transform()
    x = torch.stack([tf(load_image(p)) for p in paths])
    with torch.no_grad():
        return torch.cat([tower(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


@pytest.fixture(scope="module")
def cache_f32(tmp_path_factory, data, tower):
    out = tmp_path_factory.mktemp("cache_f32")
    manifest = embed(str(data[0]), tower, out, _opts(dtype="float32"))
    return out, manifest


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, data, tower, cache_f32, dtype):
    csv, rows = data
    if dtype == "float32":
        out, m = cache_f32
    else:
        out = tmp_path / "cache"
        m = embed(str(csv), tower, out, _opts(dtype=dtype))

    # Manifest: the tower that made it, its weights and preprocessing, the counts, complete.
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == dataclasses.asdict(m)
    assert m.complete is True
    assert (m.tower, m.fingerprint, m.preprocess) == ("timm:test_vit", tower.fingerprint(), tower.preprocess.to_dict())
    assert (m.embed_dim, m.dtype, m.shard_size, m.views, m.source) == (64, dtype, 16, 0, str(csv))
    assert (m.n_items, m.count, m.n_captions, m.n_bad) == (N_IMAGES, N_IMAGES, N_IMAGES + len(EXTRA), 0)
    assert [{k: s[k] for k in ("index", "count", "start", "end", "width", "dtype")} for s in m.shards] == [
        {"index": 0, "count": 16, "start": 0, "end": 16, "width": 64, "dtype": dtype},
        {"index": 1, "count": 16, "start": 16, "end": 32, "width": 64, "dtype": dtype},
        {"index": 2, "count": 8, "start": 32, "end": 40, "width": 64, "dtype": dtype}]
    for s in m.shards:  # each file's SHA-256, as written
        k = s["index"]
        assert s["files"] == {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest()
                              for rel in (f"img_emb/img_emb_{k}.npy", f"metadata/metadata_{k}.parquet")}

    # clip-retrieval layout, and nothing half-written left behind.
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(["manifest.json", "bad_inputs.tsv"]
                           + [f"img_emb/img_emb_{k}.npy" for k in range(3)]
                           + [f"metadata/metadata_{k}.parquet" for k in range(3)]
                           + [f"bad/bad_{k}.tsv" for k in range(3)])
    arrays = [np.load(out / "img_emb" / f"img_emb_{k}.npy") for k in range(3)]
    assert [a.shape for a in arrays] == [(16, 64), (16, 64), (8, 64)]
    assert all(a.dtype == np.dtype(dtype) for a in arrays)

    import pyarrow.parquet as pq

    meta = pq.read_table(out / "metadata" / "metadata_0.parquet")
    assert meta.column_names == ["key", "image_path", "caption", "captions", "sha256", "bytes"]
    assert meta.num_rows == 16
    first = meta.slice(0, 1).to_pylist()[0]
    assert first["key"] == "images/img_000.jpg"
    assert Path(first["image_path"]) == csv.parent / "images" / "img_000.jpg"
    assert first["caption"] == rows[0][1]
    assert first["captions"] == [rows[0][1], EXTRA[0]]

    # Reader: order of first appearance, captions grouped by image, rows equal to the tower's output.
    cache = EmbeddingCache(out)
    assert len(cache) == N_IMAGES and cache.embed_dim == 64
    assert cache.keys == [r[0] for r in rows]
    expected_caps = [[cap] + ([EXTRA[i]] if i in EXTRA else []) for i, (_, cap) in enumerate(rows)]
    assert cache.captions == expected_caps
    assert [Path(p) for p in cache.image_paths] == [csv.parent / r[0] for r in rows]
    direct = _direct_features(tower, cache.image_paths)
    got = cache.all()
    assert got.dtype == torch.float32 and got.shape == (N_IMAGES, 64)
    if dtype == "float32":
        assert torch.equal(got, direct)
    else:
        torch.testing.assert_close(got, direct, rtol=1e-3, atol=1e-3)
        assert not torch.equal(got, direct)  # really stored in half precision
    # A gather across shards in any order is the same rows.
    index = np.array([39, 0, 17, 16, 15, 31, 32, 3])
    assert torch.equal(cache.rows(index), got[index])
    assert torch.equal(cache.rows(torch.tensor(index)), got[index])


def test_views(tmp_path, data, tower, cache_f32):
    csv, _ = data
    a = embed(str(csv), tower, tmp_path / "a", _opts(dtype="float32", views=2))
    # Other shard and batch sizes (and a decoding worker): the views depend on the image only.
    b = embed(str(csv), tower, tmp_path / "b", _opts(dtype="float32", views=2, shard_size=25, batch_size=6,
                                                     num_workers=1))
    assert a.views == b.views == 2
    va = np.concatenate([np.load(tmp_path / "a" / "img_emb_views" / f"img_emb_{k}.npy") for k in range(3)])
    vb = np.concatenate([np.load(tmp_path / "b" / "img_emb_views" / f"img_emb_{k}.npy") for k in range(2)])
    assert va.shape == (N_IMAGES, 2, 64) and va.dtype == np.float32
    np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-5)
    # Augmented views are views: not the plain embedding, not each other.
    plain = EmbeddingCache(cache_f32[0]).all().numpy()
    assert not np.allclose(va[:, 0], plain, atol=1e-3)
    assert not np.allclose(va[:, 0], va[:, 1], atol=1e-3)
    # The plain view stored alongside is the plain embedding.
    cache = EmbeddingCache(tmp_path / "a")
    np.testing.assert_allclose(cache.all().numpy(), plain, rtol=1e-5, atol=1e-5)
    # rows(index, view): 0 picks the plain embedding, v >= 1 the v-th augmented view.
    index, view = np.array([0, 20, 39, 5]), np.array([0, 1, 2, 2])
    got = cache.rows(index, view).numpy()
    np.testing.assert_array_equal(got[0], cache.all().numpy()[0])
    np.testing.assert_array_equal(got[1], va[20, 0])
    np.testing.assert_array_equal(got[2], va[39, 1])
    np.testing.assert_array_equal(got[3], va[5, 1])


def test_check_refuses_another_tower(cache_f32, tower, tower_weights, other_tower_weights):
    cache = EmbeddingCache(cache_f32[0])
    cache.check(tower)  # the tower that made it
    cache.check(load_tower(tower_weights))  # or the same weights loaded again

    with pytest.raises(CacheMismatch, match="fingerprint") as e:
        cache.check(load_tower(other_tower_weights))
    assert "preprocess" not in str(e.value)

    # Same weights, other preprocessing (here another centre crop): refused, naming that field.
    same = load_tower(tower_weights)
    same.preprocess = dataclasses.replace(same.preprocess, crop_pct=1.0)
    with pytest.raises(CacheMismatch, match="preprocess") as e:
        cache.check(same)
    assert "fingerprint" not in str(e.value)


def test_incomplete_cache_is_refused(tmp_path, cache_f32):
    import shutil

    out = tmp_path / "cache"
    shutil.copytree(cache_f32[0], out)
    m = Manifest.read(out)
    m.complete = False
    m.write(out)
    with pytest.raises(CacheMismatch, match="did not finish") as e:
        EmbeddingCache(out)
    assert str(out) in str(e.value) and "littune embed" in str(e.value)
    with pytest.raises(FileNotFoundError, match="not an embedding cache"):
        EmbeddingCache(tmp_path / "nothing_here")


def _train_overrides(tmp_path: Path, weights: Path, cache: Path) -> list[str]:
    return model_overrides(weights) + [
        f"data.train_cache={cache}", f"train.out_dir={tmp_path / 'run'}", "train.steps=2",
        "train.batch_size=8", "train.progress=false", "data.num_workers=0"]


def test_training_refuses_a_cache_of_another_tower(tmp_path, cache_f32, tower_weights, other_tower_weights):
    from littune.train import Trainer, load_config

    with pytest.raises(CacheMismatch, match="fingerprint") as e:
        Trainer(load_config(None, _train_overrides(tmp_path, other_tower_weights, cache_f32[0])))
    assert str(cache_f32[0]) in str(e.value)

    import shutil

    incomplete = tmp_path / "incomplete"
    shutil.copytree(cache_f32[0], incomplete)
    m = Manifest.read(incomplete)
    m.complete = False
    m.write(incomplete)
    with pytest.raises(CacheMismatch, match="did not finish"):
        Trainer(load_config(None, _train_overrides(tmp_path, tower_weights, incomplete)))


def test_ensure_cache_reuses_a_complete_cache(tmp_path, data, tower):
    csv, _ = data
    out = tmp_path / "cache"
    first = ensure_cache(str(csv), tower, out, _opts(dtype="float32"))
    stamp = (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns
    again = ensure_cache(str(csv), tower, out, _opts(dtype="float32"))
    assert (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns == stamp  # not embedded twice
    assert torch.equal(first.all(), again.all())


def test_ensure_cache_refuses_a_cache_of_an_edited_source(tmp_path, tower):
    """Same spec (file name), other content: the old embeddings and captions must not be used."""
    folder = tmp_path / "data"
    rows = [(f"images/{n}", c) for n, c in make_images(folder / "images", 24)]
    csv = write_csv(folder / "data.csv", rows)
    out = tmp_path / "cache"
    ensure_cache(str(csv), tower, out, _opts(dtype="float32"))

    write_csv(csv, rows[:20])  # fewer images
    with pytest.raises(CacheMismatch, match="n_items"):
        ensure_cache(str(csv), tower, out, _opts(dtype="float32"))

    write_csv(csv, rows[:-1] + [(rows[-1][0], "an edited caption")])  # same images, a caption changed
    with pytest.raises(CacheMismatch, match="caption"):
        ensure_cache(str(csv), tower, out, _opts(dtype="float32"))
