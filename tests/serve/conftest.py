"""Fixtures for the web app: an index over the tiny images, an in-process client, a real server."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import littune
from littune.infer import IndexOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def serve_lit(tiny_lit_run):
    return littune.load(tiny_lit_run["run"])


@pytest.fixture(scope="session")
def serve_index(serve_lit, tiny_lit_run, tmp_path_factory):
    photos = tmp_path_factory.mktemp("serve_photos")
    for p in tiny_lit_run["images"]:
        shutil.copy(p, photos / p.name)
    return serve_lit.build_index(photos, tmp_path_factory.mktemp("serve_idx") / "photos.index",
                                 IndexOptions(progress=False, num_workers=0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tiny_lit_run, serve_index):
    """`littune serve` in its own process on a loopback port: {"url", "proc"}."""
    import httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "littune", "serve", "--model", str(tiny_lit_run["run"]),
                             "--index", str(serve_index.folder), "--port", str(port), "--threads", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"littune serve ended: {proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "littune serve did not answer within 120 s"
        try:
            if httpx.get(f"{url}/api/info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield {"url": url, "proc": proc, "port": port}
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait()
