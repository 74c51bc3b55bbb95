"""Ten 36-megapixel PNGs at once (35 KB each on the wire): the server's memory stays within its stated bound.

Before: each upload was decoded in full at the same time (10 x 144 MB) and the freed heap stayed
resident (1.6 -> 3.6 GB, then 3.2 GB). Now the pixel budget lets one such image decode at a time,
it is reduced right after decoding, and freed buffers go back to the system.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from littune.serve import ServeLimits
from tests.serve.live import REPO, start_server

pytestmark = pytest.mark.xdist_group("serve_memory")  # measures one process's memory: keep it alone
MIB = 2 ** 20


def memory_bound(limits: ServeLimits) -> int:
    """The README's bound on what requests add to a server's resident memory (bytes).

    Pixels being decoded (the budget) at up to 9 bytes each (a palette with transparency; RGB: 4),
    one upload held by every running request, 64 KiB of unread body per waiting one (uvicorn's
    high-water mark), and 64 MiB for everything else (threads, buffers).
    """
    return limits.decode_budget_bytes + limits.max_active * limits.max_body_bytes + limits.max_queue * 64 * 1024 \
        + 64 * MIB


def big_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000), (40, 160, 90)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _watch(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)


def measure_in_child(module: str, run_dir, timeout: float) -> dict:
    """``module.measure(run_dir)`` in a child process, its JSON result back: the server's memory is
    measured, and the uploads and the watcher thread stay out of the test runner's worker process."""
    code = f"import json; from {module} import measure; print(json.dumps(measure({str(run_dir)!r})))"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(run_dir: str) -> dict:
    """Start a server on the run, send ten 36-MP PNGs at once, and report its RSS (bytes) and answers."""
    import httpx
    import psutil

    png = big_png()
    assert len(png) < 200_000  # tiny on the wire, 36 MP (144 MB) decoded
    with start_server(run_dir) as server:
        rss = psutil.Process(server["proc"].pid).memory_info().rss
        url = server["url"]
        with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=10)) as client:
            # warm: one small request so lazy imports and the label cache are not counted
            small = io.BytesIO()
            Image.new("RGB", (64, 64)).save(small, format="PNG")
            client.post(f"{url}/api/classify", files={"image": ("s.png", small.getvalue())},
                        data={"labels": "red,blue"}).raise_for_status()
            base = psutil.Process(server["proc"].pid).memory_info().rss
            stop, peak = threading.Event(), [base]
            watcher = threading.Thread(target=_watch, args=(server["proc"].pid, stop, peak))
            watcher.start()
            barrier = threading.Barrier(10)

            def one(i: int):
                barrier.wait(timeout=60)
                r = client.post(f"{url}/api/classify", files={"image": (f"big{i}.png", png, "image/png")},
                                data={"labels": "green field,red car"})
                return r.status_code, r.text

            with ThreadPoolExecutor(10) as pool:
                answers = list(pool.map(one, range(10)))
            stop.set()
            watcher.join()
            time.sleep(0.5)
            after = psutil.Process(server["proc"].pid).memory_info().rss
    return {"rss": rss, "base": base, "peak": peak[0], "after": after, "answers": answers}


def test_ten_big_pngs_at_once_stay_within_the_memory_bound(tiny_lit_run):
    # The client runs in a process of its own: it is the server's memory that is measured, and ten
    # 36-MP uploads with a watcher thread are kept away from the test runner's worker process.
    m = measure_in_child("tests.faults.test_serve_memory", tiny_lit_run["run"], timeout=900)
    for status, text in m["answers"]:
        assert status == 200, text
        assert json.loads(text)["label"] in ("green field", "red car")
    limits = ServeLimits()
    base = m["base"]
    grew, kept = (m["peak"] - base) / MIB, (m["after"] - base) / MIB
    print(f"server RSS: start {m['rss'] / MIB:.0f} MiB, warm {base / MIB:.0f}, peak +{grew:.0f}, after +{kept:.0f} "
          f"(bound +{memory_bound(limits) / MIB:.0f})")
    assert m["peak"] - base < memory_bound(limits), f"peak grew by {grew:.0f} MiB"
    assert m["after"] - base < 100 * MIB, f"kept {kept:.0f} MiB after the burst"
