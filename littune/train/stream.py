"""Training batches streamed from WebDataset shards (``data.stream=true``), for the live image path.

For data sets too large to hold: the shards are read as a stream (``littune.data.streaming``), one
shard open per DataLoader worker, shuffled in a bounded buffer of encoded samples
(``data.stream_buffer`` per worker), decoded and preprocessed in the workers. Nothing is listed or
loaded up front; an epoch ends when the shards do, and the stream continues with the next epoch
(a new shard order and shuffle), so training runs for ``train.steps`` whatever the data set size.

It applies where images are decoded every step: ``data.use_cache=false``, or an image tower that
is not locked. The cached path needs no streaming: cached embeddings are read by memory map
(``EmbeddingCache``: only the rows a batch touches are paged in) and shuffled by index
(``PairSchedule``), so a cache larger than RAM already trains as is.

Each process reads its own shards (``train.batch_size / world`` samples a step) and each of its
workers makes whole batches: batch j of a process comes from worker ``j % workers`` (the DataLoader
takes batches from its workers in turn; the first batches of a resumed run, which may arrive out of
turn, are put back in order). A batch always holds ``local_batch`` good samples: bad
images are replaced by the next samples and reported in ``batch["bad"]``, so every process
contributes the same number of rows to the gathered global batch.

Resuming: the stream has no index to jump to, so a resumed run replays it by step count: each
worker re-reads its shards from the start of the run and skips the batches before the checkpoint's
step, checking that each skipped image decodes (bad images move batch boundaries) but not
preprocessing it. That costs one decode per skipped sample (less than the steps themselves, but
not free for a long run), and gives exactly the batches an uninterrupted run would have seen, as
long as the data, seed, ``train.batch_size``, the number of processes and ``data.num_workers``
are unchanged (each one changes which sample lands in which batch).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ..data.sources import WebDatasetSource, expand_shards
from ..data.streaming import Bad, StreamingDataset, worker_slot
from ..data.workers import loader_workers
from ..config import ConfigError, DataConfig, ExperimentConfig


def is_webdataset_spec(spec: str | None) -> bool:
    """Whether ``open_source`` reads ``spec`` as WebDataset shards (missing shards are reported later)."""
    if not spec:
        return False
    text, lower = str(spec), str(spec).lower()
    if os.path.isdir(text):
        folder = Path(text)
        is_flickr = (folder / "captions.csv").is_file() and (folder / "splits").is_dir()
        return not is_flickr and any(folder.glob("*.tar"))
    return lower.endswith(".tar") or ("{" in text and ".tar" in lower) or "::" in text


def check_stream(cfg: ExperimentConfig, cached: bool) -> None:
    """``data.stream=true`` needs WebDataset shards and the live image path; say which key to change."""
    d = cfg.data
    if cached:
        raise ConfigError("data.stream=true streams images for the live image path, but this run trains on "
                          "cached embeddings (locked image tower, data.use_cache=true): set data.use_cache=false "
                          "to stream, or drop data.stream (a cache is memory-mapped and needs no streaming)")
    if not is_webdataset_spec(d.train):
        raise ConfigError(f"data.stream=true needs WebDataset shards in data.train (a .tar, a brace pattern or a "
                          f"folder of .tar files), got {d.train!r}")
    if d.stream_buffer < 1:
        raise ConfigError(f"data.stream_buffer must be >= 1, got {d.stream_buffer}")


def stream_captions(cfg: DataConfig) -> Iterator[list[str]]:
    """The training captions, read lazily (only if a scratch tokenizer must be trained on them)."""
    for record in WebDatasetSource(cfg.train):
        yield [record.caption]


MAX_BAD_IN_A_ROW = 10_000  # a stream of nothing but bad samples would otherwise loop forever


class _BatchStream(IterableDataset):
    """In each worker: whole batches j = worker, worker + workers, ...; those before ``start`` skipped."""

    def __init__(self, data: StreamingDataset, local_batch: int, start: int, seed: int):
        self.data, self.local_batch, self.start, self.seed = data, local_batch, start, seed

    def __iter__(self) -> Iterator[dict]:
        worker, workers = worker_slot()
        records = self.data.stream_records(worker, workers)
        j, bad_in_a_row = worker, 0
        while True:
            skip = j < self.start
            # Without workers this runs in the trainer's process: its random state (dropout) must not move.
            with torch.random.fork_rng(devices=[]):
                if not skip:  # augmentation depends on (seed, rank, batch) only, not on resuming
                    torch.manual_seed(int(np.random.SeedSequence([self.seed, self.data.rank, j]).generate_state(1)[0]))
                keys, pixels, captions, bad, bad_in_a_row = self._batch(records, worker, skip, bad_in_a_row)
            if not skip:
                yield {"pixels": torch.stack(pixels), "captions": captions, "keys": keys, "bad": bad, "index": j}
            j += workers

    def _batch(self, records, worker: int, skip: bool, bad_in_a_row: int):
        """The next ``local_batch`` good samples (decoded, and preprocessed unless skipped) and the bad
        ones met on the way."""
        keys, pixels, captions, bad = [], [], [], []
        while len(captions) < self.local_batch:
            rec = next(records, None)
            if rec is None:
                raise RuntimeError(f"rank {self.data.rank} worker {worker}: the stream has no usable samples")
            out = rec if isinstance(rec, Bad) else self.data.decode(rec, apply_transform=not skip)
            if isinstance(out, Bad):
                bad.append(tuple(out))
                bad_in_a_row += 1
                if bad_in_a_row > MAX_BAD_IN_A_ROW:
                    raise RuntimeError(f"rank {self.data.rank} worker {worker}: {bad_in_a_row} unusable samples "
                                       f"in a row (last: {out.key}: {out.reason}); is data.train the right data?")
                continue
            bad_in_a_row = 0
            keys.append(out.key)
            captions.append(out.caption)
            pixels.append(out.image)
        return keys, pixels, captions, bad, bad_in_a_row


class StreamingBatches:
    """``iterate(start, stop)`` like ``LiveBatches``, over streamed WebDataset shards.

    Also stands in for the ``PairSchedule`` in checkpoints (``position``): there is no epoch index
    to store, the step is the position.
    """

    def __init__(self, shards: str | list[str], transform, batch_size: int, *, seed: int = 0, num_workers: int = 1,
                 shuffle_buffer: int = 1000, rank: int | None = None, world: int | None = None):
        from .. import distributed

        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world
        if batch_size % self.world:
            raise ValueError(f"train.batch_size {batch_size} is not divisible by {self.world} processes")
        self.batch_size, self.local_batch, self.seed = batch_size, batch_size // self.world, seed
        self.shards = expand_shards(shards)
        n = len(self.shards)
        if n < self.world:
            raise ConfigError(f"data.stream=true: {n} shard(s) for {self.world} processes; each process reads "
                              "whole shards, so there must be at least one per process (more balance better)")
        # Every worker needs a shard of its own (else it would have nothing to stream).
        self.num_workers = min(num_workers, n // self.world)
        self.data = StreamingDataset(self.shards, transform=transform, shuffle_buffer=shuffle_buffer, seed=seed,
                                    epochs=None, rank=self.rank, world=self.world, keep_bad=True)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, transform, rank: int | None = None,
                    world: int | None = None) -> "StreamingBatches":
        return cls(cfg.data.train, transform, cfg.train.batch_size, seed=cfg.train.seed,
                   num_workers=cfg.data.num_workers, shuffle_buffer=cfg.data.stream_buffer, rank=rank, world=world)

    def iterate(self, start: int, stop: int) -> Iterator[dict]:
        if stop <= start:
            return
        ds = _BatchStream(self.data, self.local_batch, start, self.seed)
        # Its own generator: the workers' base seed drawn from the global one would move the trainer's
        # random state (dropout) at another point after a resume than in an uninterrupted run.
        loader = DataLoader(ds, batch_size=None, **loader_workers(self.num_workers),
                            prefetch_factor=2 if self.num_workers else None,
                            generator=torch.Generator().manual_seed(self.seed))
        it = iter(loader)
        # The loader takes batches from workers 0, 1, ... in turn, while batch j comes from worker
        # j % workers: when ``start`` is not a multiple of workers the first ones arrive out of
        # order. Hold them (at most one per worker) until their turn.
        pending, want = {}, start
        try:
            for batch in it:
                pending[batch["index"]] = batch
                while want in pending and want < stop:
                    yield pending.pop(want)
                    want += 1
                if want >= stop:
                    return
        finally:
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:  # stop the (endless) workers now, not at garbage collection
                shutdown()

    def position(self, step: int) -> dict:
        return {"stream": "replayed by step count", "batches": step, "world": self.world,
                "num_workers": self.num_workers}
