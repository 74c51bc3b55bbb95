"""``littune serve``: load the model (and index) once, bound the threads, run uvicorn."""
from __future__ import annotations

import os
from pathlib import Path

from .app import create_app
from .limits import ServeLimits


def bound_threads(threads: int | None) -> int:
    """Inference threads: a web server shares the machine, and one request at a time holds the model."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = threads or min(4, cores)
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        pass
    return n


def build_app(model: str | Path, index: str | Path | None = None, limits: ServeLimits | None = None,
              device: str = "auto"):
    from ..infer import load

    lit = load(model, device=device)
    return create_app(lit, lit.open_index(index) if index else None, limits), lit


def serve(model: str | Path, index: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int | None = None, limits: ServeLimits | None = None, log_level: str = "warning",
          device: str = "auto") -> None:
    import uvicorn

    limits = limits or ServeLimits()
    n = bound_threads(threads)
    app, lit = build_app(model, index, limits, device)
    print(f"littune serve: http://{host}:{port}/  (model {lit.source}, {n} threads"
          + (f", index {index}" if index else ", no index: search is off") + ")", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1,
                limit_concurrency=limits.max_concurrency, server_header=False)
