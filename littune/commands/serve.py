"""``littune serve``: the web app (zero-shot classification and text-to-image search) and its JSON API."""
from __future__ import annotations

import argparse
import os

from ..serve.limits import ServeLimits
from .base import Number, add_device, add_model, command

_L = ServeLimits()  # the defaults live in the limits dataclass; flags show them


PROXY_HELP = """\
behind a reverse proxy (to serve beyond this machine):
  keep littune on loopback (--host 127.0.0.1) and let the proxy (nginx, Caddy) listen outside,
  end TLS there, and forward to http://127.0.0.1:PORT; give --token TOKEN and
  --allow-host NAME for each public name the proxy forwards (other Host headers get 400).
  Every request then comes from the proxy's address: raise --max-per-client to --max-active.
  /docs (--docs) declares the token, so its "Authorize" button sends it.
"""


@command("serve", "start the local web app: zero-shot classify uploads, search an index", epilog=PROXY_HELP)
def _serve(p: argparse.ArgumentParser):
    add_model(p)
    p.add_argument("--index", default=None, metavar="DIR",
                   help="index folder made by `littune index` (enables search; default: classification only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=Number(int, 1, 65535), default=8000, help="port to listen on")
    p.add_argument("--threads", type=Number(int, 1, 1024), default=None,
                   help="torch threads for inference (default: min(4, cores))")
    p.add_argument("--max-upload-mb", type=Number(float, high=2048, above=0), default=None,
                   help=f"largest accepted upload in MB (default: {_L.max_upload_bytes / 2 ** 20:g})")
    p.add_argument("--max-pixels", type=Number(int, 1, 10**10), default=None,
                   help=f"largest accepted image in pixels, checked before decoding (default: {_L.max_pixels})")
    p.add_argument("--pixel-budget", type=Number(int, 1, 10**10), default=None,
                   help=f"pixels decoded at once over all requests, bounds memory; at least --max-pixels "
                        f"(default: {_L.pixel_budget})")
    p.add_argument("--max-active", type=Number(int, 1, 1024), default=None,
                   help=f"requests handled at once (default: {_L.max_active})")
    p.add_argument("--max-queue", type=Number(int, 0, 100_000), default=None,
                   help=f"requests waiting for a slot (0: none wait); beyond it, 503 JSON with Retry-After "
                        f"(default: {_L.max_queue})")
    p.add_argument("--body-timeout", type=Number(float, high=86400, above=0), default=None, metavar="S",
                   help=f"seconds a request body may take to arrive; slower gets 408 JSON "
                        f"(default: {_L.body_timeout_s:g})")
    p.add_argument("--max-per-client", type=Number(int, 0, 1024), default=None,
                   help="slots one client address may hold at once (0: half of --max-active, at least 1, the default)")
    p.add_argument("--token", default=None,
                   help="require `Authorization: Bearer TOKEN` for the API (default: $LITTUNE_TOKEN); "
                        "needed when --host is not a loopback address")
    p.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                   help="also answer requests with this Host name (repeatable; default: the --host address, "
                        "localhost, 127.0.0.1, ::1; others get 400)")
    p.add_argument("--docs", action="store_true", help="serve the API docs (/docs, /openapi.json)")
    add_device(p)

    def run(a: argparse.Namespace) -> int:
        from ..serve import serve
        from ..serve.guard import Access

        access = Access.for_bind(a.host, tuple(a.allow_host or ()), a.token or os.environ.get("LITTUNE_TOKEN") or None,
                                 a.docs)  # refused before loading
        given = {"max_upload_bytes": int(a.max_upload_mb * 2 ** 20) if a.max_upload_mb is not None else None,
                 "max_pixels": a.max_pixels, "pixel_budget": a.pixel_budget, "max_active": a.max_active,
                 "max_queue": a.max_queue, "body_timeout_s": a.body_timeout, "max_per_client": a.max_per_client}
        if a.max_pixels is not None and a.pixel_budget is None:
            given["pixel_budget"] = max(a.max_pixels, _L.pixel_budget)
        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})  # else ServeLimits' defaults
        serve(a.model, index=a.index, host=a.host, port=a.port, threads=a.threads, limits=limits, device=a.device,
              access=access)
        return 0

    return run
