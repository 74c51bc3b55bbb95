"""The JSON API in-process: answers, and a clear 4xx (never a 500) for every kind of bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from littune.serve import ServeLimits, create_app

LABELS = "red above green, blue above red, black above white"
LIMITS = ServeLimits(max_upload_bytes=200_000, max_pixels=1_000_000, max_labels=5, max_label_chars=30,
                     max_query_chars=50, max_k=20)


@pytest.fixture(scope="module")
def client(serve_lit, serve_index):
    with TestClient(create_app(serve_lit, serve_index, LIMITS), base_url="http://localhost",
                    raise_server_exceptions=False) as c:
        yield c


def _jpeg(path) -> bytes:
    return path.read_bytes()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_classify_ranks_labels_with_probabilities(client, serve_lit, tiny_lit_run):
    image = tiny_lit_run["images"][3]
    r = client.post("/api/classify", files={"image": (image.name, _jpeg(image), "image/jpeg")}, data={"labels": LABELS})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["image"] == image.name and set(out) >= {"label", "ranked", "ms"} and out["probabilities"] == "softmax"
    probs = [x["probability"] for x in out["ranked"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    expected = serve_lit.classify(image, LABELS)[0]
    assert [x["label"] for x in out["ranked"]] == list(expected) and out["label"] == next(iter(expected))
    assert probs == pytest.approx(list(expected.values()), abs=1e-6)


def test_search_returns_scores_and_thumbnail_urls(client, serve_index):
    r = client.get("/api/search", params={"q": "red above green", "k": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["query"] == "red above green" and out["k"] == 5 and out["n_images"] == len(serve_index)
    expected = serve_index.search("red above green", k=5)
    assert [x["key"] for x in out["results"]] == [h.key for h in expected]
    assert [x["score"] for x in out["results"]] == pytest.approx([h.score for h in expected], abs=1e-6)
    for rank, x in enumerate(out["results"], 1):
        assert x["rank"] == rank and x["thumbnail"] == f"/thumb/{x['index']}"
        t = client.get(x["thumbnail"])
        assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(t.content))
        assert max(thumb.size) <= LIMITS.thumb_px


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "Zero-shot classification" in page.text and "/static/app.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    info = client.get("/api/info").json()
    assert info["index"] == 24 and info["limits"]["max_k"] == 20


def _classify(client, data: bytes, name: str = "upload.jpg", labels: str = LABELS):
    return client.post("/api/classify", files={"image": (name, data, "image/jpeg")}, data={"labels": labels})


def test_bad_uploads_get_a_clear_4xx(client, tiny_lit_run):
    good = _jpeg(tiny_lit_run["images"][0])
    cases = {
        "not an image": (_classify(client, b"<html>404 not found</html>", "page.jpg"), 400, "not an image"),
        "truncated": (_classify(client, good[: len(good) // 2], "cut.jpg"), 400, "truncated"),
        "empty": (_classify(client, b"", "empty.jpg"), 400, "empty"),
        "too many bytes": (_classify(client, good + b"\0" * LIMITS.max_upload_bytes), 413, "bytes"),
        "too many pixels": (_classify(client, _png(1200, 1000), "big.png"), 413, "pixels"),
    }
    for what, (r, status, words) in cases.items():
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert body["field"] == "image" and words in body["error"], (what, body)
    # A small image under both limits is fine; the server still answers after all of the above.
    assert _classify(client, _png(900, 1000), "ok.png").status_code == 200


@pytest.mark.parametrize("labels, words", [
    ("", "empty"), (" , ,", "non-empty"), ("a,b,c,d,e,f", "at most 5"), ("x" * 31 + ",b", "longer than 30"),
    ("cat,dog,cat", "more than once"),
])
def test_bad_labels_get_400(client, tiny_lit_run, labels, words):
    r = _classify(client, _jpeg(tiny_lit_run["images"][0]), labels=labels)
    assert r.status_code == 400 and r.json()["field"] == "labels" and words in r.json()["error"], r.text


def test_missing_fields_get_4xx(client, tiny_lit_run):
    r = client.post("/api/classify", data={"labels": LABELS})
    assert r.status_code == 400 and r.json()["field"] == "image"
    r = client.post("/api/classify", files={"image": ("a.jpg", _jpeg(tiny_lit_run["images"][0]), "image/jpeg")})
    assert r.status_code == 400 and r.json()["field"] == "labels"
    r = client.post("/api/classify", content=b"not multipart", headers={"content-type": "text/plain"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("params, field, words", [
    ({"q": "", "k": 5}, "q", "empty"), ({"k": 5}, "q", "empty"), ({"q": "x" * 51}, "q", "at most 50"),
    ({"q": "red", "k": 0}, "k", "outside 1..20"), ({"q": "red", "k": 21}, "k", "outside"),
    ({"q": "red", "k": "ten"}, "k", "not an integer"), ({"q": "red", "k": -3}, "k", "outside"),
])
def test_bad_searches_get_400(client, params, field, words):
    r = client.get("/api/search", params=params)
    assert r.status_code == 400 and r.json()["field"] == field and words in r.json()["error"], r.text


def test_oversized_body_is_refused_before_it_is_read(client):
    r = client.post("/api/classify", content=b"x" * 100, headers={
        "content-type": "multipart/form-data; boundary=x", "content-length": str(10 * LIMITS.max_upload_bytes)})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_without_an_index_search_says_so(serve_lit):
    with TestClient(create_app(serve_lit, None), base_url="http://localhost") as c:
        r = c.get("/api/search", params={"q": "red"})
        assert r.status_code == 404 and "--index" in r.json()["error"]
        assert c.get("/thumb/0").status_code == 404
        assert c.get("/api/info").json()["index"] is None


def test_thumbnails_only_by_position(client, serve_index):
    n = len(serve_index)
    assert client.get(f"/thumb/{n - 1}").status_code == 200
    for bad in (f"/thumb/{n}", "/thumb/-1", "/thumb/1.5", "/thumb/abc", "/thumb/", "/thumb/0x1"):
        r = client.get(bad)
        assert r.status_code in (400, 404), (bad, r.status_code)


def test_a_big_photo_is_classified_from_a_reduced_decode_nearly_as_in_full(client, serve_lit, tiny_lit_run):
    """A 2400 x 1800 JPEG (a scaled-up test image): decoded at 1/2 in draft mode, same ranking as in full."""
    small = Image.open(tiny_lit_run["images"][5]).convert("RGB")
    buf = io.BytesIO()
    small.resize((2400, 1800), Image.BICUBIC).save(buf, format="JPEG", quality=92)
    big = buf.getvalue()
    limits = ServeLimits(max_upload_bytes=len(big) + 1, max_pixels=5_000_000)
    with TestClient(create_app(serve_lit, None, limits), base_url="http://localhost") as c:
        r = c.post("/api/classify", files={"image": ("big.jpg", big, "image/jpeg")}, data={"labels": LABELS})
    assert r.status_code == 200, r.text
    full = serve_lit.classify(big, LABELS)[0]  # the Python API decodes in full
    got = {x["label"]: x["probability"] for x in r.json()["ranked"]}
    assert list(got) == list(full)
    print("largest difference:", max(abs(got[k] - full[k]) for k in full))
    assert got == pytest.approx(full, abs=0.01)


def test_no_decoding_budget_left_is_503_with_retry_after_not_a_bad_image(serve_lit, tiny_lit_run):
    limits = ServeLimits(max_pixels=1_000_000, pixel_budget=1_000_000, queue_timeout_s=0.2, retry_after_s=3)
    app = create_app(serve_lit, None, limits)
    image = tiny_lit_run["images"][0].read_bytes()
    with TestClient(app, base_url="http://localhost") as c:
        with app.state.pixel_budget.hold(app.state.pixel_budget.total):  # other requests are decoding: nothing left
            r = _classify(c, image)
        assert r.status_code == 503 and r.headers["retry-after"] == "3", r.text
        assert r.json()["field"] == "image" and "busy" in r.json()["error"]
        assert _classify(c, image).status_code == 200  # budget back: answered
