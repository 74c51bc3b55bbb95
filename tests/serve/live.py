"""Start a real `littune serve` process on a free loopback port (the live and fault tests share it)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_server(model, *args: str, env: dict | None = None, ready_headers: dict | None = None):
    """Yields {"url", "proc", "port"} once /api/info answers; ``args`` go to `littune serve`."""
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "littune", "serve", "--model", str(model), "--port", str(port),
                             "--threads", "1", *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # not the test worker's stdin (xdist's channel)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"littune serve ended: {proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "littune serve did not answer within 120 s"
            try:
                if httpx.get(f"{url}/api/info", headers=ready_headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield {"url": url, "proc": proc, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
