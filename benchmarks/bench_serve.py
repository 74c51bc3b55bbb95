"""Latency of a trained model in use: zero-shot classify and text-to-image search, in Python and over HTTP.

    python benchmarks/bench_serve.py --model runs/demo/latest [--images DIR] [--screenshot docs/serve_screenshot.png]

Indexes a folder of images (default: ../shared/data/flowers/test), starts `littune serve` on a
loopback port, and times (median and 90th percentile of --repeat calls, warm: model loaded, one
call made first):
  classify     one image, 5 labels, 8 prompt templates each (label embeddings cached after the first call)
  classify_new the same with labels never seen before (40 prompts through the text tower)
  search       one text query, k=10
over the Python API and over HTTP (upload + decode + JSON). With --screenshot it drives the page in
Debian's chromium and saves the side-by-side picture of both tabs. The last line is JSON.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table  # noqa: E402

LABELS = ["daisy", "dandelion", "rose", "sunflower", "tulip"]


def stats(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", default=str(SHARED / "flowers" / "test"))
    ap.add_argument("--index", default=None, help="index folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--screenshot", default=None, help="save the page's picture here (PNG)")
    a = ap.parse_args()

    import httpx
    import torch

    import littune
    from littune.infer import IndexOptions

    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    index_dir = Path(a.index or work / "flowers.index")
    lit = littune.load(a.model)
    t0 = time.perf_counter()
    index = lit.build_index(a.images, index_dir, IndexOptions(progress=False))
    index_s = time.perf_counter() - t0
    image = index.paths[0]
    fresh = iter(range(10**6))

    py_classify = stats(lambda: lit.classify(image, LABELS), a.repeat)
    py_new = stats(lambda: lit.classify(image, [f"{x} {next(fresh)}" for x in LABELS]), max(5, a.repeat // 3))
    py_search = stats(lambda: index.search("a red rose in the garden", k=10), a.repeat)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    proc = subprocess.Popen([sys.executable, "-m", "littune", "serve", "--model", a.model, "--index", str(index_dir),
                             "--port", str(port), "--threads", str(a.threads)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=120) as c:
            for _ in range(600):
                try:
                    if c.get(f"{url}/api/info").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            data = Path(image).read_bytes()
            http_classify = stats(lambda: c.post(f"{url}/api/classify", files={"image": ("x.jpg", data, "image/jpeg")},
                                                 data={"labels": ",".join(LABELS)}).raise_for_status(), a.repeat)
            http_search = stats(lambda: c.get(f"{url}/api/search", params={"q": "a red rose in the garden", "k": 10})
                                .raise_for_status(), a.repeat)
        shot = None
        if a.screenshot:
            from littune.serve.screenshot import drive_page

            rose = next(p for p in index.paths if "/roses/" in p) if any("/roses/" in p for p in index.paths) else image
            shown = drive_page(url + "/", rose, ", ".join(LABELS), "yellow sunflowers in a field", 10, work / "shots")
            Path(a.screenshot).write_bytes(Path(shown["screenshots"]["combined"]).read_bytes())
            shot = a.screenshot
    finally:
        proc.terminate()
        proc.wait(30)

    fig = {"model": str(Path(a.model).resolve()), "image_tower": lit.model.image.name, "text_tower": lit.model.text.name,
           "threads": a.threads, "n_images": len(index), "index_s": round(index_s, 1),
           "classify_ms": round(py_classify[0], 1), "classify_p90_ms": round(py_classify[1], 1),
           "classify_new_labels_ms": round(py_new[0], 1), "search_ms": round(py_search[0], 1),
           "search_p90_ms": round(py_search[1], 1), "http_classify_ms": round(http_classify[0], 1),
           "http_search_ms": round(http_search[0], 1), "screenshot": shot}
    print_table(f"bench_serve ({lit.model.image.name} + {lit.model.text.name}, {a.threads} thread(s), "
                f"index of {len(index)} images)", [
        ("classify: 1 image, 5 labels (API, warm)", f"{py_classify[0]:.1f} ms", f"p90 {py_classify[1]:.1f} ms"),
        ("classify with 5 new labels (API)", f"{py_new[0]:.1f} ms", "40 prompts through the text tower"),
        ("search k=10 (API)", f"{py_search[0]:.1f} ms", f"p90 {py_search[1]:.1f} ms"),
        ("POST /api/classify (HTTP, upload + decode)", f"{http_classify[0]:.1f} ms", f"p90 {http_classify[1]:.1f} ms"),
        ("GET /api/search k=10 (HTTP)", f"{http_search[0]:.1f} ms", f"p90 {http_search[1]:.1f} ms"),
        ("littune index (embed the folder)", f"{index_s:.1f} s", f"{len(index)} images"),
    ])
    print_json(fig)


if __name__ == "__main__":
    main()
