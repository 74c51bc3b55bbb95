"""Checking an embedding cache's files against each other and against its manifest.

Two levels (issue 13.1):
- cheap, on every open: each shard's ``.npy`` header (rows, width, dtype) and file size, and its
  metadata parquet's row count (read from the footer), against the manifest's record of the shard;
- full, on request (``littune cache verify DIR``, ``littune embed --verify``): the SHA-256 of every
  file, against the one the manifest recorded when the cache was finished.
A problem names the shard, the file and what differs, and the error says how to repair: the
``littune embed`` that made the cache, run again, re-embeds only the broken shards.
What the shards were embedded *from* (the source images' sizes and SHA-256) is checked by
``sources.py``; a shard's record carries its sources' digest (``source_summary``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import CacheCorrupt, Manifest


def img_emb_file(k: int) -> str:
    return f"img_emb/img_emb_{k}.npy"


def views_file(k: int) -> str:
    return f"img_emb_views/img_emb_{k}.npy"


def metadata_file(k: int) -> str:
    return f"metadata/metadata_{k}.parquet"


def bad_file(k: int) -> str:
    return f"bad/bad_{k}.tsv"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def npy_header(folder: Path, rel: str) -> tuple[tuple[int, ...], np.dtype] | str:
    """The shape and dtype a ``.npy`` file declares, or what is wrong with it (missing, not a
    ``.npy``, shorter or longer than its header says). Reads the header only."""
    path = folder / rel
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            want = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return f"{rel} is missing"
    except (OSError, ValueError) as e:
        return f"{rel} is not a readable .npy file ({e})"
    if size != want:
        return f"{rel} is {'truncated' if size < want else 'longer than its header says'} ({size} bytes, " \
               f"its header says {want})"
    return tuple(int(n) for n in shape), dtype


def parquet_rows(folder: Path, rel: str) -> int | str:
    """Rows of a parquet file from its footer, or what is wrong with it."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(folder / rel).metadata.num_rows)
    except FileNotFoundError:
        return f"{rel} is missing"
    except Exception as e:  # pyarrow's errors for a damaged file (ArrowInvalid, OSError, ...)
        return f"{rel} is not a readable parquet file ({type(e).__name__}: {e})"


def _expect(problems: list[str], header, rel: str, shape: tuple[int | None, ...], dtype: str, what: str) -> int | None:
    """Compare a .npy header with the expected shape (None: any) and dtype; return its rows."""
    if isinstance(header, str):
        problems.append(header)
        return None
    have, have_dtype = header
    if len(have) != len(shape) or any(w is not None and h != w for h, w in zip(have, shape)):
        want = " x ".join("?" if w is None else str(w) for w in shape)
        problems.append(f"{rel} has shape {' x '.join(map(str, have))}, {what} says {want}")
    if have_dtype != np.dtype(dtype):
        problems.append(f"{rel} holds {have_dtype}, {what} says {dtype}")
    return have[0] if have else None


def shard_problems(folder: Path, m: Manifest, k: int, record: dict[str, Any] | None = None,
                   hashes: bool = False) -> list[str]:
    """What is wrong with shard ``k`` of the cache in ``folder`` (empty: nothing found).

    ``record`` is the manifest's entry for the shard (rows, width, dtype, file hashes); without one
    (a shard of a run that was killed) the files are checked against each other and the settings.
    """
    folder, problems = Path(folder), []
    what = "the manifest" if record else "the cache's settings"
    count = record.get("count") if record else None
    width, dtype = (record or {}).get("width", m.embed_dim), (record or {}).get("dtype", m.dtype)
    rows = _expect(problems, npy_header(folder, img_emb_file(k)), img_emb_file(k), (count, width), dtype, what)
    if rows is not None and count is None and rows > m.shard_size:
        problems.append(f"{img_emb_file(k)} has {rows} rows, more than the shard size {m.shard_size}")
    if m.views:
        _expect(problems, npy_header(folder, views_file(k)), views_file(k), (rows, m.views, width), dtype,
                f"{img_emb_file(k)} with --views {m.views}")
    n_meta = parquet_rows(folder, metadata_file(k))
    if isinstance(n_meta, str):
        problems.append(n_meta)
    elif rows is not None and n_meta != rows:
        problems.append(f"{metadata_file(k)} has {n_meta} rows, {img_emb_file(k)} has {rows}")
    if not (folder / bad_file(k)).is_file():
        problems.append(f"{bad_file(k)} is missing")
    if hashes and not problems:
        recorded = (record or {}).get("files") or {}
        if not recorded:
            problems.append("no SHA-256 recorded for its files (made by an older littune); its `littune embed` "
                            "run again records them, re-embedding nothing")
        for rel, digest in recorded.items():
            if sha256_file(folder / rel) != digest:
                problems.append(f"{rel}: SHA-256 differs from the one recorded when it was written (the file changed)")
    return problems


