"""A searchable image index: a folder's images embedded once, searched by text.

Layout of an index folder:
    features/        the embedding cache of the image tower's features (``littune embed``'s layout:
                     sharded, resumable, bad images skipped and listed in features/bad_inputs.tsv)
    embeddings.npy   (N, E) float32: the model's image head applied and L2-normalised
    faiss.index      a FAISS index over the same rows, written when N >= the FAISS threshold
    index.json       the model that made it (path + fingerprint), the folder, counts; written last

Search is exact (one matmul and a top-k) below the threshold and FAISS above it; FAISS's default
``Flat`` index is exact too (inner product), and any ``index_factory`` string (``HNSW32``,
``IVF1024,Flat``) trades exactness for speed on millions of images.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cache import EmbeddingCache, EmbedOptions, ensure_cache
from ..cache.writer import save_atomic, save_npy
from ..runs.target import check_output
from ..towers.lock import fingerprint
from .options import IndexOptions

INDEX_FILE, EMB_FILE, FAISS_FILE, FEATURES = "index.json", "embeddings.npy", "faiss.index", "features"
FORMAT_VERSION = 1


@dataclass
class Hit:
    position: int  # row in the index (the thumbnail id of the web app)
    key: str  # path relative to the indexed folder
    path: str
    score: float  # cosine similarity

    def to_dict(self) -> dict:
        return asdict(self)


def model_fingerprint(lit) -> str:
    """SHA-256 over every weight of the model: the index refuses any other model."""
    return fingerprint(lit.model)


def build_index(lit, folder: str | Path, out: str | Path, options: IndexOptions | None = None) -> "ImageIndex":
    """Embed every image under ``folder`` (a ``folder:`` source) into an index at ``out`` (resumable)."""
    opts = options or IndexOptions()
    root, out = Path(os.path.abspath(folder)), Path(out)
    # an index of its own (resumed) or an empty folder; never over a model, a run or the user's files
    check_output(out, "--out", (INDEX_FILE, EMB_FILE, FAISS_FILE, FEATURES))
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    tower = lit.model.image
    with lit.exclusive():  # one model, many threads: the tower runs under the model's lock
        cache = ensure_cache(f"folder:{root}", tower, out / FEATURES,
                             EmbedOptions(shard_size=opts.shard_size, batch_size=opts.batch_size,
                                          num_workers=opts.num_workers, progress=opts.progress))
        emb = lit.embed_image_features(cache.all()).numpy().astype(np.float32)  # (N, E), unit rows
        model_fp = model_fingerprint(lit)
    n_items = cache.manifest.n_items
    if len(emb) == 0:
        raise ValueError(f"{root}: none of its {n_items} images could be read; "
                         f"see {out / FEATURES / 'bad_inputs.tsv'}")
    save_atomic(out / EMB_FILE, lambda p: save_npy(p, emb))
    backend = "faiss" if len(emb) >= opts.faiss_threshold else "exact"
    if backend == "faiss":
        save_atomic(out / FAISS_FILE, lambda p: _write_faiss(build_faiss(emb, opts.faiss_factory), p))
    elif (out / FAISS_FILE).exists():
        (out / FAISS_FILE).unlink()
    meta = {"format_version": FORMAT_VERSION, "model": lit.source, "model_fingerprint": model_fp,
            "image_tower": tower.name, "embed_dim": int(emb.shape[1]), "root": str(root), "count": len(emb),
            "n_items": n_items, "n_bad": cache.manifest.n_bad,
            "bad_inputs": str((out / FEATURES / "bad_inputs.tsv").resolve()), "backend": backend,
            "faiss_threshold": opts.faiss_threshold, "faiss_factory": opts.faiss_factory,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    save_atomic(out / INDEX_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
    return ImageIndex(out, lit, meta, np.load(out / EMB_FILE, mmap_mode="r"), cache.keys, cache.image_paths,
                      backend)


def build_faiss(emb: np.ndarray, factory: str = "Flat"):
    import faiss

    index = faiss.index_factory(emb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    x = np.ascontiguousarray(emb, dtype=np.float32)
    if not index.is_trained:  # IVF/PQ factories learn their clusters from the data
        index.train(x)
    index.add(x)
    return index


def _write_faiss(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def exact_topk(emb: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, E) rows, (Q, E) queries -> scores and row ids (Q, k), best first, ties by lower id."""
    scores = queries @ np.asarray(emb).T  # (Q, N)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k), unordered
    ids = np.empty_like(part)
    for q in range(len(part)):
        ids[q] = part[q][np.lexsort((part[q], -scores[q, part[q]]))]
    return np.take_along_axis(scores, ids, axis=1), ids


class ImageIndex:
    """Text-to-image search over an index folder; ``search(query, k)`` -> best ``Hit``s first."""

    def __init__(self, folder: Path, lit, meta: dict, emb: np.ndarray, keys: list[str], paths: list[str],
                 backend: str):
        self.folder, self.lit, self.meta, self.embeddings = Path(folder), lit, meta, emb
        self.keys, self.paths, self.backend = keys, paths, backend
        self._faiss = None
        if backend == "faiss":
            import faiss

            f = self.folder / FAISS_FILE
            self._faiss = faiss.read_index(str(f)) if f.is_file() else build_faiss(np.asarray(emb), meta["faiss_factory"])

    @classmethod
    def open(cls, folder: str | Path, model, backend: str | None = None) -> "ImageIndex":
        """Open an index with ``model`` (a ``LiT`` with the weights that made it). ``backend``: exact | faiss."""
        folder = Path(folder)
        meta = read_meta(folder)
        have = model_fingerprint(model)
        if have != meta["model_fingerprint"]:
            raise ValueError(f"{folder} was made by another model (fingerprint {meta['model_fingerprint']}, "
                             f"this one {have}): search it with the model that made it, or rebuild the index")
        cache = EmbeddingCache(folder / FEATURES)
        if backend not in (None, "exact", "faiss"):
            raise ValueError(f"backend must be exact or faiss, got {backend!r}")
        return cls(folder, model, meta, np.load(folder / EMB_FILE, mmap_mode="r"), cache.keys, cache.image_paths,
                   backend or meta["backend"])

    def __len__(self) -> int:
        return len(self.keys)

    def search_embeddings(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(Q, E) unit queries -> (scores, ids), each (Q, min(k, N)), best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self._faiss is None:
            return exact_topk(self.embeddings, q, k)
        scores, ids = self._faiss.search(q, min(k, len(self)))
        return scores, ids

    def search(self, query: str | Sequence[str], k: int = 10) -> list[Hit] | list[list[Hit]]:
        """Best ``k`` images for a text query (a list of queries gives one list per query)."""
        queries = [query] if isinstance(query, str) else list(query)
        scores, ids = self.search_embeddings(self.lit.embed_texts(queries).numpy(), k)
        hits = [[Hit(int(i), self.keys[i], self.paths[i], float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]
        return hits[0] if isinstance(query, str) else hits


def read_meta(folder: str | Path) -> dict:
    """index.json of a finished index (its model's path and fingerprint, counts, backend)."""
    folder = Path(folder)
    if not (folder / INDEX_FILE).is_file():
        hint = (" (embedding did not finish: run the same `littune index` command again)"
                if (folder / FEATURES).is_dir() else " (make one with `littune index --model M DIR --out INDEX`)")
        raise FileNotFoundError(f"{folder} is not an image index: no {INDEX_FILE}{hint}")
    meta = json.loads((folder / INDEX_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / INDEX_FILE}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    return meta
