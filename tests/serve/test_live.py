"""A real `littune serve` process on loopback: path traversal, 32 concurrent requests, a real browser."""
from __future__ import annotations

import http.client
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ci import missing, need_module

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
pytestmark = pytest.mark.xdist_group("serve_live")  # one server process for the whole file


@pytest.mark.parametrize("path", [
    "/thumb/../../etc/passwd", "/thumb/..%2F..%2Fetc%2Fpasswd", "/thumb/%2e%2e/%2e%2e/etc/passwd",
    "/thumb/0/../../../../etc/passwd", "/thumb//etc/passwd", "/thumb/%2Fetc%2Fpasswd", "/thumb/-1",
    "/static/../../../../../../etc/passwd", "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static//etc/passwd",
    "/static/..%5c..%5c..%5cetc%5cpasswd", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/api/../../etc/passwd", "/thumb/0%00.jpg",
])
def test_no_path_reads_a_file_outside_the_index(live_server, path):
    """Raw request lines (http.client sends the path as written, dot segments and escapes included)."""
    conn = http.client.HTTPConnection("127.0.0.1", live_server["port"], timeout=30)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status in (400, 404), (path, r.status, body[:200])
    assert b"root:" not in body and b"/bin/" not in body


def _expected(serve_lit, serve_index, tiny_lit_run):
    """The 32 requests of a round and the in-process answer to each."""
    images, caps = tiny_lit_run["images"], tiny_lit_run["captions"]
    jobs = []
    for i in range(16):
        labels = [caps[i], caps[(i + 5) % len(caps)], caps[(i + 11) % len(caps)]]
        probs = serve_lit.classify(images[i], labels)[0]
        jobs.append(("classify", images[i], ",".join(labels), list(probs), list(probs.values())))
    for i in range(16):
        query = caps[(i * 7) % len(caps)]
        hits = serve_index.search(query, k=5)
        jobs.append(("search", None, query, [h.key for h in hits], [h.score for h in hits]))
    return jobs


def _ask(client, url: str, job, barrier: threading.Barrier):
    kind, image, text, _, _ = job
    barrier.wait(timeout=60)  # all 32 leave together
    if kind == "classify":
        r = client.post(f"{url}/api/classify", files={"image": (image.name, image.read_bytes(), "image/jpeg")},
                        data={"labels": text})
        return r.status_code, r.json()
    r = client.get(f"{url}/api/search", params={"q": text, "k": 5})
    return r.status_code, r.json()


def _check(job, status: int, out: dict) -> None:
    kind, _, _, names, values = job
    assert status == 200, (kind, status, out)
    if kind == "classify":
        assert [x["label"] for x in out["ranked"]] == names
        assert [x["probability"] for x in out["ranked"]] == pytest.approx(values, abs=1e-5)
    else:
        assert [x["key"] for x in out["results"]] == names
        assert [x["score"] for x in out["results"]] == pytest.approx(values, abs=1e-5)


def test_32_concurrent_requests_all_correct_and_memory_flat(live_server, serve_lit, serve_index, tiny_lit_run):
    import httpx
    import psutil

    jobs = _expected(serve_lit, serve_index, tiny_lit_run)
    server = psutil.Process(live_server["proc"].pid)
    rss = []
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=32)) as client, \
            ThreadPoolExecutor(max_workers=32) as pool:
        for _ in range(6):  # bounded: 6 rounds x 32 requests
            barrier = threading.Barrier(32)
            answers = list(pool.map(lambda job: _ask(client, live_server["url"], job, barrier), jobs))
            for job, (status, out) in zip(jobs, answers):
                _check(job, status, out)
            rss.append(server.memory_info().rss)
    growth_mib = (max(rss[2:]) - rss[1]) / 2**20  # after two warm-up rounds
    print(f"server RSS per round (MiB): {[round(r / 2**20, 1) for r in rss]}")
    assert growth_mib < 32, [round(r / 2**20, 1) for r in rss]
    # A per-request leak grows linearly; here the last two rounds add about 2 MiB and falling.
    assert (rss[-1] - rss[-3]) / 2**20 < 8, [round(r / 2**20, 1) for r in rss]


def _browser_or_skip():
    from littune.serve.screenshot import find_chromium

    if find_chromium() is None:
        missing("no /usr/bin/chromium (apt-get install chromium, or run `make install` as root)")
    need_module("playwright", "pip install playwright (in the dev extra)")


def _drive_and_check(url: str, serve_lit, serve_index, tiny_lit_run, out_dir: Path) -> dict:
    """Classify and search on the page at ``url``; checks the bars and thumbnails against the API."""
    from littune.serve.screenshot import drive_page

    image, labels, query = tiny_lit_run["images"][2], "red above yellow, blue above green, white above black", "red above yellow"
    shown = drive_page(url, image, labels, query, k=5, out_dir=out_dir)
    assert shown["errors"] == []
    expected = serve_lit.classify(image, labels)[0]
    assert [b["label"] for b in shown["bars"]] == list(expected)
    assert [b["pct"] for b in shown["bars"]] == [f"{100 * p:.1f}%" for p in expected.values()]
    widths = [b["px"] for b in shown["bars"]]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0  # drawn bars, longest first
    assert shown["top"].startswith(f"top: {next(iter(expected))}")
    hits = serve_index.search(query, k=5)
    assert [t["key"] for t in shown["thumbs"]] == [h.key for h in hits]
    assert all(t["width"] > 0 for t in shown["thumbs"])  # every thumbnail decoded in the browser
    assert [t["score"] for t in shown["thumbs"]] == pytest.approx([h.score for h in hits], abs=6e-4)
    shown["hits"] = hits
    return shown


def test_browser_uploads_classifies_and_searches(live_server, serve_lit, serve_index, tiny_lit_run, tmp_path):
    _browser_or_skip()
    shown = _drive_and_check(live_server["url"] + "/", serve_lit, serve_index, tiny_lit_run, tmp_path / "shots")
    assert [t["src"] for t in shown["thumbs"]] == [f"/thumb/{h.position}" for h in shown["hits"]]
    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in shown["screenshots"].items():
        assert Path(path).stat().st_size > 5_000
        shutil.copy(path, ARTIFACTS / Path(path).name)
    assert Path(shown["screenshots"]["combined"]).stat().st_size < 200_000  # the docs' picture stays small
    print(f"browser screenshots: {ARTIFACTS / 'serve_screenshot.png'} (and serve_classify.png, serve_search.png)")


def test_browser_page_sends_the_token_from_its_url_fragment(serve_lit, serve_index, tiny_lit_run, tmp_path):
    """`--token`: the page opened at /#token=T classifies, searches and shows thumbnails (fetched with it)."""
    from tests.serve.live import start_server

    _browser_or_skip()
    token = "page-token-98765"
    with start_server(tiny_lit_run["run"], "--index", str(serve_index.folder), "--token", token,
                      ready_headers={"authorization": f"Bearer {token}"}) as server:
        shown = _drive_and_check(f"{server['url']}/#token={token}", serve_lit, serve_index, tiny_lit_run,
                                 tmp_path / "shots")
    assert all(t["src"].startswith("blob:") for t in shown["thumbs"])  # an <img> cannot send the header
