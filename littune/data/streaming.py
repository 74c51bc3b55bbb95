"""Streaming WebDataset shards: image-text data sets that never sit on disk or in memory at once.

``StreamingDataset`` is a ``torch.utils.data.IterableDataset`` over the same tar shards that
``WebDatasetSource`` reads (img2dataset's layout, one shard at a time, with webdataset's own tar
reader and key grouping; a shard may be a local path or a ``pipe:``/URL that ``gopen`` streams).
It yields ``Sample(key, image, caption)``: the image's encoded bytes, or the tensor a given
``transform`` makes of the decoded image.

Splitting, per epoch (exact: every sample once per epoch, none lost, none twice)
    1. The shard list is put in one seeded order, the same in every process and worker:
       ``permutation(seed, epoch)`` (or the given order with ``shuffle_shards=False``).
    2. With ``world`` processes (torch.distributed rank/world size) and ``workers`` DataLoader
       workers per process, (rank, worker) is reader ``g = rank * workers + worker`` of
       ``G = world * workers`` and reads the shards at positions ``i`` of that order with
       ``i % G == g``.
    When the shards do not divide evenly, the first ``n_shards % G`` readers get one shard more
    (and a reader past the last shard gets none): shards are never split or repeated, so an epoch
    is still exact, but processes may see different numbers of samples per epoch. Keep
    ``n_shards`` a multiple of ``world * workers`` (or much larger) to balance them; training
    (``littune.train.stream``) needs at least one shard per process and lowers the worker count
    so each worker has one.
    webdataset's ``split_by_node``/``split_by_worker`` implement the same idea but read the rank
    from the environment inside the pipeline; here rank and world are fixed when the dataset is
    made (so 2 ranks x 2 workers can be simulated in one process) and the arithmetic is explicit.

Shuffling
    A bounded buffer of ``shuffle_buffer`` samples per reader (``buffered_shuffle``): fill it, then
    emit a random element and put the next sample in its place. The buffer holds encoded bytes
    (decoding happens after shuffling), so memory is ``shuffle_buffer`` x the mean encoded sample
    size per worker. Its random generator is seeded by (seed, epoch, rank, world, worker, workers),
    so a run is reproducible for a seed and each epoch's order differs; the buffer is drained at
    the end of each epoch, so no sample crosses into the next one.

Bad inputs: unreadable shards and malformed samples (missing caption, ...) are recorded by
``WebDatasetSource``; images that fail to decode raise ``BadImage``. Both are skipped, or, with
``keep_bad=True``, yielded in place as ``Bad(key, path, reason, detail)`` so a caller can log them.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from .images import DEFAULT_MAX_PIXELS, BadImage, load_image
from .sources import Record, WebDatasetSource, expand_shards

__all__ = ["Sample", "Bad", "StreamingDataset", "assign_shards", "shard_order", "buffered_shuffle", "worker_slot"]


class Sample(NamedTuple):
    key: str
    image: Any  # encoded bytes, or whatever ``transform`` returns (a tensor); None when only checked
    caption: str


class Bad(NamedTuple):
    key: str
    path: str
    reason: str
    detail: str


def assign_shards(n_shards: int, rank: int, world: int, worker: int = 0, workers: int = 1) -> list[int]:
    """Positions (in the epoch's shard order) that reader (rank, worker) reads: i % G == g."""
    if not (0 <= rank < world and 0 <= worker < max(workers, 1)):
        raise ValueError(f"bad reader: rank {rank} of {world}, worker {worker} of {workers}")
    G = world * max(workers, 1)
    return list(range(rank * max(workers, 1) + worker, n_shards, G))


def shard_order(n_shards: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The epoch's shard order: identical in every process and worker (it depends on nothing else)."""
    if not shuffle:
        return list(range(n_shards))
    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(n_shards)]


def buffered_shuffle(items: Iterable, size: int, rng: random.Random) -> Iterator:
    """Shuffle a stream with at most ``size`` items held at any time; every item comes out once.

    ``size <= 1`` passes the stream through unchanged.
    """
    if size <= 1:
        yield from items
        return
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        out, buf[j] = buf[j], item
        yield out
    rng.shuffle(buf)
    yield from buf


def worker_slot() -> tuple[int, int]:
    """(worker id, number of workers) of the calling DataLoader worker; (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class StreamingDataset(IterableDataset):
    """WebDataset shards as an exact, shuffled stream split over processes and DataLoader workers.

    ``rank``/``world`` default to torch.distributed's (1 process when it is not initialised) and
    are fixed here, in the main process. ``epochs=None`` streams forever (epoch after epoch, each
    with its own shard order and shuffle); ``set_epoch`` chooses the first epoch.
    """

    def __init__(self, shards: str | list[str], *, transform: Callable | None = None, shuffle_buffer: int = 1000,
                 shuffle_shards: bool = True, seed: int = 0, epoch: int = 0, epochs: int | None = 1,
                 rank: int | None = None, world: int | None = None, keep_bad: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        from .. import distributed

        self.shards = expand_shards(shards)
        if not self.shards:
            raise ValueError(f"{shards}: no shards")
        WebDatasetSource(self.shards)  # fails early, naming them, if local shards are missing
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")
        self.transform, self.shuffle_buffer, self.shuffle_shards = transform, shuffle_buffer, shuffle_shards
        self.seed, self.epoch, self.epochs = seed, epoch, epochs
        self.keep_bad, self.max_pixels = keep_bad, max_pixels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self, epoch: int, worker: int = 0, workers: int = 1) -> list[str]:
        order = shard_order(len(self.shards), self.seed, epoch, self.shuffle_shards)
        return [self.shards[order[i]] for i in assign_shards(len(order), self.rank, self.world, worker, workers)]

    def records(self, epoch: int, worker: int = 0, workers: int = 1) -> Iterator[Record | Bad]:
        """This reader's records of one epoch, shuffled, not decoded (bad ones as ``Bad``)."""
        rng = random.Random(_seed(self.seed, epoch, self.rank, self.world, worker, workers))
        return buffered_shuffle(self._read(self.my_shards(epoch, worker, workers)), self.shuffle_buffer, rng)

    def _read(self, shards: list[str]) -> Iterator[Record | Bad]:
        for shard in shards:  # one shard open at a time; WebDatasetSource closes it when done
            source = WebDatasetSource([shard])
            yield from source
            if self.keep_bad:
                for b in source.bad:
                    yield Bad(b.key, b.path, b.reason, b.detail)

    def decode(self, record: Record, apply_transform: bool = True) -> Sample | Bad | None:
        """``record`` -> Sample (bytes, or the transformed image); a bad image -> Bad or None.

        ``apply_transform=False`` only checks that the image decodes (Sample.image is None).
        """
        if self.transform is None:
            return Sample(record.key, record.image, record.caption)
        try:
            img = load_image(record.image, max_pixels=self.max_pixels, name=record.key)
        except BadImage as e:
            return Bad(record.key, "", e.reason, str(e)) if self.keep_bad else None
        return Sample(record.key, self.transform(img) if apply_transform else None, record.caption)

    def stream_records(self, worker: int = 0, workers: int = 1) -> Iterator[Record | Bad]:
        """This reader's records, epoch after epoch (``epochs`` of them, or forever), not decoded."""
        if not assign_shards(len(self.shards), self.rank, self.world, worker, workers):
            return  # a reader without shards has nothing to stream (and must not loop forever)
        e = self.epoch
        while self.epochs is None or e < self.epoch + self.epochs:
            yield from self.records(e, worker, workers)
            e += 1

    def samples(self, worker: int = 0, workers: int = 1) -> Iterator[Sample | Bad]:
        """Every sample of this reader, decoded (bad ones skipped, or as ``Bad`` with keep_bad)."""
        for rec in self.stream_records(worker, workers):
            out = rec if isinstance(rec, Bad) else self.decode(rec)
            if out is not None:
                yield out

    def __iter__(self) -> Iterator[Sample | Bad]:
        return self.samples(*worker_slot())
