"""Drive the web page in a real headless browser: upload and classify, search, save screenshots.

Debian's ``/usr/bin/chromium`` (the Makefile installs it) driven by Playwright for Python; no browser
is downloaded. Used by the browser test and by ``benchmarks/bench_serve.py`` (the docs' screenshot, docs/serving.md).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_THUMBS_LOADED = """() => { const imgs = [...document.querySelectorAll('#grid .thumb img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def find_chromium() -> str | None:
    """$LITTUNE_CHROMIUM, else Debian's /usr/bin/chromium, else chromium on the PATH."""
    for candidate in (os.environ.get("LITTUNE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def drive_page(url: str, image: str | Path, labels: str, query: str, k: int, out_dir: str | Path,
               timeout_ms: int = 60_000) -> dict:
    """Classify ``image`` with ``labels`` and search ``query`` (k in 5, 10, 20, 50) on the page at ``url``.

    Returns what the page shows (bars, thumbnails, console errors) and the screenshot paths:
    serve_classify.png, serve_search.png and serve_screenshot.png (both side by side).
    """
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium found (apt-get install chromium, or set LITTUNE_CHROMIUM)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="littune-chromium-") as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 720})
        try:
            page = ctx.new_page()
            page.set_default_timeout(timeout_ms)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("() => document.getElementById('model-info').textContent.length > 0")
            page.set_input_files("#file", str(image))
            page.fill("#labels", labels)
            page.click("#classify")
            page.wait_for_selector("#bars .bar")
            bars = page.eval_on_selector_all("#bars .bar", """els => els.map(e => ({
                label: e.querySelector('.label').textContent, pct: e.querySelector('.pct').textContent,
                width: parseFloat(e.querySelector('.fill').style.width),
                px: e.querySelector('.fill').getBoundingClientRect().width}))""")
            top = page.text_content("#classify-time")
            page.screenshot(path=str(out / "serve_classify.png"))
            page.click("#tab-search")
            page.fill("#query", query)
            page.select_option("#k", str(k))
            page.click("#search")
            page.wait_for_function(_THUMBS_LOADED)
            thumbs = page.eval_on_selector_all("#grid .thumb", """els => els.map(e => ({
                src: e.querySelector('img').getAttribute('src'), key: e.querySelector('.key').textContent,
                score: parseFloat(e.querySelector('.score').textContent),
                width: e.querySelector('img').naturalWidth}))""")
            page.screenshot(path=str(out / "serve_search.png"))
        finally:
            ctx.close()
    combined = side_by_side(out / "serve_classify.png", out / "serve_search.png", out / "serve_screenshot.png")
    return {"bars": bars, "top": top, "thumbs": thumbs, "errors": errors,
            "screenshots": {"classify": str(out / "serve_classify.png"), "search": str(out / "serve_search.png"),
                            "combined": str(combined)}}


# The combined screenshot is what the docs show: a palette of 128 colours (octree) keeps text and bars
# sharp and the thumbnails recognisable at about a quarter of the RGB file's size (725 KB -> ~180 KB);
# a page with more photo area gets fewer colours until the file fits.
SCREENSHOT_COLOURS = (128, 64, 32)
SCREENSHOT_MAX_BYTES = 200_000


def side_by_side(left: Path, right: Path, out: Path) -> Path:
    """The two screenshots side by side as one palette PNG under ``SCREENSHOT_MAX_BYTES``."""
    from PIL import Image

    a, b = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    gap = 16
    canvas = Image.new("RGB", (a.width + gap + b.width, max(a.height, b.height)), (200, 204, 210))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width + gap, 0))
    for colours in SCREENSHOT_COLOURS:
        canvas.quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
        if out.stat().st_size < SCREENSHOT_MAX_BYTES:
            break
    return out
