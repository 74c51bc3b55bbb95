"""The screenshot the docs show (littune/serve/screenshot.py: side_by_side) is a small palette PNG."""
from __future__ import annotations

from PIL import Image

from littune.serve.screenshot import SCREENSHOT_MAX_BYTES, side_by_side


def _page(photos: list, path, offset: int):
    """A page-like picture: a light background, a header bar, a grid of photo thumbnails."""
    page = Image.new("RGB", (1000, 720), (248, 249, 251))
    page.paste((40, 90, 200), (0, 60, 1000, 64))
    for i, photo in enumerate(photos[offset:offset + 10]):
        thumb = Image.open(photo).convert("RGB").resize((180, 140))
        page.paste(thumb, (20 + (i % 5) * 195, 150 + (i // 5) * 180))
    page.save(path)
    return path


def test_side_by_side_writes_a_palette_png_under_the_limit(shared_data, tmp_path):
    photos = sorted((shared_data / "flowers" / "test").rglob("*.jpg"))[::40][:20]
    left, right = _page(photos, tmp_path / "l.png", 0), _page(photos, tmp_path / "r.png", 10)
    out = side_by_side(left, right, tmp_path / "serve_screenshot.png")
    shot = Image.open(out)
    assert shot.size == (2016, 720) and shot.mode == "P"
    assert out.stat().st_size < SCREENSHOT_MAX_BYTES
    # the palette keeps the picture: every pixel within a small distance of the original on average
    original = Image.open(left).convert("RGB")
    mine = shot.convert("RGB").crop((0, 0, 1000, 720))
    diff = sum(abs(a - b) for pa, pb in zip(original.getdata(), mine.getdata()) for a, b in zip(pa, pb))
    assert diff / (1000 * 720 * 3) < 6
