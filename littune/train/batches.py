"""Which examples form each training batch: a pure function of (seed, step).

Every epoch visits each image once in a seeded random order, pairing it with one of its captions
drawn with the same seed, so a batch never holds one image twice (no false negatives from
Flickr8k's five captions) and every caption is seen across epochs. Because the batch at step s
depends on nothing but s, resuming needs no sampler state and gives the same batches.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class PairSchedule:
    def __init__(self, n_captions: list[int], batch_size: int, seed: int = 0, views: int = 0,
                 rank: int = 0, world: int = 1):
        """``batch_size`` is the global batch; under torchrun each process takes its slice."""
        if batch_size % world:
            raise ValueError(f"train.batch_size {batch_size} is not divisible by {world} processes")
        self.rank, self.world, self.local_batch = rank, world, batch_size // world
        if len(n_captions) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({len(n_captions)} images)")
        self.n_captions = np.asarray(n_captions, dtype=np.int64)
        if (self.n_captions < 1).any():
            raise ValueError("every image needs at least one caption")
        self.n, self.batch_size, self.seed, self.views = len(n_captions), batch_size, seed, views

    @lru_cache(maxsize=4)
    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, e])
        order = rng.permutation(self.n)
        caption = (rng.random(self.n) * self.n_captions[order]).astype(np.int64)
        view = rng.integers(0, self.views + 1, self.n) if self.views else np.zeros(self.n, np.int64)
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
