"""HTTP edges in-process: HEAD where GET works, chunked oversize uploads get 413, /docs declares the token,
and `littune serve --help` says how to run behind a reverse proxy."""
from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from littune.serve import ServeLimits, create_app
from littune.serve.guard import Access

TOKEN = "edge-token-123"


@pytest.fixture(scope="module")
def client(serve_lit, serve_index):
    limits = ServeLimits(max_upload_bytes=50_000, form_overhead_bytes=1_000)
    with TestClient(create_app(serve_lit, serve_index, limits), base_url="http://localhost",
                    raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/api/info", "/static/app.js", "/thumb/0", "/api/search?q=red"])
def test_head_answers_what_get_does_without_a_body(client, path):
    get, head = client.get(path), client.head(path)
    assert get.status_code == 200 and head.status_code == 200, (path, head.status_code)  # before: 405
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_chunked_upload_over_the_limit_gets_413_json(client):
    def chunks():  # no Content-Length: the size is known only while reading
        for _ in range(100):
            yield b"x" * 1000

    r = client.post("/api/classify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text  # before: 400
    assert r.json()["field"] == "image" and "limit of 51000 bytes" in r.json()["error"]


def test_docs_declare_the_bearer_token(serve_lit):
    app = create_app(serve_lit, None, access=Access(docs=True, token=TOKEN))
    with TestClient(app, base_url="http://localhost") as c:
        schema = c.get("/openapi.json").json()
        info = c.get("/api/info", headers={"authorization": f"Bearer {TOKEN}"})
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the server's --token"}
    assert schema["security"] == [{"bearer": []}] and info.status_code == 200


def test_serve_help_says_how_to_run_behind_a_reverse_proxy():
    out = subprocess.run([sys.executable, "-m", "littune", "serve", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "reverse proxy" in out and "TLS" in out and "--allow-host NAME" in out and "--max-per-client" in out
