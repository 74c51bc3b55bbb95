"""The prefix cache: a partly locked text tower's token states, made once, refused by name, resumable."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from littune.cache import CacheMismatch
from littune.cache import prefix as prefix_module
from littune.cache.audit import verify_cache
from littune.cache.prefix import (PrefixCache, PrefixOptions, build_prefix_cache, check_prefix_tower,
                                  ensure_prefix_cache)
from littune.cache.writer import CacheRepair
from littune.towers import create_text_tower

from .text_tower import save_tiny_bert
from .tiny_data import COLOURS

# Varied lengths (unknown words are [UNK] tokens): padding, and so the mask, matters.
TEXTS = [f"{a} above {b}" + " zz" * (i % 4) for i, (a, b) in enumerate(
    (a, b) for a in COLOURS for b in COLOURS if a != b)][:50]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert4") / "bert", layers=4)


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("mpnet") / "mpnet", layers=3, kind="mpnet")


def _tower(folder, k=2, context_length=16):
    return create_text_tower(f"hf:{folder}", lock="U", locked_blocks=k, context_length=context_length)


def _opts(**kw):
    return PrefixOptions(**{"shard_size": 16, "batch_size": 8, "dtype": "float32", "progress": False, **kw})


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_the_split_tower_is_the_models_own_forward_bit_for_bit(kind, bert, mpnet):
    """features() of a partly locked tower = prefix_states, then features_from; both halves together
    are exactly what the Hugging Face model's own forward computes (MPNet: with its position bias)."""
    from littune.towers.text import pool

    tower = _tower(bert if kind == "bert" else mpnet, k=2).eval()
    tok = tower.tokenizer(TEXTS[:9])
    ids, mask = tok["input_ids"], tok["attention_mask"]
    assert len(set(mask.sum(1).tolist())) > 1  # padding present
    with torch.no_grad():
        whole = pool(tower.model(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean")
        split = tower.features(ids, mask)
        assert torch.equal(split, tower.features_from(tower.prefix_states(ids, mask), mask))
    assert torch.equal(split, whole)


def test_round_trip_ragged_states_and_masks(tmp_path, bert):
    tower = _tower(bert)
    cache = build_prefix_cache(TEXTS, tower, tmp_path / "pc", _opts())
    m = json.loads((tmp_path / "pc" / "manifest.json").read_text())
    assert (m["kind"], m["complete"], m["k"], m["n_texts"], m["shards"], m["embed_dim"]) == (
        "prefix", True, 2, 50, [16, 16, 16, 2], 32)
    assert (m["fingerprint"], m["tokenizer"], m["context_length"]) == (
        tower.prefix_fingerprint(), tower.tokenizer.fingerprint(), 16)
    lengths = tower.tokenizer(TEXTS)["attention_mask"].sum(1)
    stored = np.load(tmp_path / "pc" / "states" / "states_0.npy")
    assert stored.shape == (int(lengths[:16].sum()), 32)  # ragged: real tokens only
    idx = [49, 0, 17, 33, 16, 3]  # across shards, in any order
    got = cache.rows(idx)
    T = int(lengths[idx].max())
    assert got["prefix_states"].shape == (6, T, 32) and got["prefix_states"].dtype == torch.float32
    assert torch.equal(got["attention_mask"], (torch.arange(T) < lengths[idx, None]).long())
    tok = tower.tokenizer([TEXTS[i] for i in idx])
    with torch.no_grad():
        live = tower.eval().prefix_states(tok["input_ids"], tok["attention_mask"])
    real = got["attention_mask"].bool()
    # other batches, other padding: equal up to float rounding (bitwise where the padded length matches)
    torch.testing.assert_close(got["prefix_states"][real], live[real], rtol=1e-5, atol=1e-5)
    assert not got["prefix_states"][~real].any()  # past each text's end: zeros
    half = build_prefix_cache(TEXTS, tower, tmp_path / "pc16", _opts(dtype="float16")).rows(idx)
    torch.testing.assert_close(half["prefix_states"], got["prefix_states"], rtol=2e-3, atol=2e-3)
    assert cache.disk_bytes > 1.9 * PrefixCache(tmp_path / "pc16").disk_bytes  # fp16: about half the disk


def test_refused_by_name(tmp_path, bert, tmp_path_factory):
    tower = _tower(bert)
    cache = build_prefix_cache(TEXTS, tower, tmp_path / "pc", _opts())
    with pytest.raises(CacheMismatch, match=r"prefix cache .*pc was made by another(.|\n)*\n  fingerprint: cache has"):
        cache.check(_tower(save_tiny_bert(tmp_path_factory.mktemp("b2") / "bert", seed=1, layers=4)))
    with pytest.raises(CacheMismatch, match=r"tokenizer: cache has.*\n.*context_length: cache has 16, tower has 12"):
        cache.check(_tower(bert, context_length=12))
    with pytest.raises(CacheMismatch, match=r"fingerprint: cache has .*\n  k: cache has 2, tower has 3"):
        cache.check(_tower(bert, k=3))
    with pytest.raises(CacheMismatch, match="other captions"):
        cache.check(tower, TEXTS[:-1] + ["something else"])
    with pytest.raises(CacheMismatch, match="n_texts: cache has 50, data has 49"):
        ensure_prefix_cache(TEXTS[:49], tower, tmp_path / "pc", _opts())
    with pytest.raises(CacheMismatch, match="by another text tower"):  # building into it is refused too
        build_prefix_cache(TEXTS, _tower(bert, k=3), tmp_path / "pc", _opts())
    # Training the unlocked layers never invalidates it: only the locked groups are fingerprinted.
    tuned = _tower(bert)
    with torch.no_grad():
        tuned.layer_groups()[3].output.dense.weight.add_(1.0)
        assert tuned.fingerprint() != tower.fingerprint()
    cache.check(tuned, TEXTS)
    with torch.no_grad():
        tuned.layer_groups()[1].output.dense.weight.add_(1.0)  # a locked layer changed: refused
    with pytest.raises(CacheMismatch, match="fingerprint: cache has"):
        cache.check(tuned)


def test_depths_and_towers_it_cannot_serve_name_the_key(bert, hf_t5):
    for k in (0, 5):  # a 4-layer BERT has 5 groups: 1 .. 4 can be cached, the top one must train
        with pytest.raises(ValueError, match=rf"model.text.prefix_cache.k={k} is outside 1 .. 4: .* has 5 layer groups"):
            check_prefix_tower(_tower(bert, k=min(k, 4)), k)
    with pytest.raises(ValueError, match=r"prefix_cache.k=3 must equal model.text.locked_blocks=2"):
        check_prefix_tower(_tower(bert, k=2), 3)
    with pytest.raises(ValueError, match=r"prefix_cache.k=1: .* is a 't5' encoder"):
        check_prefix_tower(create_text_tower(f"hf:{hf_t5}", lock="U", locked_blocks=1), 1)


@pytest.fixture(scope="module")
def hf_t5(tmp_path_factory):
    import transformers as tr

    from tests.towers.tiny import tiny_hf_tokenizer

    folder = tmp_path_factory.mktemp("t5") / "t5"
    tok = tiny_hf_tokenizer()
    tr.T5EncoderModel(tr.T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                  pad_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_killed_build_resumes_its_missing_shards_only(tmp_path, bert, monkeypatch):
    tower = _tower(bert)
    full = build_prefix_cache(TEXTS, tower, tmp_path / "pc", _opts()).rows(range(50))
    # What a kill leaves: shards 0-1 whole, shard 2's states written but not its lengths, the manifest unfinished.
    (tmp_path / "pc" / "lengths" / "lengths_2.npy").unlink()
    for name in ("states/states_3.npy", "lengths/lengths_3.npy"):
        (tmp_path / "pc" / name).unlink()
    m = json.loads((tmp_path / "pc" / "manifest.json").read_text())
    (tmp_path / "pc" / "manifest.json").write_text(json.dumps({**m, "complete": False, "shards": []}))
    with pytest.raises(CacheMismatch, match="did not finish"):
        PrefixCache(tmp_path / "pc")
    calls = []
    real = prefix_module._shard_states
    monkeypatch.setattr(prefix_module, "_shard_states", lambda tw, texts, *a: calls.append(len(texts)) or real(tw, texts, *a))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = ensure_prefix_cache(TEXTS, tower, tmp_path / "pc", _opts())
    assert calls == [16, 2]  # shards 2 and 3 only
    assert any(issubclass(w.category, CacheRepair) and "prefix shard 2 is broken" in str(w.message) for w in caught)
    again = resumed.rows(range(50))
    assert all(torch.equal(again[k], full[k]) for k in full)
    assert json.loads((tmp_path / "pc" / "manifest.json").read_text())["files"] == m["files"]  # same files, same hashes


def test_damage_is_found_by_verify_and_refused_on_open(tmp_path, bert):
    build_prefix_cache(TEXTS, _tower(bert), tmp_path / "pc", _opts())
    (report,) = verify_cache(tmp_path / "pc")
    assert report.ok and report.n_files == 8  # 4 shards x (states, lengths), each file's SHA-256
    states = tmp_path / "pc" / "states" / "states_1.npy"
    arr = np.load(states)
    arr[0, 0] += 1.0  # same size, other bytes: only the SHA-256 sees it
    np.save(states, arr)
    (report,) = verify_cache(tmp_path / "pc")
    assert report.problems == {1: ["states/states_1.npy: SHA-256 differs from the one recorded when it was written"]}
    np.save(states, arr[:-1])  # a row short: refused on open, by name
    with pytest.raises(Exception, match=r"states/states_1.npy has shape"):
        PrefixCache(tmp_path / "pc")
