"""The image index: bad files skipped and listed, exact search == FAISS search, resume, model checks."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import littune
import littune.cache.writer as writer
from littune.cache import Manifest
from littune.infer import IndexOptions, load_index
from littune.infer.index import FAISS_FILE, exact_topk

QUERIES = ["red above green", "blue above yellow", "black above white", "a purple thing"]


@pytest.fixture(scope="module")
def lit(tiny_lit_run):
    return littune.load(tiny_lit_run["run"])


@pytest.fixture(scope="module")
def folder(tiny_lit_run, tmp_path_factory):
    """The tiny images in two sub-folders, plus a text file named .jpg and a truncated JPEG."""
    root = tmp_path_factory.mktemp("photos")
    images = tiny_lit_run["images"]
    for i, p in enumerate(images):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        shutil.copy(p, sub / p.name)
    (root / "a" / "notes.jpg").write_text("this is not an image")
    data = images[0].read_bytes()
    (root / "b" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / ".hidden.jpg").write_bytes(data)  # hidden files are not data
    (root / "readme.txt").write_text("not listed")
    return root


@pytest.fixture(scope="module")
def index(lit, folder, tmp_path_factory):
    return lit.build_index(folder, tmp_path_factory.mktemp("idx") / "photos.index",
                           IndexOptions(progress=False, num_workers=0))


def test_bad_files_are_skipped_and_listed(index, folder, tiny_lit_run):
    n = len(tiny_lit_run["images"])
    assert len(index) == index.meta["count"] == n and index.meta["n_items"] == n + 2
    assert index.meta["n_bad"] == 2 and index.backend == "exact"
    listed = (index.folder / "features" / "bad_inputs.tsv").read_text()
    assert "a/notes.jpg\t" in listed and "not an image" in listed
    assert "b/cut.jpg\t" in listed and "truncated" in listed
    assert index.meta["bad_inputs"] == str((index.folder / "features" / "bad_inputs.tsv").resolve())
    assert all(k.startswith(("a/", "b/")) for k in index.keys)


def test_rows_are_the_models_image_embeddings(index, lit):
    emb = np.asarray(index.embeddings)  # (N, E)
    direct = lit.embed_images(index.paths).numpy()
    # The cache stores tower features in float16: equal up to that rounding.
    assert np.allclose(emb, direct, atol=2e-3), np.abs(emb - direct).max()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_search_finds_the_described_image(index, lit, tiny_lit_run):
    hits = index.search("red above green", k=5)
    assert len(hits) == 5 and [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    h = hits[0]
    assert h.path == index.paths[h.position] and h.key == index.keys[h.position]
    expected = lit.embed_images(h.path) @ lit.embed_texts("red above green").T
    assert abs(h.score - float(expected)) < 2e-3
    # The trained tiny model ranks the captioned image first for most of its captions.
    caption_of = {p.name: c for p, c in zip(tiny_lit_run["images"], tiny_lit_run["captions"])}
    found = [index.search(c, k=1)[0].key.split("/")[1] for c in tiny_lit_run["captions"]]
    assert sum(caption_of[f] == c for f, c in zip(found, tiny_lit_run["captions"])) >= 12  # of 24
    assert len(index.search("red above green", k=1000)) == len(index)
    assert [len(r) for r in index.search(QUERIES, k=3)] == [3] * len(QUERIES)
    with pytest.raises(ValueError, match="k must be"):
        index.search("red", k=0)


def test_exact_and_faiss_give_the_same_top_k(lit, folder, index, tmp_path):
    forced = lit.build_index(folder, tmp_path / "f.index",
                             IndexOptions(faiss_threshold=0, progress=False, num_workers=0))
    assert forced.backend == "faiss" and (tmp_path / "f.index" / FAISS_FILE).is_file()
    reopened = load_index(tmp_path / "f.index")
    assert reopened.backend == "faiss"
    exact = lit.open_index(tmp_path / "f.index", backend="exact")
    q = lit.embed_texts(QUERIES).numpy()
    for k in (1, 5, len(index)):
        fs, fi = reopened.search_embeddings(q, k)
        es, ei = exact.search_embeddings(q, k)
        assert np.array_equal(fi, ei), (k, fi, ei)
        assert np.allclose(fs, es, atol=1e-5)
        # and both equal a brute-force sort
        brute = np.argsort(-(q @ np.asarray(index.embeddings).T), axis=1, kind="stable")[:, :k]
        assert np.array_equal(ei, brute)
    assert [h.key for h in reopened.search("blue above red", k=7)] == [h.key for h in exact.search("blue above red", k=7)]


def test_exact_topk_breaks_ties_by_row():
    emb = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    scores, ids = exact_topk(emb, np.array([[1, 0]], dtype=np.float32), 3)
    assert ids.tolist() == [[0, 2, 3]] and np.allclose(scores, [[1, 1, 0.6]])


def test_a_killed_index_resumes_from_its_last_shard(lit, folder, tmp_path, monkeypatch):
    out = tmp_path / "r.index"
    opts = IndexOptions(shard_size=8, progress=False, num_workers=0)
    full = lit.build_index(folder, out, opts)
    rows = np.asarray(full.embeddings).copy()
    # What a kill during the last shard leaves: no index.json, the last shard's embeddings missing.
    (out / "index.json").unlink()
    last = max((out / "features" / "img_emb").glob("img_emb_*.npy"), key=lambda p: int(p.stem.split("_")[-1]))
    last.unlink()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        load_index(out)
    calls = []
    real = writer._embed_shard
    # _embed_shard(run, tower, items, offset, ...): a[3] is the shard's first row
    monkeypatch.setattr(writer, "_embed_shard", lambda *a, **k: calls.append(a[4]) or real(*a, **k))  # the shard's offset
    resumed = lit.build_index(folder, out, opts)
    assert calls == [int(last.stem.split("_")[-1]) * 8]  # only the missing shard was embedded again
    assert np.array_equal(np.asarray(resumed.embeddings), rows)


def test_index_refuses_another_model(index, tiny_lit_run, tmp_path):
    other = littune.load(tiny_lit_run["run"])
    with torch.no_grad():
        other.model.text_head.bias.add_(0.1)
    with pytest.raises(ValueError, match="made by another model"):
        other.open_index(index.folder)
    with pytest.raises(FileNotFoundError, match="not an image index"):
        load_index(tmp_path)
    with pytest.raises(ValueError, match="is an image index"):
        littune.load(index.folder)
    with pytest.raises(ValueError, match="no images"):
        other.build_index(tmp_path, tmp_path / "empty.index")


def test_a_rerun_says_already_complete(lit, folder, index, tmp_path, capsys):
    features = index.folder / "features"
    assert Manifest.read(features).shard_size == 250  # the default: sized to the data (cache/options.py)
    out = tmp_path / "again.index"
    shutil.copytree(index.folder, out)
    capsys.readouterr()
    again = lit.build_index(folder, out, IndexOptions(num_workers=0))  # progress on
    assert capsys.readouterr().err == f"{out / 'features'}: already complete ({len(index)} images)\n"
    assert np.array_equal(np.asarray(again.embeddings), np.asarray(index.embeddings))
