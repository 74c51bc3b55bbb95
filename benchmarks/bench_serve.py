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

    python benchmarks/bench_serve.py --load [--model runs/demo/latest] [--parallel 20,80,200] [--requests 200]

The load test: for each level of parallelism, --requests uploads (POST /api/classify, photos from
--images) sent by that many clients at once to a server with its default limits. It counts
successes, 503s in JSON with Retry-After (the server's "busy, retry"), any other 5xx (must be 0)
and anything else, the 50th/99th percentile latency of the successes, and the server's peak
resident memory (sampled every 10 ms). Without --model it trains the tests' tiny model first (the
quick mode: a minute, then seconds per level); with --model it loads that run.

    python benchmarks/bench_serve.py --load --mixed [--duration 30] [--normal 4 --slow 8 --large 2]

The mixed load (serve_mixed.py): normal, slow (trickling) and large (16-bit, near --max-pixels)
clients at once; p50/p99 latency per kind, answers by status, and the server's peak memory against
the bound of docs/limits.md.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table, stage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

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


@contextmanager
def server(model: str, threads: int, *args: str):
    """`littune serve` on a free loopback port; yields (url, process)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "littune", "serve", "--model", model, "--port", str(port),
                             "--threads", str(threads), *args], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a run or export (required unless --load: the tiny test model)")
    ap.add_argument("--images", default=str(SHARED / "flowers" / "test"))
    ap.add_argument("--index", default=None, help="index folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--screenshot", default=None, help="save the page's picture here (PNG)")
    ap.add_argument("--load", action="store_true", help="the load test instead of single-call latency")
    ap.add_argument("--parallel", default="20,80,200", help="--load: clients at once, one level each")
    ap.add_argument("--requests", type=int, default=200, help="--load: requests per level")
    ap.add_argument("--mixed", action="store_true", help="--load: normal, slow and large clients at once")
    ap.add_argument("--duration", type=float, default=30, help="--mixed: seconds of load")
    ap.add_argument("--normal", type=int, default=4, help="--mixed: clients uploading photos")
    ap.add_argument("--slow", type=int, default=8, help="--mixed: clients trickling 1 MB at 2 KB/s")
    ap.add_argument("--large", type=int, default=2, help="--mixed: clients uploading 16-bit PNGs near --max-pixels")
    a = ap.parse_args()
    if a.load:
        return load_test(a)
    if a.model is None:
        ap.error("--model is required (without --load)")

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

    with server(a.model, a.threads, "--index", str(index_dir)) as (url, _):
        with httpx.Client(timeout=120) as c:
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


def _peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.01)


def _one_level(url: str, pid: int, uploads: list[tuple[str, bytes]], labels: str, n: int, parallel: int) -> dict:
    """n uploads sent by `parallel` clients at once: counts by kind of answer, latency, peak RSS."""
    import httpx

    def send(i: int) -> tuple[str, float]:
        name, data = uploads[i % len(uploads)]
        t0 = time.perf_counter()
        try:
            r = client.post(f"{url}/api/classify", files={"image": (name, data, "image/jpeg")}, data={"labels": labels})
        except httpx.HTTPError as e:
            return f"error {type(e).__name__}", 1000 * (time.perf_counter() - t0)
        ms = 1000 * (time.perf_counter() - t0)
        json_body = r.headers.get("content-type", "").startswith("application/json")
        if r.status_code == 200 and json_body and "label" in r.json():
            return "ok", ms
        if r.status_code == 503 and json_body and set(r.json()) == {"error", "field"} and "retry-after" in r.headers:
            return "busy", ms
        return ("5xx" if r.status_code >= 500 else "other") + f" {r.status_code}", ms

    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_peak_rss, args=(pid, stop, peak))
    watcher.start()
    t0 = time.perf_counter()
    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=parallel)) as client, \
            ThreadPoolExecutor(parallel) as pool:
        answers = list(pool.map(send, range(n)))
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    kinds = [k for k, _ in answers]
    ok_ms = sorted(ms for k, ms in answers if k == "ok")
    pct = (lambda q: round(ok_ms[min(len(ok_ms) - 1, int(q * len(ok_ms)))], 1) if ok_ms else None)
    return {"parallel": parallel, "requests": n, "ok": kinds.count("ok"), "busy_503_json": kinds.count("busy"),
            "other_5xx": sum(k.startswith("5xx") for k in kinds),
            "other": sorted({k for k in kinds if k.startswith(("other", "error"))}),
            "other_count": sum(k.startswith(("other", "error")) for k in kinds),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "wall_s": round(wall, 1),
            "peak_rss_mib": round(peak[0] / 2 ** 20)}


def load_test(a: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_serve_load_"))
    if a.model is None:
        stage("quick mode: training the tests' tiny model (tests/infer/tiny_lit.py)")
        sys.path.insert(0, str(REPO))
        from tests.infer.tiny_lit import train_tiny_run

        tiny = train_tiny_run(work / "tiny")
        model, photos, labels = str(tiny["run"]), tiny["images"], ",".join(sorted(set(tiny["captions"]))[:5])
    else:
        folder = Path(a.images)
        model, labels = a.model, "daisy,dandelion,rose,sunflower,tulip"
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:200]
        if not photos:
            sys.exit(f"bench_serve: no photos under {folder} (--images DIR)")
    uploads = [(p.name, p.read_bytes()) for p in photos]
    if a.mixed:
        return mixed_test(a, model, uploads, labels)
    levels = [int(x) for x in a.parallel.split(",")]
    rows = []
    with server(model, a.threads) as (url, proc):
        import psutil

        idle = psutil.Process(proc.pid).memory_info().rss
        for parallel in levels:
            stage(f"{a.requests} requests, {parallel} at once")
            rows.append(_one_level(url, proc.pid, uploads, labels, a.requests, parallel))
    print_table(f"bench_serve --load ({'tiny test model' if a.model is None else model}, {a.threads} thread(s), "
                f"default limits; server idle at {idle / 2 ** 20:.0f} MiB)", [
        (f"{r['parallel']} at once: ok / 503 JSON / other 5xx / other",
         f"{r['ok']} / {r['busy_503_json']} / {r['other_5xx']} / {r['other_count']}",
         f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, peak RSS {r['peak_rss_mib']} MiB, {r['wall_s']} s"
         + (f", other: {', '.join(r['other'])}" if r["other"] else "")) for r in rows])
    print_json({"mode": "quick" if a.model is None else "model", "model": model, "threads": a.threads,
                "idle_rss_mib": round(idle / 2 ** 20), "levels": rows,
                "other_5xx_total": sum(r["other_5xx"] for r in rows)}, variant="load")


def mixed_test(a: argparse.Namespace, model: str, uploads: list, labels: str) -> None:
    from serve_mixed import big_16bit_png, run_mixed

    from littune.serve import ServeLimits

    limits = ServeLimits(body_timeout_s=5.0)
    stage(f"mixed load for {a.duration:g} s: {a.normal} normal, {a.slow} slow, {a.large} large clients")
    large = big_16bit_png(limits.max_pixels)
    with server(model, a.threads, "--body-timeout", str(limits.body_timeout_s)) as (url, proc):
        import psutil

        idle = psutil.Process(proc.pid).memory_info().rss
        fig = run_mixed(url, int(url.rsplit(":", 1)[1]), proc.pid, uploads, labels, large, a.normal, a.slow,
                        a.large, a.duration)
    bound = (limits.decode_budget_bytes + limits.max_active * limits.max_body_bytes + limits.max_queue * 64 * 1024
             + 64 * 2 ** 20)
    print_table(f"bench_serve --load --mixed ({'tiny test model' if a.model is None else model}, {a.duration:g} s; "
                f"server idle at {idle / 2 ** 20:.0f} MiB, peak {fig['peak_rss_mib']} MiB, bound idle + "
                f"{bound / 2 ** 20:.0f} MiB)", [
        (kind, " ".join(f"{s}x{n}" for s, n in sorted(k["answers"].items())),
         f"p50 {k['p50_ms']} ms, p99 {k['p99_ms']} ms") for kind, k in fig["kinds"].items()])
    print_json({"mode": "mixed", "model": model, "duration_s": a.duration, "clients": {
        "normal": a.normal, "slow": a.slow, "large": a.large}, "large_upload_kb": len(large) // 1024,
        "idle_rss_mib": round(idle / 2 ** 20), "bound_above_idle_mib": round(bound / 2 ** 20), **fig})


if __name__ == "__main__":
    main()
