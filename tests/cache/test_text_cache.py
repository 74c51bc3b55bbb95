"""The text-side cache: a locked text tower's features of every caption, made once, refused by name."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from littune.cache import CacheMismatch
from littune.cache import text as text_cache
from littune.cache.text import TextCache, TextEmbedOptions, embed_texts, ensure_text_cache
from littune.towers import create_text_tower

from .text_tower import save_tiny_bert
from .tiny_data import COLOURS

TEXTS = [f"{a} above {b}" + (" ." if i % 3 else "") for i, (a, b) in enumerate(
    (a, b) for a in COLOURS for b in COLOURS if a != b)][:50]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def _tower(folder, context_length=16):
    return create_text_tower(f"hf:{folder}", lock="L", context_length=context_length)


def _opts(**kw):
    return TextEmbedOptions(**{"shard_size": 16, "batch_size": 8, "dtype": "float32", "engine": "torch",
                               "progress": False, **kw})


def test_round_trip(tmp_path, bert):
    tower = _tower(bert)
    cache = embed_texts(TEXTS, tower, tmp_path / "tc", _opts())
    m = json.loads((tmp_path / "tc" / "manifest.json").read_text())
    assert (m["kind"], m["complete"], m["n_texts"], m["shards"], m["engine"]) == ("text", True, 50, [16, 16, 16, 2], "torch")
    assert (m["tower"], m["fingerprint"], m["tokenizer"], m["context_length"], m["embed_dim"]) == (
        f"hf:{bert}", tower.fingerprint(), tower.tokenizer.fingerprint(), 16, 32)
    with torch.no_grad():
        direct = torch.cat([tower(tower.tokenizer(TEXTS[i:i + 5])) for i in range(0, 50, 5)])  # other batches
    got = cache.all()
    assert got.shape == (50, 32) and got.dtype == torch.float32
    torch.testing.assert_close(got, direct, rtol=1e-5, atol=1e-5)  # padding is masked: batching changes nothing
    idx = np.array([49, 0, 17, 33, 16])
    assert torch.equal(cache.rows(idx), got[idx])
    half = embed_texts(TEXTS, tower, tmp_path / "tc16", _opts(dtype="float16"))
    torch.testing.assert_close(half.all(), got, rtol=2e-3, atol=2e-3)


def test_refused_by_name(tmp_path, bert, tmp_path_factory):
    tower = _tower(bert)
    cache = embed_texts(TEXTS, tower, tmp_path / "tc", _opts())
    other_weights = _tower(save_tiny_bert(tmp_path_factory.mktemp("bert2") / "bert", seed=1))
    with pytest.raises(CacheMismatch, match="fingerprint: cache has"):
        cache.check(other_weights)
    with pytest.raises(CacheMismatch, match=r"tokenizer: cache has.*\n.*context_length: cache has 16, tower has 12"):
        cache.check(_tower(bert, context_length=12))
    with pytest.raises(CacheMismatch, match="other captions"):
        cache.check(tower, TEXTS[:-1] + ["something else"])
    with pytest.raises(CacheMismatch, match="n_texts: cache has 50, data has 49"):
        ensure_text_cache(TEXTS[:49], tower, tmp_path / "tc", _opts())
    with pytest.raises(CacheMismatch, match="by another text tower"):  # embedding into it is refused too
        embed_texts(TEXTS, other_weights, tmp_path / "tc", _opts())
    cache.check(tower, TEXTS)  # the right tower and texts pass


def test_a_killed_text_cache_resumes_its_missing_shards_only(tmp_path, bert, monkeypatch):
    tower = _tower(bert)
    full = embed_texts(TEXTS, tower, tmp_path / "tc", _opts()).all()
    # What a kill leaves: shards 0-1 written, the manifest not complete.
    for k in (2, 3):
        (tmp_path / "tc" / "txt_emb" / f"txt_emb_{k}.npy").unlink()
    m = json.loads((tmp_path / "tc" / "manifest.json").read_text())
    (tmp_path / "tc" / "manifest.json").write_text(json.dumps({**m, "complete": False, "shards": []}))
    with pytest.raises(CacheMismatch, match="did not finish"):
        TextCache(tmp_path / "tc")
    calls = []
    real = text_cache._embed_texts
    monkeypatch.setattr(text_cache, "_embed_texts", lambda run, tw, texts, *a: calls.append(len(texts)) or real(run, tw, texts, *a))
    resumed = ensure_text_cache(TEXTS, tower, tmp_path / "tc", _opts())
    assert calls == [16, 2]  # shards 2 and 3 only
    assert torch.equal(resumed.all(), full)


def test_a_repeated_text_is_embedded_once_and_every_copy_gets_its_row(tmp_path, bert, monkeypatch):
    """Captions two images share (and class-name captions, many images each) run through the tower once."""
    tower = _tower(bert)
    texts = [TEXTS[i % 7] for i in range(30)]  # 7 distinct texts, each 4-5 times, interleaved
    seen = []
    real = tower.tokenizer.__class__.__call__
    monkeypatch.setattr(tower.tokenizer.__class__, "__call__", lambda self, t, *a, **k: seen.append(list(t)) or real(self, t, *a, **k))
    cache = embed_texts(texts, tower, tmp_path / "tc", _opts(shard_size=50))
    ours = [call for call in seen if set(call) & set(TEXTS)]  # (the engine's own self-check tokenizes too)
    assert ours == [TEXTS[:7]]  # each distinct text tokenized (and embedded) once, in first-seen order
    got = cache.all()
    assert got.shape == (30, 32)
    for i in range(30):
        assert torch.equal(got[i], got[i % 7])
    with torch.no_grad():
        direct = tower(tower.tokenizer(TEXTS[:7]))
    torch.testing.assert_close(got[:7], direct, rtol=1e-5, atol=1e-5)
