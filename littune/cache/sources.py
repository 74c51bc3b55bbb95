"""Checking what a cache was embedded *from*: its source images, by size and by content.

``littune embed`` hashes every image's bytes as its decoding workers read them (``data/decode.py``,
``hashes=True``: no second read) and keeps, per image, the SHA-256 and size in the shard's metadata
(columns ``sha256``, ``bytes``) and, per shard, their digest in the manifest's shard record
(``source``: ``verify.source_digest``). So a photo replaced by another of exactly the same size,
which the size-based content fingerprint (``items.content_fingerprint``) cannot see, is found here:

- default (``littune cache verify DIR``): the recorded per-image hashes against the shard's digest,
  and each source file's size now against its size when embedded (one ``stat`` per image);
- ``deep=True`` (``--deep``): every source image read again and re-hashed.

A source that is not there (a cache copied without its images, a streamed WebDataset whose bytes
were never files) is a note by default and a problem with ``deep``: it cannot be re-hashed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..data.images import MISSING, BadImage, read_image_bytes
from .manifest import Manifest
from .verify import VerifyReport, metadata_file, source_digest

SHOWN = 3  # problems named per shard; the rest are counted


def check_sources(report: VerifyReport, m: Manifest, deep: bool = False) -> VerifyReport:
    """Add to ``report`` (of the cache ``report.folder``) what differs between each shard's source
    images now and when they were embedded."""
    import pyarrow.parquet as pq

    folder = Path(report.folder)
    unrecorded, absent = [], 0
    for rec in m.shards:
        k, recorded = rec["index"], rec.get("source")
        if k in report.problems:  # its files are damaged (named already): its metadata is no witness
            continue
        if recorded is None:
            unrecorded.append(k)
            continue
        t = pq.read_table(folder / metadata_file(k), columns=["key", "image_path", "sha256", "bytes"]).to_pydict()
        problems = []
        if source_digest(t["key"], t["sha256"]) != recorded["sha256"]:
            problems.append(f"{metadata_file(k)}: its images' SHA-256 do not make the manifest's source digest "
                            "(the metadata was changed)")
        changed = []
        for key, path, digest, size in zip(t["key"], t["image_path"], t["sha256"], t["bytes"]):
            found = _check_image(path, key, digest, size, deep)
            if found is None:
                absent += 1
                continue
            report.n_sources += 1
            if found:
                changed.append(found)
        if changed:
            problems += changed[:SHOWN] + ([f"and {len(changed) - SHOWN} more changed images"]
                                           if len(changed) > SHOWN else [])
        if problems:
            report.problems.setdefault(k, []).extend(problems)
            report.repair = (f"restore the original images, or embed the data again into a new folder "
                             f"(`littune embed --data {m.source} --out NEW_FOLDER --tower {m.tower}`): this cache "
                             "holds features of the images as they were")
    # what cannot be checked: a note by default, a problem when --deep was asked to re-hash everything
    unchecked = report.problems.setdefault(-1, []) if deep else report.notes
    if unrecorded:
        unchecked.append(f"shards {_ranges(unrecorded)}: no source hashes recorded (embedded by an older littune or "
                         "written synthetically)" + ("; cannot re-hash" if deep else ""))
    if absent:
        unchecked.append(f"{absent} source images not found (moved, or streamed bytes never stored as files)"
                         + ("; cannot re-hash" if deep else "; sizes of the others checked"))
    if deep and not report.problems[-1]:
        del report.problems[-1]
    return report


def _check_image(path: str, key: str, digest: str, size: int, deep: bool) -> str | None:
    """What changed about one source image ("": nothing; None: it is not there to check)."""
    if not path:
        return None
    try:
        if not deep:
            now = os.stat(path).st_size
            return "" if now == size else f"image {key!r} ({path}): {now} bytes now, {size} when embedded"
        data = read_image_bytes(path, name=key)
    except FileNotFoundError:
        return None
    except BadImage as e:  # missing: nothing to check; unreadable, no longer a file, ...: a problem
        return None if e.reason == MISSING else f"image {key!r} ({path}): cannot be read again ({e})"
    now_digest = hashlib.sha256(data).hexdigest()
    if now_digest == digest:
        return ""
    return (f"image {key!r} ({path}): its bytes changed since it was embedded (SHA-256 {digest[:12]} -> "
            f"{now_digest[:12]}, {size} -> {len(data)} bytes)")


def _ranges(ks: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5" (a cache of thousands of shards gets one short line)."""
    out, start = [], ks[0]
    for a, b in zip(ks, ks[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}-{a}" if a != start else str(a))
            start = b
    return ", ".join(out)


__all__ = ["check_sources"]
