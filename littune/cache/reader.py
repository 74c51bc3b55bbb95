"""Reading an embedding cache: memory-mapped shards, rows gathered by global index.

Nothing is loaded up front: each shard's ``.npy`` is memory-mapped and the metadata (keys,
captions, paths) is read per shard as Arrow arrays (``columns.py``), so opening costs the same at
any size. Rows drawn uniformly from a cache larger than memory are random disk reads, and the
mapped pages they touch count in the process's resident memory; ``resident(k)`` instead reads
whole shards into memory, keeping at most ``k`` (for training through a shuffle buffer of shards,
``batches.PairSchedule``). Opening checks every shard's rows, width and dtype against the manifest
first (``verify.py``): a damaged cache is refused by name, never read shifted or short.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .columns import MetadataColumn
from .manifest import CacheMismatch, Manifest
from .verify import check_cache


class EmbeddingCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        if not self.manifest.complete:
            raise CacheMismatch(f"{self.folder}: embedding did not finish; run the same "
                                "`littune embed` command again to complete it")
        m = self.manifest
        report = check_cache(self.folder, m)  # headers and row counts only: cheap, so always
        if not report.ok:
            raise report.error()
        self._shards = [np.load(self.folder / "img_emb" / f"img_emb_{s['index']}.npy", mmap_mode="r")
                        for s in m.shards]
        self._views = ([np.load(self.folder / "img_emb_views" / f"img_emb_{s['index']}.npy", mmap_mode="r")
                        for s in m.shards] if m.views else None)
        self._starts = np.array([s["start"] for s in m.shards] + [m.count], dtype=np.int64)
        self._columns: dict[str, MetadataColumn] = {}
        self._resident: OrderedDict[int, np.ndarray] | None = None  # see resident()
        self._max_resident = 0

    def __len__(self) -> int:
        return self.manifest.count

    @property
    def embed_dim(self) -> int:
        return self.manifest.embed_dim

    def column(self, name: str) -> MetadataColumn:
        """One metadata column of every row, read shard by shard on demand (``columns.py``)."""
        if name not in self._columns:
            self._columns[name] = MetadataColumn(self.folder, [s["index"] for s in self.manifest.shards],
                                                 self._starts, name)
        return self._columns[name]

    @property
    def keys(self) -> MetadataColumn:
        return self.column("key")

    @property
    def captions(self) -> MetadataColumn:
        """All captions of each cached image, in row order (``captions[r]`` is a list of str)."""
        return self.column("captions")

    @property
    def image_paths(self) -> MetadataColumn:
        return self.column("image_path")

    def resident(self, max_shards: int) -> None:
        """Read rows from whole shards held in memory, at most ``max_shards`` of them (the least
        recently used dropped), instead of from the memory map: for reading through a shuffle buffer
        of shards, where resident memory must not grow with the cache (mapped pages that a batch
        touched stay counted in it). The captions column keeps as many shards."""
        self._resident, self._max_resident = OrderedDict(), max_shards
        self.captions.max_shards = max_shards

    def _emb(self, s: int) -> np.ndarray:
        if self._resident is None:
            return self._shards[s]
        arr = self._resident.get(s)
        if arr is None:
            k = self.manifest.shards[s]["index"]
            arr = self._resident[s] = np.load(self.folder / "img_emb" / f"img_emb_{k}.npy")  # read whole
            while len(self._resident) > self._max_resident:
                self._resident.popitem(last=False)
        else:
            self._resident.move_to_end(s)
        return arr

    def rows(self, index: np.ndarray | torch.Tensor | list[int], view: np.ndarray | None = None) -> torch.Tensor:
        """Embeddings (len(index), D) as float32; ``view`` picks 0 (plain) or 1..V (augmented) per row."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.embed_dim), dtype=np.float32)
        shard_of = np.searchsorted(self._starts, index, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            local = index[sel] - self._starts[s]
            if view is None or self._views is None:
                out[sel] = self._emb(s)[local]
            else:
                v = np.asarray(view)[sel]
                plain = v == 0
                out[sel[plain]] = self._emb(s)[local[plain]]
                if (~plain).any():
                    out[sel[~plain]] = self._views[s][local[~plain], v[~plain] - 1]
        return torch.from_numpy(out)

    def all(self) -> torch.Tensor:
        return self.rows(np.arange(len(self)))

    def check(self, tower) -> None:
        """Refuse the cache unless ``tower`` (an ImageTower) is exactly the one that made it."""
        self.manifest.check(tower.name, tower.fingerprint(), tower.preprocess.to_dict(), tower.embed_dim,
                            where=str(self.folder), precision=getattr(tower, "cache_precision", "fp32"))
