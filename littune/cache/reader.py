"""Reading an embedding cache: memory-mapped shards, rows gathered by global index.

Nothing is loaded up front: each shard's ``.npy`` is memory-mapped, so a cache larger than RAM
trains the same way (shuffling is by index; the OS pages in what a batch touches). Opening checks
every shard's rows, width and dtype against the manifest first (``verify.py``): a damaged cache is
refused by name, never read shifted or short.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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
        self._meta = None

    def __len__(self) -> int:
        return self.manifest.count

    @property
    def embed_dim(self) -> int:
        return self.manifest.embed_dim

    def _metadata(self):
        if self._meta is None:
            import pyarrow.parquet as pq

            tables = [pq.read_table(self.folder / "metadata" / f"metadata_{s['index']}.parquet")
                      for s in self.manifest.shards]
            self._meta = {col: sum((t.column(col).to_pylist() for t in tables), [])
                          for col in ("key", "image_path", "captions")}
        return self._meta

    @property
    def keys(self) -> list[str]:
        return self._metadata()["key"]

    @property
    def captions(self) -> list[list[str]]:
        """All captions of each cached image, in row order."""
        return self._metadata()["captions"]

    @property
    def image_paths(self) -> list[str]:
        return self._metadata()["image_path"]

    def rows(self, index: np.ndarray | torch.Tensor | list[int], view: np.ndarray | None = None) -> torch.Tensor:
        """Embeddings (len(index), D) as float32; ``view`` picks 0 (plain) or 1..V (augmented) per row."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.embed_dim), dtype=np.float32)
        shard_of = np.searchsorted(self._starts, index, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            local = index[sel] - self._starts[s]
            if view is None or self._views is None:
                out[sel] = self._shards[s][local]
            else:
                v = np.asarray(view)[sel]
                plain = v == 0
                out[sel[plain]] = self._shards[s][local[plain]]
                if (~plain).any():
                    out[sel[~plain]] = self._views[s][local[~plain], v[~plain] - 1]
        return torch.from_numpy(out)

    def all(self) -> torch.Tensor:
        return self.rows(np.arange(len(self)))

    def check(self, tower) -> None:
        """Refuse the cache unless ``tower`` (an ImageTower) is exactly the one that made it."""
        self.manifest.check(tower.name, tower.fingerprint(), tower.preprocess.to_dict(), tower.embed_dim,
                            where=str(self.folder))