def source_digest(keys: list[str], digests: list[str]) -> str:
    """A shard's sources in one SHA-256: over each (key, SHA-256 of the image's bytes), in row order."""
    h = hashlib.sha256()
    for key, digest in zip(keys, digests):
        h.update(f"{key}\t{digest}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def source_summary(folder: Path, k: int) -> dict[str, Any] | None:
    """{"sha256", "bytes", "images"} of shard ``k``'s source images, from the per-image hashes its
    metadata holds (None: a shard written without them, by an older littune or a synthetic cache)."""
    import pyarrow.parquet as pq

    path = Path(folder) / metadata_file(k)
    if "sha256" not in pq.read_schema(path).names:
        return None
    t = pq.read_table(path, columns=["key", "sha256", "bytes"])
    return {"sha256": source_digest(t.column("key").to_pylist(), t.column("sha256").to_pylist()),
            "bytes": int(sum(t.column("bytes").to_pylist())), "images": t.num_rows}


def shard_record(folder: Path, m: Manifest, k: int, start: int) -> dict[str, Any]:
    """The manifest's entry for a finished shard: rows, width, dtype, each file's SHA-256 and (where
    embedding recorded them) its source images' digest."""
    folder = Path(folder)
    arr = np.load(folder / img_emb_file(k), mmap_mode="r")
    rels = [img_emb_file(k)] + ([views_file(k)] if m.views else []) + [metadata_file(k)]
    n = int(arr.shape[0])
    rec = {"index": k, "count": n, "start": start, "end": start + n, "width": int(arr.shape[1]),
           "dtype": str(arr.dtype), "files": {rel: sha256_file(folder / rel) for rel in rels}}
    source = source_summary(folder, k)
    if source is not None:
        rec["source"] = source
    return rec


@dataclass
class VerifyReport:
    """The result of checking a cache: problems per shard (and of the cache as a whole, shard -1)."""

    folder: Path
    kind: str  # image | text
    n_shards: int = 0
    n_files: int = 0  # files whose SHA-256 was checked
    problems: dict[int, list[str]] = field(default_factory=dict)
    repair: str = ""
    n_sources: int = 0  # source images checked (sizes; re-hashed with --deep)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why

    @property
    def ok(self) -> bool:
        return not self.problems

    def error(self) -> CacheCorrupt:
        """The one exception that reports every problem: the first named, the rest counted."""
        lines = [f"shard {k}: {p}" if k >= 0 else p for k, ps in sorted(self.problems.items()) for p in ps]
        more = f" (and {len(lines) - 1} more problem{'s' * (len(lines) > 2)})" if len(lines) > 1 else ""
        return CacheCorrupt(f"{self.kind} cache {self.folder} is damaged: {lines[0]}{more}\n  repair: {self.repair}")


def repair_hint(folder: Path, m: Manifest) -> str:
    """The command that repairs the cache: the one that made it, with --verify."""
    # a composite tower (averaged views, a concatenation: towers/composite.py) is built from a config
    tower = "--config <the config it was made with>" if "combine" in m.preprocess else f"--tower {m.tower}"
    args = f"--data {m.source} --out {folder} {tower} --shard-size {m.shard_size} --dtype {m.dtype}"
    args += f" --views {m.views}" if m.views else ""
    return (f"`littune embed {args} --verify` (and the --checkpoint/--image-col/--root it was made with) "
            "re-embeds only the broken shards")


def check_cache(folder: str | Path, m: Manifest | None = None, hashes: bool = False) -> VerifyReport:
    """Check every shard of a finished image cache (``hashes``: also every file's SHA-256)."""
    folder = Path(folder)
    m = m or Manifest.read(folder)
    n_shards = m.n_shards if m.shard_size >= 1 else 0  # a shard size of 0 is reported below, not divided by
    report = VerifyReport(folder, "embedding", n_shards=n_shards, repair=repair_hint(folder, m))
    if not m.complete:
        report.problems[-1] = ["embedding did not finish"]
        return report
    whole = manifest_problems(m)
    if whole:
        report.problems[-1] = whole
        return report
    records = {s.get("index"): s for s in m.shards}
    if sorted(records) != list(range(m.n_shards)):
        report.problems[-1] = [f"the manifest lists shards {sorted(records)}, {m.n_items} images in shards of "
                               f"{m.shard_size} make {m.n_shards}"]
        return report
    start = 0
    for k in range(m.n_shards):
        rec = records[k]
        if rec.get("start") != start:
            report.problems.setdefault(-1, []).append(f"shard {k} starts at row {rec.get('start')}, the shards "
                                                      f"before it end at {start}")
        start += int(rec.get("count", 0))
        found = _record_problems(m, rec) + shard_problems(folder, m, k, rec, hashes)
        if found:
            report.problems[k] = found
        elif hashes:
            report.n_files += len(rec.get("files") or {})
    if start != m.count:
        report.problems.setdefault(-1, []).append(f"the shards hold {start} rows, the manifest's count is {m.count}")
    extra = sorted(p.name for p in (folder / "img_emb").glob("img_emb_*.npy")
                   if p.stem.rpartition("_")[2].isdigit() and int(p.stem.rpartition("_")[2]) >= m.n_shards)
    if extra:
        report.problems.setdefault(-1, []).append(f"the manifest lists {m.n_shards} shards, img_emb/ also holds "
                                                  f"{', '.join(extra[:3])}")
    if not report.problems:
        captions = _caption_problem(folder, m)
        if captions:
            report.problems[-1] = [captions]
    return report


def manifest_problems(m: Manifest) -> list[str]:
    """The manifest's own counts against each other: items, embeddings, bad inputs, shard size."""
    problems = []
    if m.shard_size < 1:
        problems.append(f"the manifest's shard size is {m.shard_size}; it must be >= 1")
    if m.n_items < 1:
        problems.append(f"the manifest lists {m.n_items} images; a finished cache holds at least one")
    if not 0 <= m.count <= m.n_items:
        problems.append(f"the manifest's count ({m.count} embeddings) is outside 0..{m.n_items} (its images)")
    elif m.count + m.n_bad < m.n_items:
        problems.append(f"{m.n_items} images, {m.count} embedded and {m.n_bad} listed as bad: "
                        f"{m.n_items - m.count - m.n_bad} vanished without a reason")
    if m.n_captions < 0 or m.embed_dim < 1:
        problems.append(f"the manifest's n_captions ({m.n_captions}) or embed_dim ({m.embed_dim}) is impossible")
    return problems


def _record_problems(m: Manifest, rec: dict[str, Any]) -> list[str]:
    """One shard's entry against the manifest: its width is the cache's, its rows fit a shard."""
    problems = []
    if rec.get("width") != m.embed_dim:
        problems.append(f"the manifest records width {rec.get('width')} for it, the cache's embed_dim is {m.embed_dim}")
    if not 0 <= int(rec.get("count", 0)) <= m.shard_size:
        problems.append(f"the manifest records {rec.get('count')} rows for it, a shard holds 0..{m.shard_size}")
    return problems


def _caption_problem(folder: Path, m: Manifest) -> str:
    """Captions in the shards' metadata against the manifest's ``n_captions`` (all of them when
    nothing was skipped; never more)."""
    import pyarrow.parquet as pq

    found = 0
    for k in range(m.n_shards):
        path = folder / metadata_file(k)
        if "captions" not in pq.ParquetFile(path).schema_arrow.names:
            return ""  # made before the column was written: nothing to compare
        found += sum(len(c) for c in pq.read_table(path, columns=["captions"]).column("captions").to_pylist())
    if found > m.n_captions or (m.n_bad == 0 and found != m.n_captions):
        return f"the shards' metadata hold {found} captions, the manifest's n_captions is {m.n_captions}"
    return ""


__all__ = ["VerifyReport", "check_cache", "shard_problems", "shard_record", "sha256_file"]
