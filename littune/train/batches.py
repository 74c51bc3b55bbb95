"""Which examples form each training batch: a pure function of (seed, step).

Every epoch visits each image once in a seeded random order, pairing it with one of its captions
drawn with the same seed, so a batch never holds one image twice (no false negatives from
Flickr8k's five captions) and every caption is seen across epochs. Because the batch at step s
depends on nothing but s, resuming needs no sampler state and gives the same batches.

With a shuffle buffer (``buffer`` > 0 shards, ``data.shuffle_buffer``; for caches larger than
memory) an epoch is still a permutation of every row, but a blocked one, as WebDataset's shard
shuffle + buffer: the shards are visited in a seeded random order, ``buffer`` at a time, and the
rows of those shards are shuffled among themselves. So no image repeats within an epoch (nor in a
batch), every image is seen once per epoch, and only ``buffer`` (+1 where a batch straddles two
windows) shards need be in memory at once. The price: a batch draws its rows from ``buffer``
shards, not from the whole data set; rows of one shard (images that sat together in the source,
e.g. one web crawl's domain) meet as negatives more often than under a uniform shuffle.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np


class PairSchedule:
    CHUNK = 1 << 20  # rows per draw of the caption indices
    def __init__(self, n_captions: Sequence[int] | np.ndarray, batch_size: int, seed: int = 0, views: int = 0,
                 rank: int = 0, world: int = 1, shard_starts: Sequence[int] | None = None, buffer: int = 0):
        """``batch_size`` is the global batch; under torchrun each process takes its slice.
        ``shard_starts``: (S+1,) first row of each shard and the total; with ``buffer`` > 0, epochs
        are shuffled ``buffer`` shards at a time (module docstring)."""
        if batch_size % world:
            raise ValueError(f"train.batch_size {batch_size} is not divisible by {world} processes")
        self.rank, self.world, self.local_batch = rank, world, batch_size // world
        if len(n_captions) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({len(n_captions)} images)")
        self.n_captions = np.asarray(n_captions, dtype=np.int32)  # (N,): 40 MB at 10M rows
        if (self.n_captions < 1).any():
            raise ValueError("every image needs at least one caption")
        self.n, self.batch_size, self.seed, self.views = len(n_captions), batch_size, seed, views
        if buffer < 0:
            raise ValueError(f"data.shuffle_buffer {buffer}: the number of shards shuffled together, 0 (off) or more")
        if buffer and shard_starts is None:
            raise ValueError("a shuffle buffer needs the shards' boundaries (shard_starts)")
        self.buffer = buffer
        self.starts = np.asarray(shard_starts if shard_starts is not None else [0, self.n], dtype=np.int64)
        if buffer and (self.starts[0] != 0 or self.starts[-1] != self.n or (np.diff(self.starts) < 0).any()):
            raise ValueError(f"shard_starts {self.starts[:3]}...{self.starts[-1]} do not cover the {self.n} rows")

    def _blocked_permutation(self, rng: np.random.Generator) -> np.ndarray:
        """Shards in a random order, ``buffer`` at a time; rows shuffled within each window. (N,) int64."""
        shard_order = rng.permutation(len(self.starts) - 1)
        order, pos = np.empty(self.n, np.int64), 0
        for w in range(0, len(shard_order), self.buffer):
            window = shard_order[w:w + self.buffer]
            rows = np.concatenate([np.arange(self.starts[s], self.starts[s + 1]) for s in window])
            order[pos:pos + len(rows)] = rows[rng.permutation(len(rows))]
            pos += len(rows)
        return order

    @lru_cache(maxsize=2)  # the current epoch and one more: at 10M rows an epoch's arrays are ~200 MB
    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, e])
        order = self._blocked_permutation(rng) if self.buffer else rng.permutation(self.n)
        # caption index per row: a uniform draw x the row's caption count, drawn in chunks (the same
        # numbers as one draw of n: at 10M rows one draw and its temporaries would cost ~300 MB)
        caption = np.empty(self.n, np.int32)
        for i in range(0, self.n, self.CHUNK):
            j = min(self.n, i + self.CHUNK)
            caption[i:j] = rng.random(j - i) * self.n_captions[order[i:j]]  # truncation: the floor, >= 0
        view = (rng.integers(0, self.views + 1, self.n) if self.views
                else np.broadcast_to(np.zeros(1, np.int64), (self.n,)))  # all plain views: no memory
        return order, caption, view

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image rows, caption index per row, view per row) for ``step``; wraps across epochs
        by dropping the tail of an epoch (batches never mix epochs, so images stay unique)."""
        per_epoch = self.n // self.batch_size
        e, b = divmod(step, per_epoch)
        order, caption, view = self.epoch(e)
        start = b * self.batch_size + self.rank * self.local_batch
        sl = slice(start, start + self.local_batch)
        return order[sl], caption[sl], view[sl]

    def position(self, step: int) -> dict:
        per_epoch = self.n // self.batch_size
        return {"epoch": step // per_epoch, "batch_in_epoch": step % per_epoch, "batches_per_epoch": per_epoch}
