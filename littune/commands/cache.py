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
    _synth_parser(sub)

    def run(a: argparse.Namespace) -> int:
        if a.action == "synth":
            return _synth(a)
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


def _synth_parser(sub) -> None:
    """Hidden (no help in the list of actions): a tool of benchmarks/bench_cache_scale.py."""
    s = sub.add_parser("synth", formatter_class=HelpFormatter,
                       description="write a synthetic embedding cache of ROWS rows in the format `littune embed` "
                                   "writes (random features of the tower's width, generated captions), for "
                                   "measuring training at scale; prints one JSON line")
    s.add_argument("--rows", type=int, required=True, help="rows (images) in the cache")
    s.add_argument("--out", required=True, help="a new folder for the cache")
    s.add_argument("--tower", default="efficientnet_lite0",
                   help="the image tower whose identity and width the cache carries")
    s.add_argument("--checkpoint", default=None, help="local weights file for the tower (default: its own weights)")
    s.add_argument("--shard-size", type=int, default=4096, help="rows per shard")
    s.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="feature dtype")
    s.add_argument("--max-captions", type=int, default=1, help="captions per image, drawn from 1 to this")
    s.add_argument("--seed", type=int, default=0, help="seed of the features and captions")


def _synth(a: argparse.Namespace) -> int:
    from ..cache.synth import write_synthetic
    from ..towers import create_image_tower

    tower = create_image_tower(a.tower, checkpoint=a.checkpoint, lock="L")  # its identity only
    r = write_synthetic(a.out, a.rows, tower=tower.name, fingerprint=tower.fingerprint(),
                        preprocess=tower.preprocess.to_dict(), embed_dim=tower.embed_dim, shard_size=a.shard_size,
                        dtype=a.dtype, max_captions=a.max_captions, seed=a.seed)
    print(json.dumps({"rows": r.rows, "shards": r.shards, "write_s": round(r.write_s, 3), "bytes": r.bytes_on_disk}))
    return 0
