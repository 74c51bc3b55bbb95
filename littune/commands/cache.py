"""``littune cache verify DIR``: check an embedding cache's files against the SHA-256 its manifest recorded,
and its source images against the sizes (``--deep``: the SHA-256) they had when embedded."""
from __future__ import annotations

import argparse
import json

from .base import HelpFormatter, add_json, command


@command("cache", "check embedding caches: verify")
def _cache(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    v = sub.add_parser("verify", help="check every file of a cache against its manifest (rows, widths, SHA-256)",
                       description="check every shard of an embedding cache (and the text caches inside it): "
                                   "rows, widths and dtypes against the manifest, and each file's SHA-256 against "
                                   "the one recorded when it was written, and the source images' sizes against "
                                   "their sizes when embedded; exit 2 naming the shard, the file (or image) and the "
                                   "repair when anything differs",
                       formatter_class=HelpFormatter)
    v.add_argument("dir", metavar="DIR", help="a cache folder made by `littune embed` (or a text cache)")
    v.add_argument("--deep", action="store_true",
                   help="also read every source image again and compare its SHA-256 with the one embedding "
                        "recorded (finds a photo replaced by another of the same size; reads the whole data set)")
    add_json(v, "the check (per cache: folder, kind, shards, files checked, problems)")

    def run(a: argparse.Namespace) -> int:
        from ..cache import verify_cache

        reports = verify_cache(a.dir, deep=a.deep)
        if a.json:
            print(json.dumps([{"folder": str(r.folder), "kind": r.kind, "shards": r.n_shards, "files": r.n_files,
                               "sources": r.n_sources, "deep": a.deep, "notes": r.notes, "ok": r.ok,
                               "problems": {str(k): ps for k, ps in r.problems.items()},
                               "repair": "" if r.ok else r.repair} for r in reports]))
            return 0 if all(r.ok for r in reports) else 2
        for r in reports:
            if not r.ok:
                raise r.error()
            how = "SHA-256 (re-read)" if a.deep else "sizes"
            sources = f"; {r.n_sources} source images match their {how}" if r.kind != "text" else ""
            print(f"{r.kind} cache {r.folder}: ok ({r.n_shards} shards, {r.n_files} files match their SHA-256"
                  f"{sources})" + "".join(f"\n  note: {n}" for n in r.notes))
        return 0

    return run
