"""``littune cache verify DIR``: check an embedding cache's files against the SHA-256 its manifest recorded."""
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
                                   "the one recorded when it was written; exit 2 naming the shard, the file and the "
                                   "repair when anything differs",
                       formatter_class=HelpFormatter)
    v.add_argument("dir", metavar="DIR", help="a cache folder made by `littune embed` (or a text cache)")
    add_json(v, "the check (per cache: folder, kind, shards, files checked, problems)")

    def run(a: argparse.Namespace) -> int:
        from ..cache import verify_cache

        reports = verify_cache(a.dir)
        if a.json:
            print(json.dumps([{"folder": str(r.folder), "kind": r.kind, "shards": r.n_shards, "files": r.n_files,
                               "ok": r.ok, "problems": {str(k): ps for k, ps in r.problems.items()},
                               "repair": "" if r.ok else r.repair} for r in reports]))
            return 0 if all(r.ok for r in reports) else 2
        for r in reports:
            if not r.ok:
                raise r.error()
            print(f"{r.kind} cache {r.folder}: ok ({r.n_shards} shards, {r.n_files} files match their SHA-256)")
        return 0

    return run
