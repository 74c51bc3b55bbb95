"""What runs at once: requests (an ASGI middleware) and decoded pixels (a budget the endpoints share).

An overloaded server should say "busy, retry" at once instead of queueing without bound or
falling over, and a slow client must not stall the others. A request goes through two stages:

1. **Body** (requests that carry one): it waits for one of ``max_active`` body slots, then its
   whole body is read, within ``body_timeout_s`` (else 408 JSON) and ``max_body_bytes`` (else 413
   JSON, chunked uploads included), *before* any compute slot is taken. A trickling upload holds
   a body slot for at most ``body_timeout_s`` and never a compute slot.
2. **Compute**: it waits for one of ``max_active`` compute slots and runs with its body in memory.

Each stage gives one client (peer address) at most ``max_per_client`` slots (``slots.py``). At
most ``max_active + max_queue`` requests are in the server at once; beyond, and after waiting
``queue_timeout_s`` for a slot, ``503 {"error", "field"}`` with ``Retry-After``. A request waiting
for a body slot has not had its body read (uvicorn pauses a connection after 64 KB), so the
queue costs little memory; at most ``max_active`` bodies are held at once.

Decoding is where memory goes (a 36-megapixel PNG of 35 KB is 144 MB once decoded), so the
bytes being decoded are counted over all requests together (``PixelBudget``): an image waits
until its bytes fit, and memory stays bounded however many arrive at once.
"""
from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from typing import Iterator

from .limits import ServeLimits, send_json
from .slots import SlotTimeout, Slots

BODY_METHODS = ("POST", "PUT", "PATCH")


class Busy(Exception):
    """The server could not take this work within ``queue_timeout_s``: answered 503 with Retry-After."""


class _BodyRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _has_body(scope) -> bool:
    headers = dict(scope["headers"])
    return scope["method"] in BODY_METHODS or b"transfer-encoding" in headers or \
        headers.get(b"content-length", b"0") not in (b"0", b"")


async def read_body(receive, limit: int, timeout_s: float) -> bytes:
    """The whole request body, or ``_BodyRefused`` (413 past ``limit`` bytes, 408 past ``timeout_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise _BodyRefused(408, f"request body not received within {timeout_s:g} s "
                                    f"({size} bytes arrived); send it faster or smaller") from None
        if message["type"] == "http.disconnect":
            raise _BodyRefused(400, "client went away before sending the whole body")
        size += len(message.get("body", b""))
        if size > limit:  # a chunked upload without a length, or one that lied about it
            raise _BodyRefused(413, f"request body larger than the limit of {limit} bytes")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that gives the body read already, then whatever the connection says next."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Admission:
    """ASGI middleware: body read first (bounded), then ``max_active`` at a time, ``max_queue`` waiting."""

    def __init__(self, app, limits: ServeLimits):
        self.app, self.limits = app, limits
        self.active = self.inflight = 0  # computing; in the server at all (counted on arrival)
        self.bodies = Slots(limits.max_active, limits.max_per_client)
        self.compute = Slots(limits.max_active, limits.max_per_client)

    @property
    def waiting(self) -> int:
        return self.inflight - self.active

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lim = self.limits
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > lim.max_body_bytes):
            return await _refuse(send, 413, f"request body larger than the limit of {lim.max_body_bytes} bytes")
        if self.inflight >= lim.max_active + lim.max_queue:
            return await self._busy(send, f"{self.active} requests running and {self.waiting} waiting")
        client = (scope.get("client") or ("?",))[0]
        self.inflight += 1
        try:
            if not _has_body(scope):
                return await self._run(scope, receive, send, client)
            async with self.bodies.hold(client, lim.queue_timeout_s):
                try:
                    body = await read_body(receive, lim.max_body_bytes, lim.body_timeout_s)
                except _BodyRefused as e:
                    return await _refuse(send, e.status, str(e))
                await self._run(scope, _replay(body, receive), send, client)
        except SlotTimeout:
            return await self._busy(send, f"waited {lim.queue_timeout_s:g} s for a free slot")
        finally:
            self.inflight -= 1

    async def _run(self, scope, receive, send, client: str) -> None:
        async with self.compute.hold(client, self.limits.queue_timeout_s):
            self.active += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.active -= 1

    async def _busy(self, send, why: str) -> None:
        await send_json(send, 503, f"server busy ({why}); retry after {self.limits.retry_after_s} s", None,
                        {"Retry-After": self.limits.retry_after_s})


async def _refuse(send, status: int, message: str) -> None:
    """408/413 (and 400 for a vanished client): the rest of the body is not read, so the connection closes."""
    await send_json(send, status, message, "image" if status == 413 else "body", {"Connection": "close"})


class TooCostly(Exception):
    """One image needs more decoding memory than the whole budget: answered 413, never decoded."""


class PixelBudget:
    """At most ``total`` bytes being decoded at once over all threads (``images.decode_bytes`` of each
    image, by its mode and bit depth); ``hold(n)`` waits (bounded) for n, refuses n above ``total``."""

    def __init__(self, total: int, timeout_s: float):
        self.total, self.timeout_s = total, timeout_s
        self.free = total
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.total:  # it could never fit: waiting would only delay the refusal
            raise TooCostly(f"decoding it takes {nbytes / 2**20:.0f} MiB, more than the server's decoding budget of "
                            f"{self.total / 2**20:.0f} MiB (its mode and size; raise --pixel-budget to accept it)")
        with self._changed:
            if not self._changed.wait_for(lambda: self.free >= nbytes, self.timeout_s):
                raise Busy(f"waited {self.timeout_s:g} s for {nbytes} bytes of decoding budget "
                           f"({self.total} in all, {self.free} free)")
            self.free -= nbytes
        try:
            yield
        finally:
            with self._changed:
                self.free += nbytes
                self._changed.notify_all()
