"""Slow and greedy clients, deterministically through ``Admission`` with a fake app and fake connections.

Before: a compute slot was taken before the body was read and nothing bounded the read, so
``max_active`` trickling uploads made every other request (``GET /api/info`` too) wait for the
queue timeout and then get 503; one client could hold every slot.
"""
from __future__ import annotations

import asyncio
import json

from littune.serve.admission import Admission
from littune.serve.limits import ServeLimits


def _limits(**kw) -> ServeLimits:
    return ServeLimits(**{"max_active": 2, "max_queue": 10, "queue_timeout_s": 5.0, "body_timeout_s": 0.5, **kw})


async def _app(scope, receive, send):
    body, more = b"", scope["method"] == "POST"
    while more:  # as FastAPI's form parser does: the whole body
        message = await receive()
        body, more = body + message["body"], message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"got %d" % len(body)})


def _scope(method: str, client: str, headers=()) -> dict:
    return {"type": "http", "method": method, "path": "/api/x", "headers": list(headers), "client": (client, 5000)}


def _trickle(chunks: int, gap_s: float, size: int = 100):
    """A receive that sends ``chunks`` pieces of ``size`` bytes, ``gap_s`` apart."""
    left = chunks

    async def receive():
        nonlocal left
        await asyncio.sleep(gap_s)
        left -= 1
        return {"type": "http.request", "body": b"x" * size, "more_body": left > 0}

    return receive


async def _call(gate, scope, receive) -> tuple[int, bytes, float]:
    got, t0 = {}, asyncio.get_running_loop().time()

    async def send(message):
        if message["type"] == "http.response.start":
            got["status"] = message["status"]
        else:
            got["body"] = message["body"]
    await gate(scope, receive, send)
    return got["status"], got["body"], asyncio.get_running_loop().time() - t0


async def _fast_receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def test_trickling_uploads_do_not_stall_others_and_get_408():
    async def go():
        gate = Admission(_app, _limits(max_per_client=2))
        slow = [asyncio.create_task(_call(gate, _scope("POST", "10.0.0.1"), _trickle(100, 0.05))) for _ in range(2)]
        await asyncio.sleep(0.05)
        info = await asyncio.wait_for(_call(gate, _scope("GET", "10.0.0.2"), _fast_receive), 0.3)
        return info, await asyncio.gather(*slow)

    (status, _, took), slow = asyncio.run(go())
    assert status == 200 and took < 0.3  # answered while both slots' worth of uploads still trickle
    for code, body, took in slow:
        assert code == 408 and "within 0.5 s" in json.loads(body)["error"], body
        assert took < 1.5


def test_a_client_holds_at_most_its_share_of_slots():
    async def go():
        gate = Admission(_app, _limits(body_timeout_s=3.0))  # max_per_client: half of 2 = 1
        greedy = [asyncio.create_task(_call(gate, _scope("POST", "10.0.0.1"), _trickle(10, 0.1))) for _ in range(3)]
        await asyncio.sleep(0.05)
        other = await asyncio.wait_for(_call(gate, _scope("POST", "10.0.0.2"), _trickle(1, 0.0)), 1.0)
        return other, gate, await asyncio.gather(*greedy)

    (status, body, took), gate, greedy = asyncio.run(go())
    assert gate.limits.max_per_client == 1
    assert status == 200 and body == b"got 100" and took < 1.0  # not behind the greedy client's uploads
    assert [g[0] for g in greedy] == [200, 200, 200]  # served one after another, all whole
    assert sorted(g[2] for g in greedy)[-1] > 2.7  # ~1 s each, in turn: never two at once


def test_chunked_body_over_the_limit_gets_413_json():
    async def go():
        gate = Admission(_app, _limits(max_upload_bytes=1000, form_overhead_bytes=0))
        return await _call(gate, _scope("POST", "10.0.0.1", [(b"transfer-encoding", b"chunked")]),
                           _trickle(30, 0.0, size=100))

    status, body, _ = asyncio.run(go())
    assert status == 413 and "limit of 1000 bytes" in json.loads(body)["error"]
