"""What runs at once: requests (an ASGI middleware) and decoded pixels (a budget the endpoints share).

An overloaded server should say "busy, retry" at once instead of queueing without bound or
falling over: at most ``max_active`` requests run, up to ``max_queue`` more wait (first come, first
served) for at most ``queue_timeout_s``, and the rest get ``503 {"error", "field"}`` with a
``Retry-After`` header. A waiting request's body is not read (uvicorn pauses a connection after
64 KB), so the queue costs little memory.

Decoding is where memory goes (a 36-megapixel PNG of 35 KB is 144 MB once decoded), so the
pixels being decoded are counted over all requests together (``PixelBudget``): an image waits
until its pixels fit, and memory stays bounded however many arrive at once.
"""
from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from typing import Iterator

from .limits import ServeLimits, send_json


class Busy(Exception):
    """The server could not take this work within ``queue_timeout_s``: answered 503 with Retry-After."""


class Admission:
    """ASGI middleware: ``max_active`` requests at a time, ``max_queue`` waiting, 503 JSON beyond."""

    def __init__(self, app, limits: ServeLimits):
        self.app, self.limits = app, limits
        self.active = self.inflight = 0  # running; running or waiting (counted on arrival, before any await)
        self._slots: asyncio.Semaphore | None = None  # made in the server's event loop
        self._loop = None

    @property
    def waiting(self) -> int:
        return self.inflight - self.active

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lim = self.limits
        if self._loop is not asyncio.get_running_loop():  # first request (or a test client's new loop)
            self._slots, self._loop = asyncio.Semaphore(lim.max_active), asyncio.get_running_loop()
        if self.inflight >= lim.max_active + lim.max_queue:
            return await self._busy(send, f"{self.active} requests running and {self.waiting} waiting")
        self.inflight += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), lim.queue_timeout_s)
            except asyncio.TimeoutError:
                return await self._busy(send, f"waited {lim.queue_timeout_s:g} s for a free slot")
            self.active += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.active -= 1
                self._slots.release()
        finally:
            self.inflight -= 1

    async def _busy(self, send, why: str) -> None:
        await send_json(send, 503, f"server busy ({why}); retry after {self.limits.retry_after_s} s", None,
                        {"Retry-After": self.limits.retry_after_s})


class PixelBudget:
    """At most ``total`` pixels decoded at once over all threads; ``hold(n)`` waits (bounded) for n."""

    def __init__(self, total: int, timeout_s: float):
        self.total, self.timeout_s = total, timeout_s
        self.free = total
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.total)  # callers check max_pixels <= total; never wait forever
        with self._changed:
            if not self._changed.wait_for(lambda: self.free >= pixels, self.timeout_s):
                raise Busy(f"waited {self.timeout_s:g} s for {pixels} pixels of decoding budget "
                           f"({self.total} in all, {self.free} free)")
            self.free -= pixels
        try:
            yield
        finally:
            with self._changed:
                self.free += pixels
                self._changed.notify_all()
