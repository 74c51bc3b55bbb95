"""The mixed load of `bench_serve.py --mixed`: normal, slow and large clients at once against one server.

For --duration seconds, at the same time:
  normal  --normal clients, each uploading photos one after another (POST /api/classify) and asking
          GET /api/info between uploads: their p50/p99 latency is what a fair server keeps low;
  slow    --slow clients, each announcing a 1 MB upload and trickling it at 2 KB/s from its own
          loopback address (127.0.0.2...): they must get 408 JSON after --body-timeout, not stall others;
  large   --large clients, each uploading a 16-bit PNG just under --max-pixels (a few hundred KB on
          the wire, the most decoding memory one image may take) again and again.
It reports the answers by kind and status, the p50/p99 latency of each kind, and the server's peak
resident memory (sampled every 10 ms) against the bound of docs/limits.md.
"""
from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter

import numpy as np
from PIL import Image

MIB = 2 ** 20


def big_16bit_png(pixels: int) -> bytes:
    """An elongated 16-bit PNG of about ``pixels`` pixels: small on the wire, costly to decode."""
    w = 1000
    h = max(1, pixels // w - 1)
    block = ((np.arange(64)[:, None] * 61 + np.arange(w)[None, :] * 37) % 65536).astype(np.uint16)  # (64, W)
    grid = np.tile(block, (h // 64 + 1, 1))[:h]  # (H, W) uint16: 2 bytes a pixel, no wider copy
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return buf.getvalue()


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def _trickle(port: int, source: str, stop: threading.Event, out: list) -> None:
    """One slow client: a 1 MB upload at 2 KB/s, again after each answer, until ``stop``."""
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(source, 0)) as s:
                s.sendall(b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
                          b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
                s.settimeout(0.5)
                answer = b""
                while not stop.is_set() and not answer:
                    try:
                        s.sendall(b"x" * 1024)
                        answer = s.recv(4096)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
        except OSError as e:
            status = f"error {type(e).__name__}"
        out.append(("slow", status, 1000 * (time.perf_counter() - t0)))


def run_mixed(url: str, port: int, pid: int, photos: list[tuple[str, bytes]], labels: str, large: bytes,
              n_normal: int, n_slow: int, n_large: int, duration: float) -> dict:
    import httpx
    import psutil

    stop, answers, peak = threading.Event(), [], [psutil.Process(pid).memory_info().rss]

    def watch():
        proc = psutil.Process(pid)
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    def normal(i: int):
        with httpx.Client(timeout=120) as c:
            k = i
            while not stop.is_set():
                name, data = photos[k % len(photos)]
                k += 1
                t0 = time.perf_counter()
                r = c.post(f"{url}/api/classify", files={"image": (name, data)}, data={"labels": labels})
                answers.append(("normal", str(r.status_code), 1000 * (time.perf_counter() - t0)))
                t0 = time.perf_counter()
                r = c.get(f"{url}/api/info")
                answers.append(("info", str(r.status_code), 1000 * (time.perf_counter() - t0)))

    def heavy():
        with httpx.Client(timeout=300) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.post(f"{url}/api/classify", files={"image": ("big16.png", large)}, data={"labels": labels})
                answers.append(("large", str(r.status_code), 1000 * (time.perf_counter() - t0)))

    threads = [threading.Thread(target=watch)]
    threads += [threading.Thread(target=normal, args=(i,)) for i in range(n_normal)]
    threads += [threading.Thread(target=heavy) for _ in range(n_large)]
    threads += [threading.Thread(target=_trickle, args=(port, f"127.0.0.{2 + i}", stop, answers))
                for i in range(n_slow)]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    kinds = {}
    for kind in ("normal", "info", "large", "slow"):
        ms = [m for k, s, m in answers if k == kind and s == "200"]
        kinds[kind] = {"answers": dict(Counter(s for k, s, _ in answers if k == kind)),
                       "p50_ms": _pct(ms, 0.5), "p99_ms": _pct(ms, 0.99)}
    slow = [m for k, _, m in answers if k == "slow"]  # the time to the 408, not a success
    kinds["slow"]["p50_ms"], kinds["slow"]["p99_ms"] = _pct(slow, 0.5), _pct(slow, 0.99)
    return {"kinds": kinds, "peak_rss_mib": round(peak[0] / MIB)}
