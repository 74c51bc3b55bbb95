"""A real `littune serve` on the loopback against slow, malformed and greedy clients, each bounded in time.

Before: trickling uploads held the compute slots (``GET /api/info`` waited 25 s), a malformed request
got uvicorn's plain text, and a busy port printed the URL before failing.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.serve.live import REPO, free_port, start_server

pytestmark = pytest.mark.xdist_group("serve_slow")


def _trickler(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection that announces a 100 kB upload and sends only its first bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
              b"Content-Length: 100000\r\n\r\n--b\r\n")
    return s


def _answer(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(tiny_lit_run):
    with start_server(tiny_lit_run["run"], "--max-active", "2", "--body-timeout", "2") as s:
        yield s


def test_trickling_uploads_get_408_and_do_not_stall_the_server(server):
    import httpx

    slow = [_trickler(server["port"]) for _ in range(4)]  # twice --max-active
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        r = httpx.get(f"{server['url']}/api/info", timeout=5)
        assert r.status_code == 200 and time.monotonic() - t0 < 2  # before: waited for the queue timeout
        for s in slow[:2]:
            status, body = _answer(s)
            assert status == 408 and "within 2 s" in body["error"], body
    finally:
        for s in slow:
            s.close()


def test_another_client_is_served_while_one_trickles(server):
    import httpx

    slow = [_trickler(server["port"], "127.0.0.2") for _ in range(3)]  # one client address, 3 uploads
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=5) as other:
            r = other.post(f"{server['url']}/api/classify", files={"image": ("a.png", b"not an image")},
                           data={"labels": "a,b"})
        assert r.status_code == 400 and "image" in r.json()["error"]  # read and answered at once
        assert time.monotonic() - t0 < 1.5
    finally:
        for s in slow:
            s.close()


def test_malformed_request_gets_json(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, body = _answer(s)
    assert status == 400 and body["field"] == "request" and "malformed HTTP request" in body["error"]


def test_busy_port_fails_before_printing_a_url(tiny_lit_run):
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "littune", "serve", "--model", str(tiny_lit_run["run"]),
                               "--port", str(port)], capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "http://" not in done.stdout, done.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2 and time.monotonic() - t0 < 60
