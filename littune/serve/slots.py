"""Slots shared fairly between clients: ``total`` at once, at most ``per_client`` to one peer address.

Without a per-client cap one client that opens ``max_active`` slow uploads holds every slot and
everyone else waits; with it, a client's surplus waits in the queue while others are served.
The client is the peer's address (``scope["client"][0]``): behind a reverse proxy every request
comes from the proxy, so raise ``--max-per-client`` to ``--max-active`` there.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager
from typing import AsyncIterator


class SlotTimeout(Exception):
    """No slot came free within the timeout."""


class Slots:
    """``async with slots.hold(client, timeout)``: wait (bounded) for a slot this client may take."""

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, min(per_client, total)
        self.used = 0
        self.by_client: Counter[str] = Counter()
        self._changed: asyncio.Condition | None = None
        self._loop = None

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use (or a test client's new loop): bind to this loop
            self._changed, self._loop = asyncio.Condition(), loop
            self.used, self.by_client = 0, Counter()
        return self._changed

    def _free_for(self, client: str) -> bool:
        return self.used < self.total and self.by_client[client] < self.per_client

    @asynccontextmanager
    async def hold(self, client: str, timeout: float) -> AsyncIterator[None]:
        changed = self._condition()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: self._free_for(client)), timeout)
            except asyncio.TimeoutError:
                raise SlotTimeout() from None
            self.used += 1
            self.by_client[client] += 1
        try:
            yield
        finally:
            async with changed:
                self.used -= 1
                self.by_client[client] -= 1
                if not self.by_client[client]:
                    del self.by_client[client]
                changed.notify_all()
