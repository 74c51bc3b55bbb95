"""``Admission`` at the ASGI level, exactly: fake connections, a Starlette ``Request`` as the app, no server.

What a client sees at each edge: the body limit exactly at the limit and one byte over (declared
and chunked, on any method that carries a body), the 408/413/400 answers (status, message, field,
``Connection: close``), the body handed to the app whole and once, the per-client share of each
stage, the body-slot wait bounded by ``queue_timeout_s``, and capacity given back after a burst.
Milliseconds each: these run for every mutant of littune/serve/admission.py (benchmarks/mutation).
"""
from __future__ import annotations

import asyncio
import json

from starlette.requests import Request

from littune.serve.admission import Admission
from littune.serve.limits import ServeLimits

LIMIT = 1024  # max_body_bytes below: 1000 for the file, 24 for the form around it
GONE = {"type": "http.disconnect"}


def _limits(**kw) -> ServeLimits:
    return ServeLimits(**{"max_upload_bytes": 1000, "form_overhead_bytes": 24, "max_active": 2, "max_queue": 3,
                          "queue_timeout_s": 2.0, "body_timeout_s": 1.0, "retry_after_s": 7, "max_per_client": 2,
                          **kw})


def _scope(method: str = "POST", headers: dict | None = None, client: str | None = "10.0.0.1") -> dict:
    return {"type": "http", "method": method, "path": "/api/x",
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": (client, 5000) if client else None}


class Conn:
    """The server's side of one connection: ``messages`` in order, then a disconnect (or nothing, ever)."""

    def __init__(self, *messages: dict, hang: bool = False, release: asyncio.Event | None = None):
        self.messages, self.hang, self.release, self.calls = list(messages), hang, release, 0

    async def receive(self) -> dict:
        self.calls += 1
        if self.messages:
            return self.messages.pop(0)
        if self.release is not None:
            await self.release.wait()
            return {"type": "http.request", "body": b"", "more_body": False}
        if self.hang:
            await asyncio.Event().wait()
        return GONE


def _chunks(*parts: bytes) -> Conn:
    return Conn(*[{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)])


class EchoApp:
    """A Starlette app's view: the body as ``Request.body()`` reads it, then the connection's next message."""

    def __init__(self, hold: asyncio.Event | None = None):
        self.bodies, self.after, self.hold = [], [], hold
        self.running = self.peak = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # a lifespan: acknowledge what the server says
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        self.running += 1
        self.peak = max(self.peak, self.running)
        body = await Request(scope, receive).body()
        self.bodies.append(body)
        if self.hold is not None:
            await self.hold.wait()
        if scope["method"] == "DELETE":  # asks what comes next, as a streaming response listens for disconnect
            self.after.append(await receive())
        self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got %d" % len(body)})


async def _call(gate, scope, conn: Conn) -> dict:
    got = {}

    async def send(message):
        if message["type"] == "http.response.start":
            got.update(status=message["status"], headers=dict(message["headers"]))
        else:
            got["body"] = message["body"]
    await gate(scope, conn.receive, send)
    return got


def _answer(scope, conn: Conn, limits: ServeLimits | None = None) -> tuple[dict, EchoApp]:
    app = EchoApp()
    return asyncio.run(_call(Admission(app, limits or _limits()), scope, conn)), app


def _refused(got: dict, status: int, error: str, field: str) -> None:
    assert got["status"] == status, got
    assert json.loads(got["body"]) == {"error": error, "field": field}
    assert got["headers"][b"connection"] == b"close"  # the rest of the body is unread: no keep-alive
    assert got["headers"][b"content-type"] == b"application/json"


TOO_LARGE = f"request body larger than the limit of {LIMIT} bytes"


def test_chunked_body_exactly_at_the_limit_reaches_the_app_whole_one_byte_more_is_413():
    parts = (b"a" * 500, b"b" * 500, b"c" * 24)
    got, app = _answer(_scope(headers={"transfer-encoding": "chunked"}), _chunks(*parts))
    assert got["status"] == 200 and app.bodies == [b"".join(parts)]

    got, app = _answer(_scope(headers={"transfer-encoding": "chunked"}), _chunks(*parts, b"d"))
    _refused(got, 413, TOO_LARGE, "image")
    assert app.bodies == []  # never called


def test_declared_length_at_the_limit_is_read_one_over_is_refused_before_reading():
    body = bytes(range(256)) * 4
    got, app = _answer(_scope(headers={"content-length": str(LIMIT)}), _chunks(body[:1000], body[1000:]))
    assert got["status"] == 200 and app.bodies == [body]
    got, app = _answer(_scope(headers={"content-length": "10"}), _chunks(b"0123456789"))
    assert got["status"] == 200 and app.bodies == [b"0123456789"]

    for declared in (str(LIMIT + 1), "10x", "-1", "", "1e3"):
        conn = Conn(hang=True)
        got, app = _answer(_scope(headers={"content-length": declared}), conn)
        _refused(got, 413, TOO_LARGE, "image")
        assert conn.calls == 0 and app.bodies == [], declared  # not one byte read, no slot taken


def test_a_body_longer_than_declared_is_cut_at_the_limit():
    got, app = _answer(_scope(headers={"content-length": "10"}), _chunks(b"x" * 1000, b"y" * 25))
    _refused(got, 413, TOO_LARGE, "image")
    assert app.bodies == []


def test_a_get_that_carries_a_body_goes_through_the_same_bounded_read():
    over = (b"x" * 1000, b"y" * 25)
    for headers in ({"transfer-encoding": "chunked"}, {"content-length": "5"}):
        got, app = _answer(_scope("GET", headers), _chunks(*over))
        _refused(got, 413, TOO_LARGE, "image")
        assert app.bodies == [], headers
    got, app = _answer(_scope("GET", {"content-length": "5"}), _chunks(b"ab", b"cde"))
    assert got["status"] == 200 and app.bodies == [b"abcde"]


def test_a_get_without_a_body_runs_on_the_connection_itself():
    got, app = _answer(_scope("GET", {"content-length": "0"}), _chunks(b""))
    assert got["status"] == 200 and got["body"] == b"got 0" and app.bodies == [b""]


def test_body_messages_may_leave_out_body_and_more_body():
    # ASGI: "body" defaults to b"" and "more_body" to False when a message leaves them out
    conn = Conn({"type": "http.request", "more_body": True},
                {"type": "http.request", "body": b"abc", "more_body": True},
                {"type": "http.request", "body": b"de"})
    got, app = _answer(_scope(), conn)
    assert got["status"] == 200 and app.bodies == [b"abcde"] and conn.calls == 3


def test_the_app_gets_the_body_once_then_hears_the_connection():
    conn = _chunks(b"12", b"345")
    got, app = _answer(_scope("DELETE", {"content-length": "5"}), conn)
    assert got["status"] == 200 and got["body"] == b"got 5"
    assert app.bodies == [b"12345"] and app.after == [GONE]  # not the body a second time


def test_a_client_that_goes_away_mid_body_is_not_served():
    got, app = _answer(_scope(), Conn({"type": "http.request", "body": b"x" * 10, "more_body": True}, GONE))
    _refused(got, 400, "client went away before sending the whole body", "body")
    assert app.bodies == []


def test_a_body_that_stops_arriving_gets_408_after_body_timeout():
    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = await _call(Admission(EchoApp(), _limits(body_timeout_s=0.1)), _scope(),
                          Conn({"type": "http.request", "body": b"x" * 50, "more_body": True}, hang=True))
        return got, loop.time() - t0

    got, took = asyncio.run(go())
    _refused(got, 408, "request body not received within 0.1 s (50 bytes arrived); send it faster or smaller",
             "body")
    assert 0.09 < took < 1.0


async def _peak(requests: list[tuple[dict, Conn]], limits: ServeLimits) -> tuple[int, list[int]]:
    """The most requests the app ran at once while all of them were in, and each one's status."""
    hold = asyncio.Event()
    app = EchoApp(hold)
    gate = Admission(app, limits)
    tasks = [asyncio.create_task(_call(gate, scope, conn)) for scope, conn in requests]
    await asyncio.sleep(0.03)
    hold.set()
    return app.peak, [t["status"] for t in await asyncio.gather(*tasks)]


def test_each_client_computes_at_most_its_share_others_are_not_held_back():
    share = _limits(max_per_client=1)
    for method, conn in (("GET", lambda: _chunks(b"")), ("POST", lambda: _chunks(b"abc"))):
        same = [(_scope(method, client="10.0.0.1"), conn()) for _ in range(2)]
        two = [(_scope(method, client=c), conn()) for c in ("10.0.0.1", "10.0.0.2")]
        assert asyncio.run(_peak(same, share)) == (1, [200, 200]), method  # one after the other
        assert asyncio.run(_peak(two, share)) == (2, [200, 200]), method  # both at once


def test_a_request_without_a_body_is_served_while_stalled_uploads_hold_every_body_slot():
    async def go():
        release = asyncio.Event()
        gate = Admission(EchoApp(), _limits())  # 2 body slots, both for one client
        uploads = [asyncio.create_task(_call(gate, _scope(), Conn(release=release))) for _ in range(2)]
        await asyncio.sleep(0.01)
        info = await asyncio.wait_for(_call(gate, _scope("GET", client="10.0.0.2"), _chunks(b"")), 0.5)
        release.set()
        return info, await asyncio.gather(*uploads)

    info, uploads = asyncio.run(go())
    assert info["status"] == 200 and [u["status"] for u in uploads] == [200, 200]


def test_waiting_for_a_body_slot_ends_in_503_after_queue_timeout():
    async def go():
        release = asyncio.Event()
        gate = Admission(EchoApp(), _limits(max_per_client=1, queue_timeout_s=0.1))
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(_call(gate, _scope(), Conn(release=release)))  # holds the client's body slot
        await asyncio.sleep(0.01)
        t0 = loop.time()
        second = asyncio.create_task(_call(gate, _scope(), _chunks(b"abc")))
        loop.call_later(0.5, release.set)
        got = await second
        took = loop.time() - t0
        return got, took, await first

    got, took, first = asyncio.run(go())
    assert got["status"] == 503 and 0.09 < took < 0.4
    assert got["headers"][b"retry-after"] == b"7"
    assert json.loads(got["body"]) == {
        "error": "server busy (waited 0.1 s for a free slot); retry after 7 s", "field": None}
    assert first["status"] == 200


def test_capacity_is_given_back_after_a_burst():
    async def burst(gate, hold):
        tasks = []
        for wave in (range(5), range(5, 7)):  # the extra two come once the first five run or wait
            tasks += [asyncio.create_task(_call(gate, _scope("GET", client=f"10.0.0.{i}"), _chunks(b"")))
                      for i in wave]
            await asyncio.sleep(0.02)
        hold.set()
        return await asyncio.gather(*tasks)

    async def go():
        hold = asyncio.Event()
        gate = Admission(EchoApp(hold), _limits())
        first = await burst(gate, hold)
        hold.clear()
        return first, await burst(gate, hold)

    for answers in asyncio.run(go()):
        assert [a["status"] for a in answers] == [200] * 5 + [503] * 2  # max_active + max_queue, the rest refused
        for a in answers[5:]:
            assert a["headers"][b"retry-after"] == b"7" and json.loads(a["body"]) == {
                "error": "server busy (2 requests running and 3 waiting); retry after 7 s", "field": None}


def test_other_scopes_pass_straight_through():
    sent = []

    async def send(message):
        sent.append(message)
    gate = Admission(EchoApp(), _limits())
    asyncio.run(gate({"type": "lifespan"}, Conn({"type": "lifespan.startup"}).receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}] and gate.inflight == 0
