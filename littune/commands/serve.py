"""``littune serve``: the web app (zero-shot classification and text-to-image search) and its JSON API."""
from __future__ import annotations

import argparse

from .base import command


@command("serve", "start the local web app: zero-shot classify uploads, search an index")
def _serve(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory or export")
    p.add_argument("--index", default=None, help="index folder made by `littune index` (enables search)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=None, help="torch threads for inference (default: min(4, cores))")
    p.add_argument("--max-upload-mb", type=float, default=None, help="largest accepted upload (default 10 MB)")
    p.add_argument("--max-pixels", type=int, default=None, help="largest accepted image (default 40 MP)")

    def run(a: argparse.Namespace) -> int:
        from ..serve import ServeLimits, serve

        given = {"max_upload_bytes": int(a.max_upload_mb * 2 ** 20) if a.max_upload_mb is not None else None,
                 "max_pixels": a.max_pixels}
        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})  # else ServeLimits' defaults
        serve(a.model, index=a.index, host=a.host, port=a.port, threads=a.threads, limits=limits)
        return 0

    return run
