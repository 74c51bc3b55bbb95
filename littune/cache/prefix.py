"""The prefix cache: a partly locked text tower's token states after its locked groups, per caption.

With ``model.text.locked_blocks=k`` the lowest k layer groups of a pre-trained text tower never
change (the paper's Lu / LU settings with a locked bottom), so their output for every caption is
computed once, like the image cache, and a training step runs only the unlocked layers on it
(``HFTextTower.features_from``; the live path runs the same function, so the two cannot drift).

Layout (the text cache's rules and code, ``text.py``: sharded, resumable, atomic, manifest last):
    states/states_{s}.npy     (n_tokens_s, D) float16/float32  every real token's state, texts of
                              shard s in order, no padding (ragged: 2.2x smaller than padded)
    lengths/lengths_{s}.npy   (n_texts_s,) int16  real tokens per text: the mask is arange(T) < length
    manifest.json             kind "prefix": tower, k, the locked groups' weight fingerprint (training
                              the top never invalidates the cache), tokenizer fingerprint, context
                              length, width, dtype, the texts' count and SHA-256, each file's SHA-256
Texts are an image cache's captions in its order, as for the text cache. A cache made by another
tower, tokenizer, context length, depth k or other locked weights is refused by name.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .manifest import CacheMismatch
from .text import (TextManifest, _npy_problems, begin_shards, finish_shards, refuse_unless_made_by,
                   open_finished, texts_sha256)
from .writer import save_atomic, save_npy

PREFIX_DTYPES = ("float16", "float32")


@dataclass
class PrefixOptions:
    shard_size: int = 10_000  # texts per shard (MiniLM k=4, fp16: ~110 MB)
    batch_size: int = 256
    dtype: str = "float16"  # float32: exact, for the equality proof; float16: half the disk
    progress: bool = True


@dataclass
class PrefixManifest(TextManifest):
    kind: str = "prefix"
    k: int = 0  # locked groups the states come after (model.text.locked_blocks)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "k": self.k}

    @staticmethod
    def shard_files(s: int) -> list[str]:
        return [f"states/states_{s}.npy", f"lengths/lengths_{s}.npy"]

    def shard_problems(self, folder: Path, s: int) -> list[str]:
        states, lengths = self.shard_files(s)
        problems = _npy_problems(folder, lengths, (self.shard_rows(s),), "int16")
        if problems:
            return problems
        n_tokens = int(np.load(Path(folder) / lengths).astype(np.int64).sum())
        return _npy_problems(folder, states, (n_tokens, self.embed_dim), self.dtype)


def prefix_identity(tower) -> dict[str, Any]:
    """What a prefix cache must have been made by: the tower, its locked groups' weights, tokenizer, k."""
    return {"tower": tower.name, "fingerprint": tower.prefix_fingerprint(), "tokenizer": tower.tokenizer.fingerprint(),
            "context_length": tower.context_length, "embed_dim": tower.embed_dim, "k": tower.locked_blocks}


def check_prefix_tower(tower, k: int) -> None:
    """Refuse a tower the prefix cache cannot serve, naming ``model.text.prefix_cache.k``."""
    why = tower.prefix_support() if hasattr(tower, "prefix_support") else f"the {tower.name} tower"
    if why is not None:
        raise ValueError(f"model.text.prefix_cache.k={k}: {tower.name} is {why}; it has no prefix cache")
    n = len(tower.layer_groups())
    if not 1 <= k <= n - 1:
        raise ValueError(f"model.text.prefix_cache.k={k} is outside 1 .. {n - 1}: {tower.name} has {n} layer groups "
                         "(embeddings, then each layer) and at least the top one must train")
    if tower.locked_blocks != k:
        raise ValueError(f"model.text.prefix_cache.k={k} must equal model.text.locked_blocks={tower.locked_blocks}: "
                         "the cache holds the output of the locked groups")


def _shard_states(tower, texts: list[str], opts: PrefixOptions, bar) -> tuple[np.ndarray, np.ndarray]:
    """texts -> (n_tokens, D) states of every real token (texts in order) and (n,) int16 lengths."""
    tok = tower.tokenizer(texts)  # (n, T) padded to the longest text
    ids, mask = tok["input_ids"].long(), tok["attention_mask"].long()
    lengths = mask.sum(1)
    if not torch.equal(mask, (torch.arange(mask.shape[1]) < lengths[:, None]).long()):
        raise ValueError(f"{tower.name}: its tokenizer does not pad on the right; a prefix cache keeps lengths only")
    starts = torch.cumsum(lengths, 0) - lengths  # (n,) first token row of each text
    out = np.empty((int(lengths.sum()), tower.embed_dim), opts.dtype)
    order = torch.argsort(lengths, stable=True)  # length-sorted batches: little padding
    for i in range(0, len(texts), opts.batch_size):
        idx = order[i:i + opts.batch_size]
        L = int(lengths[idx].max())
        valid = mask[idx, :L].bool()  # (b, L)
        states = tower.prefix_states(ids[idx, :L], mask[idx, :L])  # (b, L, D)
        dest = (starts[idx, None] + torch.arange(L))[valid]  # each real token's row in the shard
        out[dest.numpy()] = states[valid].float().numpy().astype(opts.dtype)
        if bar is not None:
            bar.update(len(idx))
    return out, lengths.numpy().astype(np.int16)


