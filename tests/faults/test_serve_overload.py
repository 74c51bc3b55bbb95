"""100 requests at once against a server that runs 2 and queues 8: every answer is a correct 200 or a
503 in JSON with Retry-After (before: uvicorn's plain-text "Service Unavailable" beyond 64 connections),
and the server answers normally afterwards. Also: the token from LITTUNE_TOKEN guards a real server.
"""
from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.serve.live import start_server

pytestmark = pytest.mark.xdist_group("serve_overload")
LABELS = "red above green,blue above red,black above white"


@pytest.fixture(scope="module")
def upload() -> bytes:
    """A 2-megapixel noisy PNG: decoding it takes long enough that 100 requests overlap."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def test_overload_gets_503_json_with_retry_after_never_plain_text(tiny_lit_run, upload):
    import httpx

    with start_server(tiny_lit_run["run"], "--max-active", "2", "--max-queue", "8") as server:
        url, n = server["url"], 100
        barrier = threading.Barrier(n)
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=n)) as client:
            def one(i: int) -> httpx.Response:
                barrier.wait(timeout=60)
                return client.post(f"{url}/api/classify", files={"image": (f"u{i}.png", upload, "image/png")},
                                   data={"labels": LABELS})

            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(one, range(n)))
            after = client.post(f"{url}/api/classify", files={"image": ("u.png", upload, "image/png")},
                                data={"labels": LABELS})
    statuses = sorted(r.status_code for r in answers)
    ok = [r for r in answers if r.status_code == 200]
    busy = [r for r in answers if r.status_code == 503]
    print(f"{len(ok)} answered, {len(busy)} busy of {n}")
    assert len(ok) + len(busy) == n, statuses  # nothing else: no 500, no plain-text 503
    assert len(ok) >= 10 and busy, statuses  # 2 running + 8 queued at least; the rest told to retry
    labels = {r.json()["label"] for r in ok}
    assert len(labels) == 1 and labels <= set(LABELS.split(","))  # one image, one answer
    for r in busy:
        assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "2", r.headers
        body = r.json()
        assert set(body) == {"error", "field"} and "busy" in body["error"], body
    assert after.status_code == 200 and after.json()["label"] in labels


def test_token_from_the_environment_guards_a_real_server(tiny_lit_run):
    """LITTUNE_TOKEN, --allow-host and --docs through the command line."""
    import httpx

    token = "env-token-1234567"
    with start_server(tiny_lit_run["run"], "--allow-host", "photos.lan", "--docs", env={"LITTUNE_TOKEN": token},
                      ready_headers={"authorization": f"Bearer {token}"}) as server:
        url = server["url"]
        assert httpx.get(f"{url}/api/info").status_code == 401
        assert httpx.get(f"{url}/api/info", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page itself (it reads #token=... and sends it)
        r = httpx.get(f"{url}/api/info", headers={"host": "rebound.example", "authorization": f"Bearer {token}"})
        assert r.status_code == 400 and r.json()["field"] == "host"  # the token does not lift the Host check
        auth = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/info", headers={"host": "photos.lan:8000", **auth}).status_code == 200
        assert "/api/classify" in httpx.get(f"{url}/openapi.json").json()["paths"]  # --docs: schema and page
