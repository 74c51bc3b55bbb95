"""``littune serve``: load the model (and index) once, bound the threads and memory, run uvicorn."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
from pathlib import Path

from .guard import Access
from .limits import ServeLimits

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


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


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Make glibc give big freed buffers (decoded images) back to the system.

    glibc raises its mmap threshold to the size of each big block freed (up to 32 MB), after which
    Pillow's 16 MB image blocks come from the heap and a burst of large uploads leaves the
    process at its peak size for good. A fixed threshold keeps them mmapped: freed is returned.
    """
    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).mallopt(M_MMAP_THRESHOLD, threshold)) if name else False
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


def build_app(model: str | Path, index: str | Path | None = None, limits: ServeLimits | None = None,
              device: str = "auto", access: Access | None = None):
    from ..infer import load
    from .app import create_app  # here: FastAPI and torch load after the port is bound

    lit = load(model, device=device)
    return create_app(lit, lit.open_index(index) if index else None, limits, access), lit


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads: a busy port fails at once, before any URL is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror} (another server there? "
                               f"choose another with --port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(model: str | Path, index: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int | None = None, limits: ServeLimits | None = None, log_level: str = "warning",
          device: str = "auto", access: Access | None = None) -> None:
    """Serve until interrupted. ``access`` defaults to ``Access.for_bind(host)`` (refused off loopback)."""
    import uvicorn

    from .http import JsonErrorH11

    limits = limits or ServeLimits()
    access = access or Access.for_bind(host)
    sock = bind(host, port)
    n = bound_threads(threads)
    return_freed_memory()
    app, lit = build_app(model, index, limits, device, access)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"littune serve: {url}{'#token=TOKEN' if access.token else ''}  (model {lit.source}, {n} threads"
          + (f", index {index}" if index else ", no index: search is off") + ")", flush=True)
    # No limit_concurrency: uvicorn's own 503 is plain text; Admission answers overload in JSON.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1, server_header=False,
                            http=JsonErrorH11)
    uvicorn.Server(config).run(sockets=[sock])
