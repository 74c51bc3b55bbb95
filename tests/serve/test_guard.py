"""Who may ask: the Host allow-list (DNS rebinding), the bearer token, /docs only when asked for."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from littune.cli import main
from littune.serve import Access, create_app
from littune.serve.guard import host_name, is_loopback

TOKEN = "s3cret-token-for-tests"


def _client(lit, index, access: Access, host: str = "localhost") -> TestClient:
    return TestClient(create_app(lit, index, access=access), base_url=f"http://{host}")


@pytest.mark.parametrize("host, ok", [
    ("localhost", True), ("localhost:8000", True), ("127.0.0.1:8000", True), ("[::1]:8000", True),
    ("LOCALHOST", True), ("evil.example", False), ("evil.example:8000", False), ("localhost.evil.example", False),
    ("127.0.0.1.nip.io", False), ("", False),
])
def test_only_allowed_host_names_are_answered(serve_lit, serve_index, host, ok):
    with _client(serve_lit, serve_index, Access()) as c:
        for path in ("/api/info", "/", "/thumb/0", "/api/search?q=red"):
            r = c.get(path, headers={"host": host})
            if ok:
                assert r.status_code == 200, (host, path, r.text)
            else:
                assert r.status_code == 400 and r.json()["field"] == "host", (host, path, r.text)
                assert "--allow-host" in r.json()["error"]


def test_allow_host_adds_names_and_the_bind_address_is_allowed(serve_lit):
    access = Access.for_bind("10.1.2.3", ("photos.lan",), token=TOKEN)
    assert access.hosts == ("10.1.2.3", "localhost", "127.0.0.1", "::1", "photos.lan")
    with _client(serve_lit, None, access) as c:
        auth = {"authorization": f"Bearer {TOKEN}"}
        for host in ("photos.lan:8000", "10.1.2.3:8000", "localhost"):
            assert c.get("/api/info", headers={"host": host, **auth}).status_code == 200, host
        assert c.get("/api/info", headers={"host": "other.lan", **auth}).status_code == 400


def test_token_is_required_for_data_but_not_for_the_page(serve_lit, serve_index, tiny_lit_run):
    image = tiny_lit_run["images"][0]
    with _client(serve_lit, serve_index, Access(token=TOKEN)) as c:
        for method, path, kw in (("GET", "/api/info", {}), ("GET", "/api/search?q=red", {}), ("GET", "/thumb/0", {}),
                                 ("POST", "/api/classify", {"files": {"image": ("a.jpg", image.read_bytes())},
                                                            "data": {"labels": "red,blue"}})):
            for header in (None, "Bearer wrong-token-123", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer"):
                r = c.request(method, path, headers={"authorization": header} if header else {}, **kw)
                assert r.status_code == 401 and r.json()["field"] == "authorization", (path, header, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
            for scheme in ("Bearer", "bearer", "BEARER"):  # the scheme is case-insensitive (RFC 7235)
                r = c.request(method, path, headers={"authorization": f"{scheme} {TOKEN}"}, **kw)
                assert r.status_code == 200, (path, scheme, r.text)
        for path in ("/", "/static/app.js", "/static/style.css"):  # no data in them; the page asks for the token
            assert c.get(path).status_code == 200, path
        assert c.get("/docs").status_code == 401  # not served, and not even said so without the token


def test_docs_and_schema_only_with_docs(serve_lit):
    with _client(serve_lit, None, Access()) as c:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert c.get(path).status_code == 404, path
    with _client(serve_lit, None, Access(docs=True, token=TOKEN)) as c:
        assert c.get("/docs").status_code == 200
        schema = c.get("/openapi.json").json()
        assert {"/api/classify", "/api/search", "/api/info"} <= set(schema["paths"])
        assert c.get("/api/info").status_code == 401  # docs open, data still behind the token


def test_binding_beyond_loopback_needs_a_token(monkeypatch, capsys):
    with pytest.raises(ValueError, match="--host 0.0.0.0 listens beyond this machine: give --token"):
        Access.for_bind("0.0.0.0")
    with pytest.raises(ValueError, match="at least 8"):
        Access.for_bind("127.0.0.1", token="short")
    assert Access.for_bind("0.0.0.0", token=TOKEN).token == TOKEN
    assert Access.for_bind("127.0.0.1").token is None and Access.for_bind("::1").hosts[0] == "::1"
    # The CLI refuses before loading anything (the model path does not even exist), exit code 2.
    monkeypatch.delenv("LITTUNE_TOKEN", raising=False)
    assert main(["serve", "--model", "no/such/run", "--host", "0.0.0.0"]) == 2
    assert "give --token" in capsys.readouterr().err


@pytest.mark.parametrize("header, name", [
    ("localhost:8000", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"), ("Example.COM", "example.com"),
    ("127.0.0.1", "127.0.0.1"), ("::1", "::1"),
])
def test_host_name(header, name):
    assert host_name(header) == name


def test_is_loopback():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.example"))
