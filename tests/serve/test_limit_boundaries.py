"""The server's size limits at their exact boundaries, through HTTP: the limit passes, one over fails.

Three limits, each checked at exactly the limit and at one more: the request body (a declared
Content-Length, and a chunked body with no length), the uploaded image file, and the image's pixels.
"""
from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from littune.serve import ServeLimits, create_app

BOUNDARY = "littuneboundary"


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


IMAGE = _png(40, 30)  # trailing bytes after PNG's IEND are ignored by decoders: sizes are padded with them


def _body(image: bytes, pad: int = 0) -> bytes:
    """A multipart form: the image, the labels, and an unused ``pad`` field of ``pad`` bytes."""
    parts = [("image", image, 'filename="a.png"\r\nContent-Type: image/png'), ("labels", b"green,red", ""),
             ("pad", b"x" * pad, "")]
    out = b""
    for name, value, extra in parts:
        disposition = f'form-data; name="{name}"' + (f"; {extra}" if extra else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


FORM = len(_body(b""))  # bytes of the form around an empty image, no padding


def _post(client: TestClient, body: bytes, chunked: bool = False):
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if chunked:  # an iterator: httpx sends it without a Content-Length (Transfer-Encoding: chunked)
        pieces = [body[i:i + 997] for i in range(0, len(body), 997)]
        return client.post("/api/classify", content=iter(pieces), headers=headers)
    return client.post("/api/classify", content=body, headers={**headers, "content-length": str(len(body))})


@pytest.fixture(scope="module")
def app_for(serve_lit):
    def make(limits: ServeLimits) -> TestClient:
        return TestClient(create_app(serve_lit, None, limits), base_url="http://localhost",
                          raise_server_exceptions=False)
    return make


def test_chunked_requests_really_carry_no_length(app_for):
    seen = {}
    limits = ServeLimits(max_upload_bytes=10_000, form_overhead_bytes=FORM)
    app = app_for(limits).app

    async def spy(scope, receive, send):
        if scope["type"] == "http":
            seen.update(dict(scope["headers"]))
        await app(scope, receive, send)

    with TestClient(spy, base_url="http://localhost") as c:
        assert _post(c, _body(IMAGE), chunked=True).status_code == 200
    assert b"content-length" not in seen and seen[b"transfer-encoding"] == b"chunked"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_is_refused(app_for, chunked):
    max_upload = 5_000
    limit = max_upload + FORM  # what the server takes in one request
    body = _body(IMAGE, pad=limit - FORM - len(IMAGE))
    assert len(body) == limit
    with app_for(ServeLimits(max_upload_bytes=max_upload, form_overhead_bytes=FORM)) as c:
        r = _post(c, body, chunked)
        assert r.status_code == 200, r.text
        assert r.json()["label"] in ("green", "red")
        over = _body(IMAGE, pad=limit - FORM - len(IMAGE) + 1)
        r = _post(c, over, chunked)
        assert r.status_code == 413, r.text
        assert r.json() == {"error": f"request body larger than the limit of {limit} bytes", "field": "image"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_image_of_exactly_max_upload_bytes_passes_and_one_byte_more_is_refused(app_for, chunked):
    max_upload = len(IMAGE) + 300
    with app_for(ServeLimits(max_upload_bytes=max_upload, form_overhead_bytes=FORM + 1000)) as c:
        exact = IMAGE + b"\0" * (max_upload - len(IMAGE))
        r = _post(c, _body(exact), chunked)
        assert r.status_code == 200, r.text
        r = _post(c, _body(exact + b"\0"), chunked)
        assert r.status_code == 413, r.text
        assert r.json() == {"error": f"image: larger than the limit of {max_upload} bytes", "field": "image"}


def test_an_image_of_exactly_max_pixels_passes_and_one_pixel_more_is_refused(app_for):
    with app_for(ServeLimits(max_pixels=40 * 30, pixel_budget=40 * 30)) as c:
        assert _post(c, _body(_png(40, 30))).status_code == 200
        assert _post(c, _body(_png(30, 40))).status_code == 200
        for w, h in ((41, 30), (40, 31), (1201, 1)):
            r = _post(c, _body(_png(w, h)))
            assert r.status_code == 413 and r.json()["field"] == "image", (w, h, r.text)
            assert f"more pixels than the limit of {40 * 30}" in r.json()["error"]
