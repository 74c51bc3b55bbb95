"""The server's memory bound holds for every image mode and bit depth: 16-bit, float, RGBA, palette with
transparency, grey with alpha and an elongated 16-bit image, each measured on a live server.

Before: the decoding budget counted pixels, not bytes, and 16-bit and float images went through
float64 copies of the whole image (a 126 KB 16-bit PNG of 1023x39000 added 1.37 GiB against a bound
of about 564 MiB). Now each image is charged ``images.decode_bytes`` (by mode), the high-depth
conversion works in row blocks, and an image above the whole budget gets 413 without being decoded.
"""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from littune.serve import ServeLimits
from tests.faults.test_serve_memory import MIB, _watch, measure_in_child, memory_bound
from tests.serve.live import start_server

pytestmark = pytest.mark.xdist_group("serve_memory")  # measures one process's memory: keep it alone
LIMITS = dict(max_pixels=6_000_000, pixel_budget=6_000_000, max_active=1, max_queue=4,
              max_upload_bytes=30 * MIB)
FLAGS = ["--max-pixels", "6000000", "--pixel-budget", "6000000", "--max-active", "1", "--max-queue", "4",
         "--max-upload-mb", "30"]


def _ramp(h: int, w: int, top: float) -> np.ndarray:
    """A smooth (H, W) picture: small on the wire, every pixel different."""
    y, x = np.mgrid[0:h, 0:w]
    return (x * 0.37 + y * 0.61) % top


def _save(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def uploads() -> dict[str, bytes]:
    rgb = np.stack([_ramp(2000, 3000, 256)] * 3, -1).astype(np.uint8)
    palette = Image.fromarray(rgb).quantize(64)
    palette.info["transparency"] = 0
    return {
        "rgb": _save(Image.fromarray(rgb)),
        "rgba": _save(Image.fromarray(np.dstack([rgb[:1500], rgb[:1500, :, :1]]), "RGBA")),
        "palette+transparency": _save(palette, transparency=0),
        "grey+alpha": _save(Image.fromarray(rgb[:1500, :, :2].copy(), "LA")),
        "16-bit": _save(Image.fromarray(_ramp(2000, 3000, 65536).astype(np.uint16))),
        "float": _save(Image.fromarray(_ramp(1000, 2000, 1.0).astype(np.float32)), "TIFF"),
        "16-bit elongated": _save(Image.fromarray(_ramp(150, 40000, 65536).astype(np.uint16))),
    }


def measure(run_dir: str) -> dict:
    """Each upload in turn on a fresh server; the peak RSS above the warm server's, per mode."""
    import httpx
    import psutil

    out = {}
    with start_server(run_dir, *FLAGS) as server:
        proc, url = psutil.Process(server["proc"].pid), server["url"]
        with httpx.Client(timeout=300) as client:
            small = _save(Image.new("RGB", (64, 64)))
            client.post(f"{url}/api/classify", files={"image": ("s.png", small)}, data={"labels": "a,b"})
            base = proc.memory_info().rss
            for mode, data in uploads().items():
                stop, peak = threading.Event(), [proc.memory_info().rss]
                watcher = threading.Thread(target=_watch, args=(proc.pid, stop, peak))
                watcher.start()
                r = client.post(f"{url}/api/classify", files={"image": (f"{mode}.img", data)}, data={"labels": "a,b"})
                stop.set()
                watcher.join()
                out[mode] = {"status": r.status_code, "text": r.text[:300], "grew": peak[0] - base,
                             "bytes": len(data)}
    return out


def test_memory_bound_holds_for_every_mode(tiny_lit_run):
    found = measure_in_child("tests.faults.test_serve_memory_modes", tiny_lit_run["run"], timeout=600)
    bound = memory_bound(ServeLimits(**LIMITS))
    for mode, m in found.items():
        print(f"{mode:20s} {m['bytes'] / 1024:8.0f} KB upload: status {m['status']}, peak +{m['grew'] / MIB:.0f} MiB "
              f"(bound +{bound / MIB:.0f})")
    for mode, m in found.items():
        assert m["status"] == 200 or (m["status"] == 413 and "decoding budget" in m["text"]), (mode, m["text"])
        assert m["grew"] < bound, (mode, f"peak grew by {m['grew'] / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB")
    assert sum(m["status"] == 200 for m in found.values()) >= 5  # the bound holds because they decode, not refused
