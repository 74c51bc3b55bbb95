"""The server's two guarding middlewares over HTTP around a one-line app (no model: milliseconds each).

The body limit is enforced while the body is read, before a compute slot (serve/admission.py): its
exact boundaries are tested over HTTP in test_limit_boundaries.py and test_slow_clients.py. ``Guard``: the Host allow-list and the bearer token, which paths
stay open. ``ServeLimits`` refuses settings that could never work, naming the key.
These run in the mutation benchmark for littune/serve/{limits,guard}.py (benchmarks/mutation).
"""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from littune.serve.guard import Access, Guard, host_name, is_loopback
from littune.serve.limits import ServeLimits, send_json

LIMIT = 100
TOKEN = "s3cret-token-for-tests"


async def _echo(scope, receive, send):
    """Reads the whole body and answers its length (a lifespan is acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send_json(send, 200, str(size), None)


def _client(app) -> TestClient:
    async def served(scope, receive, send):  # the lifespan of TestClient's `with` is answered here
        return await (_echo if scope["type"] == "lifespan" else app)(scope, receive, send)

    return TestClient(served, base_url="http://localhost", raise_server_exceptions=False)


@pytest.mark.parametrize("header, name", [
    ("localhost", "localhost"), ("localhost:8000", "localhost"), ("LocalHost:80", "localhost"),
    ("[::1]:8000", "::1"), ("[::1]", "::1"), ("[::1", "[::1"), ("::1", "::1"), ("127.0.0.1:1", "127.0.0.1"),
    (" example.com ", "example.com"), ("", ""), ("[::1]x]:80", "::1"),
])
def test_host_name_drops_the_port_only(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize("host, loop", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("[::1]", True), (" 127.0.0.1 ", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False),
    ("localhost.example.com", False),
])
def test_loopback_names(host, loop):
    assert is_loopback(host) is loop


def test_access_for_a_bind_address():
    assert Access.for_bind("127.0.0.1") == Access(hosts=("127.0.0.1", "localhost", "::1"), token=None, docs=False)
    a = Access.for_bind("[::1]", ("Photos.LAN", "localhost"), docs=True)
    assert a.hosts == ("::1", "localhost", "127.0.0.1", "photos.lan") and a.docs and a.token is None
    with pytest.raises(ValueError) as e:
        Access.for_bind("10.0.0.1")
    assert str(e.value) == ("--host 10.0.0.1 listens beyond this machine: give --token TOKEN (or set "
                            "LITTUNE_TOKEN) so only those who know it can use the server")
    with pytest.raises(ValueError) as e:
        Access.for_bind("10.0.0.1", token="1234567")
    assert str(e.value) == ("--token: at least 8 characters (e.g. `python -c 'import secrets; "
                            "print(secrets.token_urlsafe())'`)")
    assert Access.for_bind("127.0.0.1", ("Xray.LAN", "[fe80::1]")).hosts[-2:] == ("xray.lan", "fe80::1")
    assert Access.for_bind("10.0.0.1", token="12345678").token == "12345678"  # exactly 8 is enough
    with pytest.raises(ValueError, match="at least 8"):
        Access.for_bind("127.0.0.1", token="")


def _guarded(access: Access) -> TestClient:
    async def app(scope, receive, send):
        await send_json(send, 200, scope["path"], None)

    return _client(Guard(app, access))


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:9", "photos.lan:80"])
def test_allowed_hosts_reach_the_app(host):
    with _guarded(Access(hosts=("localhost", "127.0.0.1", "::1", "photos.lan"))) as c:
        r = c.get("/api/info", headers={"host": host})
        assert r.status_code == 200 and r.json()["error"] == "/api/info"


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example:80", "", "photos.lan.evil"])
def test_other_hosts_get_400_naming_the_allowed_ones(host):
    with _guarded(Access(hosts=("localhost", "photos.lan"))) as c:
        r = c.get("/", headers={"host": host})
        assert r.status_code == 400
        assert r.json() == {"error": f"Host {host_name(host)!r} is not served here (allowed: localhost, photos.lan; "
                                     "add names with --allow-host)", "field": "host"}


@pytest.mark.parametrize("path, docs, open_", [
    ("/", False, True), ("/favicon.ico", False, True), ("/static/app.js", False, True), ("/static/", False, True),
    ("/api/info", False, False), ("/thumb/3", False, False), ("/staticx", False, False), ("/index.html", False, False),
    ("/docs", False, False), ("/openapi.json", False, False), ("/docs", True, True), ("/openapi.json", True, True),
    ("/docs/oauth2-redirect", True, True), ("/api/info", True, False),
])
def test_the_token_is_asked_on_data_paths_only(path, docs, open_):
    with _guarded(Access(token=TOKEN, docs=docs)) as c:
        r = c.get(path)
        if open_:
            assert r.status_code == 200, path
        else:
            assert r.status_code == 401 and r.json()["field"] == "authorization", path
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == ("this server needs a token: send `Authorization: Bearer TOKEN` "
                                         "(the page: open http://HOST:PORT/#token=TOKEN)")
        for right in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}"):  # the scheme: any case (RFC 7235)
            assert c.get(path, headers={"authorization": right}).status_code == 200, right
        for wrong in (TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}", "Bearer ", f"Bearer {TOKEN[:-1]}"):
            assert c.get(path, headers={"authorization": wrong}).status_code == (200 if open_ else 401), wrong


def test_the_guard_hands_the_request_on_whole():
    with _client(Guard(_echo, Access(token=TOKEN))) as c:  # the body reaches the app (and the answer comes back)
        r = c.post("/api/x", content=b"y" * 77, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["error"] == "77"
        assert c.post("/", content=b"y" * 5).json()["error"] == "5"  # an open path, no token
    got = []

    async def app(scope, receive, send):
        got.append((scope, receive, send))

    async def receive():
        return {}

    async def send(message):
        pass

    for kind in ("websocket", "lifespan"):  # not HTTP: passed on untouched, whatever its host
        scope = {"type": kind, "path": "/api/x", "headers": [(b"host", b"evil.example")]}
        asyncio.run(Guard(app, Access(token=TOKEN))(scope, receive, send))
        assert got.pop() == (scope, receive, send)


def test_a_request_without_a_host_header_is_refused():
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(Guard(_echo, Access())(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"].startswith("Host '' is not served here")


def test_without_a_token_everything_on_an_allowed_host_is_open():
    with _guarded(Access()) as c:
        assert c.get("/api/info").status_code == 200 and c.get("/docs").status_code == 200


@pytest.mark.parametrize("key", ["max_upload_bytes", "max_pixels", "max_labels", "max_k", "max_active",
                                 "pixel_budget", "decode_side", "thumb_px"])
def test_limits_below_one_are_refused_by_name(key):
    extra = {"pixel_budget": 1} if key == "max_pixels" else {"max_pixels": 1} if key == "pixel_budget" else {}
    ServeLimits(**{key: 1}, **extra)  # one is allowed
    with pytest.raises(ValueError, match=f"^serve limits: {key} must be >= 1, got 0$"):
        ServeLimits(**{key: 0}, **extra)


def test_queue_and_pixel_budget_settings():
    assert ServeLimits(max_queue=0).max_queue == 0
    assert ServeLimits(queue_timeout_s=0.25).queue_timeout_s == 0.25
    for bad in ({"max_queue": -1}, {"queue_timeout_s": 0.0}, {"queue_timeout_s": -1.0}):
        with pytest.raises(ValueError, match="^serve limits: max_queue must be >= 0, queue_timeout_s and body_timeout_s > 0$"):
            ServeLimits(**bad)
    assert ServeLimits(max_pixels=500, pixel_budget=500).pixel_budget == 500
    with pytest.raises(ValueError, match=r"pixel_budget \(499\) is below max_pixels \(500\)"):
        ServeLimits(max_pixels=500, pixel_budget=499)


def test_body_timeout_and_per_client_limits_are_checked():
    assert ServeLimits(body_timeout_s=0.25).body_timeout_s == 0.25
    timeouts = "^serve limits: max_queue must be >= 0, queue_timeout_s and body_timeout_s > 0$"
    for bad in ({"body_timeout_s": 0.0}, {"body_timeout_s": -1.0}):
        with pytest.raises(ValueError, match=timeouts):
            ServeLimits(**bad)
    per_client = r"^serve limits: max_per_client must be >= 0 \(0: half of max_active\), got -1$"
    with pytest.raises(ValueError, match=per_client):
        ServeLimits(max_per_client=-1)
    assert ServeLimits(max_per_client=3).max_per_client == 3


@pytest.mark.parametrize("max_active,per_client", [(1, 1), (2, 1), (5, 2), (8, 4), (9, 4)])
def test_max_per_client_defaults_to_half_of_max_active_rounded_down_at_least_one(max_active, per_client):
    got = ServeLimits(max_active=max_active).max_per_client
    assert got == per_client and isinstance(got, int)


def test_send_json_sends_the_exact_headers_and_body():
    sent = []

    async def send(message):
        sent.append(message)

    def headers(message):  # as HTTP reads them: names and the media type are case-insensitive (RFC 9110)
        return [(k.lower(), v.lower() if k.lower() == b"content-type" else v) for k, v in message["headers"]]

    asyncio.run(send_json(send, 503, "server busy: try again", "image", {"Retry-After": 2}))
    body = b'{"error": "server busy: try again", "field": "image"}'
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503 and sent[1] == {"type": "http.response.body", "body": body}
    assert headers(sent[0]) == [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"2")]
    sent.clear()
    asyncio.run(send_json(send, 413, "too large", None))
    assert headers(sent[0]) == [(b"content-type", b"application/json"), (b"content-length", b"37")]
    assert sent[1]["body"] == b'{"error": "too large", "field": null}'
