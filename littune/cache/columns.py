"""A cache's metadata columns (keys, captions, image paths) as Arrow arrays, shard by shard.

At 10 million images, captions held as Python lists cost gigabytes (a ``str`` object is ~50 bytes
before its text, a ``list`` ~60 more) and seconds to build; as Arrow arrays they are their UTF-8
bytes plus 4-byte offsets, read straight from each shard's parquet (docs/caches.md has the
measured sizes). A column reads a shard only when a row of it is asked for, and with
``max_shards`` keeps at most that many shards in memory (the least recently used is dropped):
training through a shuffle buffer (``batches.PairSchedule``) then holds the buffer's shards only.

It is a read-only ``Sequence``, so code written for a list (``len``, ``col[i]``, iteration, ``zip``)
works unchanged; ``take(rows)`` gathers many rows a shard at a time.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .verify import metadata_file


class MetadataColumn(Sequence):
    def __init__(self, folder: str | Path, shards: list[int], starts: np.ndarray, column: str,
                 max_shards: int | None = None):
        """``shards``: the shard indices in row order; ``starts``: (S+1,) the first row of each and the total."""
        self.folder, self.shards, self.starts, self.column = Path(folder), shards, starts, column
        self.max_shards = max_shards
        self._loaded: OrderedDict[int, Any] = OrderedDict()  # position in ``shards`` -> pyarrow Array

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _shard(self, s: int):
        arr = self._loaded.get(s)
        if arr is None:
            import pyarrow.parquet as pq

            table = pq.read_table(self.folder / metadata_file(self.shards[s]), columns=[self.column])
            arr = self._loaded[s] = table.column(self.column).combine_chunks()
        else:
            self._loaded.move_to_end(s)
        while self.max_shards is not None and len(self._loaded) > self.max_shards:
            self._loaded.popitem(last=False)
        return arr

    def _locate(self, i: int) -> tuple[int, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of a cache of {len(self)} rows")
        i %= len(self)
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        return s, i - int(self.starts[s])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        s, local = self._locate(int(i))
        return self._shard(s)[local].as_py()

    def take(self, rows) -> list:
        """The values of ``rows`` (any order), reading each shard they touch once."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list = [None] * len(rows)
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            values = self._shard(int(s)).take(rows[sel] - self.starts[s]).to_pylist()
            for j, v in zip(sel.tolist(), values):
                out[j] = v
        return out

    def __iter__(self):
        for s in range(len(self.shards)):
            yield from self._shard(s).to_pylist()

    def __eq__(self, other) -> bool:  # compares with a list the way the list it replaced did
        if isinstance(other, (list, tuple, MetadataColumn)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # mutable cache inside: not hashable, as a list

    def counts(self) -> np.ndarray:
        """(N,) int64 list lengths of a list column (captions per image), without Python lists; the
        shards read for it are not kept."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        out = np.empty(len(self), np.int64)
        for s, k in enumerate(self.shards):
            arr = self._loaded.get(s)
            if arr is None:
                arr = pq.read_table(self.folder / metadata_file(k), columns=[self.column]).column(self.column)
            out[self.starts[s]:self.starts[s + 1]] = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        return out

    def nbytes(self) -> int:
        """Bytes of the Arrow arrays held now (what docs/caches.md measures)."""
        return sum(a.nbytes for a in self._loaded.values())


__all__ = ["MetadataColumn"]
