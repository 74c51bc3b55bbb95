"""``littune serve``: the web app (zero-shot classification and text-to-image search) and its JSON API."""
from __future__ import annotations

import argparse

from ..serve.limits import ServeLimits
from .base import add_device, add_model, command

_L = ServeLimits()  # the defaults live in the limits dataclass; flags show them


@command("serve", "start the local web app: zero-shot classify uploads, search an index")
def _serve(p: argparse.ArgumentParser):
    add_model(p)
    p.add_argument("--index", default=None, metavar="DIR",
                   help="index folder made by `littune index` (enables search; default: classification only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--threads", type=int, default=None, help="torch threads for inference (default: min(4, cores))")
    p.add_argument("--max-upload-mb", type=float, default=None,
                   help=f"largest accepted upload in MB (default: {_L.max_upload_bytes / 2 ** 20:g})")
    p.add_argument("--max-pixels", type=int, default=None,
                   help=f"largest accepted image in pixels, checked before decoding (default: {_L.max_pixels})")
    add_device(p)

    def run(a: argparse.Namespace) -> int:
        from ..serve import serve

        given = {"max_upload_bytes": int(a.max_upload_mb * 2 ** 20) if a.max_upload_mb is not None else None,
                 "max_pixels": a.max_pixels}
        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})  # else ServeLimits' defaults
        serve(a.model, index=a.index, host=a.host, port=a.port, threads=a.threads, limits=limits, device=a.device)
        return 0

    return run