def build_prefix_cache(texts: Sequence[str], tower, out: str | Path, opts: PrefixOptions | None = None) -> "PrefixCache":
    """Run the locked groups of ``tower`` over ``texts`` into ``out``, resuming finished shards."""
    opts = opts or PrefixOptions()
    if opts.dtype not in PREFIX_DTYPES:
        raise ValueError(f"model.text.prefix_cache.dtype='{opts.dtype}' is not one of {', '.join(PREFIX_DTYPES)}")
    check_prefix_tower(tower, tower.locked_blocks)
    out, texts = Path(out), list(texts)
    manifest = PrefixManifest(**prefix_identity(tower), dtype=opts.dtype, n_texts=len(texts),
                              texts_sha256=texts_sha256(texts), shard_size=opts.shard_size, engine="torch")
    todo = begin_shards(out, manifest, "by another text tower, tokenizer, context length, k or locked weights")
    manifest.engine = "torch"
    n_todo = sum(manifest.shard_rows(s) for s in todo)
    bar = tqdm(total=n_todo, unit="text", desc=f"prefix cache {tower.name} k={tower.locked_blocks}",
               disable=not opts.progress, dynamic_ncols=True)
    training = tower.training
    tower.eval()  # the locked groups run in eval mode anyway (the lock's rule); no dropout here either
    try:
        for s in todo:
            states, lengths = _shard_states(tower, texts[s * opts.shard_size:(s + 1) * opts.shard_size], opts, bar)
            names = manifest.shard_files(s)
            save_atomic(out / names[0], lambda p: save_npy(p, states))
            save_atomic(out / names[1], lambda p: save_npy(p, lengths))  # a shard is whole once both are there
    finally:
        tower.train(training)
        bar.close()
    finish_shards(out, manifest, [manifest.shard_rows(s) for s in range(manifest.n_shards)])
    return PrefixCache(out)


class PrefixCache:
    """A finished prefix cache: padded batches of token states and their masks, memory-mapped."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = m = open_finished(self.folder, "the prefix cache", PrefixManifest)
        files = [m.shard_files(s) for s in range(m.n_shards)]
        self._states = [np.load(self.folder / f[0], mmap_mode="r") for f in files]
        self._lengths = [np.load(self.folder / f[1]).astype(np.int64) for f in files]
        self._token_starts = [np.cumsum(n) - n for n in self._lengths]  # first state row of each text, per shard

    def __len__(self) -> int:
        return self.manifest.n_texts

    @property
    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*.npy"))

    def rows(self, index: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Texts ``index`` -> {'prefix_states' (B, T, D) float32, zero past each text's end;
        'attention_mask' (B, T) int64}, T the longest of them (what the tokenizer would pad to)."""
        index = np.asarray(index, dtype=np.int64)
        size = self.manifest.shard_size
        shard, within = index // size, index % size
        lengths = np.array([self._lengths[s][i] for s, i in zip(shard, within)], np.int64)
        T = int(lengths.max())
        positions = np.arange(T)
        valid = positions[None, :] < lengths[:, None]  # (B, T)
        out = np.zeros((len(index), T, self.manifest.embed_dim), np.float32)
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            b, t = np.nonzero(valid[sel])  # each real token of these texts: (text in sel, position)
            out[sel[b], t] = self._states[s][self._token_starts[s][within[sel[b]]] + t]  # one gather per shard
        return {"prefix_states": torch.from_numpy(out), "attention_mask": torch.from_numpy(valid.astype(np.int64))}

    def check(self, tower, texts: Sequence[str] | None = None) -> None:
        """Refuse the cache unless ``tower`` (its locked groups, tokenizer, k) made it for ``texts``."""
        refuse_unless_made_by(self.folder, self.manifest, prefix_identity(tower),
                              "by another text tower, tokenizer, context length, k or locked weights", texts, "prefix")


def ensure_prefix_cache(texts: Sequence[str], tower, out: str | Path, opts: PrefixOptions | None = None) -> PrefixCache:
    """The prefix cache at ``out`` if it is complete and made by ``tower`` for ``texts``; else build it."""
    try:
        cache = PrefixCache(out)
    except (FileNotFoundError, CacheMismatch):
        cache = None
    if cache is None:
        cache = build_prefix_cache(texts, tower, out, opts)
    cache.check(tower, texts)
    return cache


def prefix_cache_dir(image_cache: str | Path, tower, dtype: str = "float16") -> Path:
    """Where the prefix cache of an image cache's captions lives: inside it, one folder per tower, k, dtype."""
    ident = prefix_identity(tower)
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    slug = "".join(c if c.isalnum() else "_" for c in tower.name)
    return Path(image_cache) / "prefix" / f"{slug}-k{tower.locked_blocks}-{dtype}-{digest}"


__all__ = ["PREFIX_DTYPES", "PrefixCache", "PrefixManifest", "PrefixOptions", "build_prefix_cache",
           "check_prefix_tower", "ensure_prefix_cache", "prefix_cache_dir", "prefix_identity"]
