"""Damaged caches (issue 13, cases 1 and 5 of the cache side): every disagreement between a cache's
files and its manifest is refused by name when the cache is opened, ``littune cache verify`` finds
changed bytes by SHA-256, and the ``littune embed`` that made the cache repairs only broken shards.

Each case here trained or read without a word (or with a traceback naming no file) before.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import littune.cache.writer as writer
from littune.cache import CacheCorrupt, EmbeddingCache, EmbedOptions, check_cache, embed, verify_cache
from littune.cache.writer import CacheRepair
from littune.cli import main
from tests.cache.conftest import tokenizer_file, tower, tower_weights  # noqa: F401  (session fixtures)
from tests.cache.tiny_data import TOWER, files_of, model_overrides

from .cache_files import embedded

N, SHARD = 20, 8  # shards of 8, 8 and 4 images
OPTS = dict(shard_size=SHARD, batch_size=8, num_workers=0, progress=False)


@pytest.fixture(scope="module")
def good(tmp_path_factory, tower):  # noqa: F811
    return embedded(tmp_path_factory.mktemp("integrity"), tower, N, **OPTS)


@pytest.fixture
def cache(good, tmp_path) -> Path:
    """A private copy of the good cache, to damage."""
    return Path(shutil.copytree(good["cache"], tmp_path / "cache"))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _short_metadata(c: Path) -> None:  # the case that trained on shifted pairs
    path = c / "metadata" / "metadata_1.parquet"
    pq.write_table(pq.read_table(path).slice(0, SHARD - 1), path)


def _short_shard(c: Path) -> None:
    path = c / "img_emb" / "img_emb_1.npy"
    _save_npy(path, np.load(path)[:-1])


def _other_width(c: Path) -> None:
    path = c / "img_emb" / "img_emb_1.npy"
    _save_npy(path, np.load(path)[:, :32])


def _truncated(c: Path) -> None:
    path = c / "img_emb" / "img_emb_1.npy"
    path.write_bytes(path.read_bytes()[:-100])


def _missing_shard(c: Path) -> None:  # a shard gone from the middle of the cache, every file of it
    for rel in ("img_emb/img_emb_1.npy", "metadata/metadata_1.parquet", "bad/bad_1.tsv"):
        (c / rel).unlink()


def _other_dtype(c: Path) -> None:
    path = c / "img_emb" / "img_emb_1.npy"
    _save_npy(path, np.load(path).astype(np.float32))


DAMAGE = {
    "metadata one row short": (_short_metadata, "metadata/metadata_1.parquet has 7 rows, img_emb/img_emb_1.npy has 8"),
    "shard shorter than the manifest": (_short_shard, "img_emb/img_emb_1.npy has shape 7 x 64, the manifest says 8 x 64"),
    "another width": (_other_width, "img_emb/img_emb_1.npy has shape 8 x 32, the manifest says 8 x 64"),
    "another dtype": (_other_dtype, "img_emb/img_emb_1.npy holds float32, the manifest says float16"),
    "truncated npy": (_truncated, "img_emb/img_emb_1.npy is truncated"),
    "shard missing from the middle": (_missing_shard, "img_emb/img_emb_1.npy is missing"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_shard_is_refused_by_name(case, cache, capsys):
    damage, what = DAMAGE[case]
    damage(cache)
    with pytest.raises(CacheCorrupt) as e:
        EmbeddingCache(cache)
    message = str(e.value)
    assert f"embedding cache {cache} is damaged: shard 1: {what}" in message
    assert "repair: `littune embed --data" in message and "--verify`" in message and f"--out {cache}" in message
    assert len(message.splitlines()) == 2
    # the command line: exit 2, the same two lines, no traceback
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 2
    err = capsys.readouterr().err
    assert what in err and "Traceback" not in err and len(err.strip().splitlines()) == 2


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format_version": 1, "tower": "x"}'])
def test_an_invalid_manifest_is_refused_by_name(text, cache, capsys):
    (cache / "manifest.json").write_text(text)
    with pytest.raises(CacheCorrupt, match=r"manifest\.json: (not valid JSON|not a JSON object|missing fields)"):
        EmbeddingCache(cache)
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and f"delete {cache}" in err and "Traceback" not in err


def test_training_on_a_cache_with_shifted_captions_stops(cache, tower_weights, tokenizer_file, tmp_path, capsys):  # noqa: F811
    """The case found: metadata one row short trained with exit 0 on shifted image-caption pairs."""
    _short_metadata(cache)
    capsys.readouterr()
    code = main(["train", *model_overrides(tower_weights, tokenizer=tokenizer_file), f"data.train_cache={cache}",
                 f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=4", "train.progress=false",
                 "optim.warmup_steps=1"])
    err = capsys.readouterr().err
    assert code == 2 and "shard 1: metadata/metadata_1.parquet has 7 rows" in err and "Traceback" not in err


def test_verify_finds_a_changed_byte_and_embed_repairs_only_broken_shards(good, cache, tower, monkeypatch, capsys):  # noqa: F811
    m = json.loads((cache / "manifest.json").read_text())
    assert main(["cache", "verify", str(cache), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == [{"folder": str(cache), "kind": "embedding", "shards": 3, "files": 6, "sources": N,
                       "deep": False, "notes": [], "ok": True, "problems": {}, "repair": ""}]
    # Shard 1 truncated (the cheap check sees it); one byte of shard 2's data flipped (only its SHA-256 does).
    _truncated(cache)
    flipped = cache / "img_emb" / "img_emb_2.npy"
    data = bytearray(flipped.read_bytes())
    data[-3] ^= 0x40
    flipped.write_bytes(bytes(data))
    assert hashlib.sha256(data).hexdigest() != m["shards"][2]["files"]["img_emb/img_emb_2.npy"]
    assert main(["cache", "verify", str(cache)]) == 2
    assert "shard 1: img_emb/img_emb_1.npy is truncated" in capsys.readouterr().err
    untouched = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.rglob("*_0.*")}
    assert len(untouched) == 3  # shard 0's embeddings, metadata and bad list

    calls = []
    real = writer._embed_shard
    monkeypatch.setattr(writer, "_embed_shard", lambda *a, **k: calls.append(a[4]) or real(*a, **k))  # the shard's offset
    with pytest.warns(CacheRepair, match=r"shard 1 is broken \(img_emb/img_emb_1.npy is truncated"):
        embed(str(good["csv"]), tower, cache, EmbedOptions(**OPTS))
    assert calls == [SHARD]  # shard 1 only: shard 2 passes the cheap check
    report = check_cache(cache, hashes=True)
    assert report.problems == {2: ["img_emb/img_emb_2.npy: SHA-256 differs from the one recorded when it was "
                                   "written (the file changed)"]}  # the repair did not bless the changed file

    with pytest.warns(CacheRepair, match="shard 2 is broken"):
        embed(str(good["csv"]), tower, cache, EmbedOptions(**OPTS), verify=True)
    assert calls == [SHARD, 2 * SHARD]  # then shard 2 only
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in untouched} == untouched  # good shard: never rewritten
    assert files_of(cache) == files_of(good["cache"])  # repaired: bit for bit the cache that was never damaged
    assert all(r.ok for r in verify_cache(cache))


def test_embed_verify_on_the_command_line(good, cache, tower_weights, capsys):  # noqa: F811
    flipped = cache / "metadata" / "metadata_0.parquet"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    args = ["embed", "--data", str(good["csv"]), "--out", str(cache), "--tower", TOWER, "--checkpoint",
            str(tower_weights), "--shard-size", str(SHARD), "--batch-size", "8", "--workers", "0", "--no-progress"]
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "shard 0: metadata/metadata_0.parquet" in err  # unreadable or a changed SHA-256: named either way
    assert main(args + ["--verify"]) == 0
    assert "shard 0 is broken" in capsys.readouterr().err
    assert files_of(cache) == files_of(good["cache"])
    assert main(["cache", "verify", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == (f"embedding cache {cache}: ok (3 shards, 6 files match their SHA-256; "
                                               f"{N} source images match their sizes)")


def test_a_damaged_text_cache_is_refused_and_rebuilt_shard_by_shard(tmp_path, monkeypatch):
    from littune.cache import text as text_cache
    from littune.cache.text import TextCache, TextEmbedOptions, ensure_text_cache
    from littune.towers import create_text_tower
    from tests.cache.text_tower import save_tiny_bert

    texts = [f"caption {i}" for i in range(40)]
    tower = create_text_tower(f"hf:{save_tiny_bert(tmp_path / 'bert')}", lock="L", context_length=16)
    opts = TextEmbedOptions(shard_size=16, batch_size=8, dtype="float32", engine="torch", progress=False)
    out = tmp_path / "tc"
    full = ensure_text_cache(texts, tower, out, opts).all()
    good = files_of(out)
    shard = out / "txt_emb" / "txt_emb_1.npy"
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(CacheCorrupt, match=r"text cache .* is damaged: shard 1: txt_emb/txt_emb_1.npy is truncated"):
        TextCache(out)
    stamp = (out / "txt_emb" / "txt_emb_0.npy").stat().st_mtime_ns
    calls = []
    real = text_cache._embed_texts
    monkeypatch.setattr(text_cache, "_embed_texts", lambda run, tw, t, *a: calls.append(len(t)) or real(run, tw, t, *a))
    with pytest.warns(CacheRepair, match="text shard 1 is broken"):
        rebuilt = ensure_text_cache(texts, tower, out, opts)
    assert calls == [16] and torch.equal(rebuilt.all(), full)
    assert (out / "txt_emb" / "txt_emb_0.npy").stat().st_mtime_ns == stamp and files_of(out) == good
    # A changed byte: only the SHA-256 sees it.
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x10
    shard.write_bytes(bytes(data))
    (report,) = verify_cache(out)
    assert report.kind == "text" and report.problems == {
        1: ["txt_emb/txt_emb_1.npy: SHA-256 differs from the one recorded when it was written"]}
