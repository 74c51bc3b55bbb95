"""The web app: a small page and the JSON API it runs on (FastAPI).

    GET  /                 the page (static/index.html, app.js, style.css; no CDN, no build step)
    GET  /api/info         model, index size and limits
    POST /api/classify     multipart ``image`` (file) and ``labels`` ("cat,dog,car") -> ranked labels
    GET  /api/search       ?q=a+dog&k=10 -> best images with scores and thumbnail URLs
    GET  /thumb/{i}        a JPEG thumbnail of the index's i-th image

    GET  /docs, /openapi.json  only with ``Access(docs=True)`` (``--docs``); with a token, the
                           schema declares it (HTTP bearer), so /docs' "Authorize" sends it

HEAD works wherever GET does.

Bad input is a 4xx with ``{"error": message, "field": name}``: not an image, truncated, too many
bytes or pixels, empty or too many labels, an empty or too long query, a bad k. Thumbnails are
addressed by index position only, so no request names a file: nothing outside the index is served.
Inference goes through the ``LiT`` object's lock; endpoints run in FastAPI's thread pool.
Middleware, outermost first: ``Guard`` (Host allow-list, token), ``HeadAsGet``, ``Admission`` (body
read bounded in time and size: 408/413 JSON; then fair, bounded slots: 503 JSON). Uploads and
thumbnails decode at reduced size under ``PixelBudget``.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.images import BOMB, BadImage, load_image
from ..infer.model import parse_labels
from .admission import Admission, Busy, PixelBudget, TooCostly
from .guard import Access, Guard
from .http import HeadAsGet
from .limits import ServeLimits

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("littune.serve")


class ApiError(Exception):
    def __init__(self, status: int, field: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.message, self.headers = status, field, message, headers


def _error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def decode(data: bytes | str, limits: ServeLimits, budget: PixelBudget, name: str, reduce_to: int):
    """Bytes or a path -> RGB image at reduced size, decoded inside the shared pixel budget."""
    try:
        return load_image(data, max_pixels=limits.max_pixels, name=name, reduce_to=reduce_to, reserve=budget.hold)
    except Busy as e:
        raise ApiError(503, "image", f"server busy: {e}; retry after {limits.retry_after_s} s",
                       {"Retry-After": str(limits.retry_after_s)}) from None
    except TooCostly as e:
        raise ApiError(413, "image", f"image: {name}: {e}") from None


def check_labels(raw: str | None, limits: ServeLimits) -> list[str]:
    if raw is None or not raw.strip():
        raise ApiError(400, "labels", "labels: empty; give one or more comma-separated labels, e.g. cat,dog,car")
    try:
        labels = parse_labels(raw)
    except ValueError as e:
        raise ApiError(400, "labels", str(e)) from None
    if len(labels) > limits.max_labels:
        raise ApiError(400, "labels", f"labels: {len(labels)} given, at most {limits.max_labels}")
    long = [x for x in labels if len(x) > limits.max_label_chars]
    if long:
        raise ApiError(400, "labels", f"labels: {long[0][:40]!r}... is longer than {limits.max_label_chars} characters")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ApiError(400, "labels", f"labels: {dup[0]!r} is given more than once")
    return labels


def check_query(q: str | None, k: str | None, limits: ServeLimits) -> tuple[str, int]:
    q = (q or "").strip()
    if not q:
        raise ApiError(400, "q", "q: empty query; describe the images to find")
    if len(q) > limits.max_query_chars:
        raise ApiError(400, "q", f"q: {len(q)} characters, at most {limits.max_query_chars}")
    try:
        k_int = int(k) if k not in (None, "") else 10
    except ValueError:
        raise ApiError(400, "k", f"k: {k!r} is not an integer") from None
    if not 1 <= k_int <= limits.max_k:
        raise ApiError(400, "k", f"k: {k_int} is outside 1..{limits.max_k}")
    return q, k_int


class Thumbnails:
    """JPEG thumbnails of index rows, made on demand and kept in a bounded LRU."""

    def __init__(self, paths: list[str], limits: ServeLimits, budget: PixelBudget):
        self.paths, self.limits, self.budget = paths, limits, budget
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, i: int) -> bytes:
        if not 0 <= i < len(self.paths):
            raise ApiError(404, "i", f"no image {i} in the index ({len(self.paths)} images)")
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
        try:
            img = decode(self.paths[i], self.limits, self.budget, f"image {i}", self.limits.thumb_px)
        except BadImage as e:
            raise ApiError(404, "i", f"image {i} can no longer be read: {e.reason}") from None
        img.thumbnail((self.limits.thumb_px, self.limits.thumb_px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[i] = data
            while len(self._cache) > self.limits.thumb_cache:
                self._cache.popitem(last=False)
        return data


def _declare_bearer(app: FastAPI) -> None:
    """The schema says every API call needs ``Authorization: Bearer TOKEN``: /docs then offers "Authorize"."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the server's --token"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def create_app(lit, index=None, limits: ServeLimits | None = None, access: Access | None = None) -> FastAPI:
    """The app for a loaded ``LiT`` and an optional ``ImageIndex`` made by the same model.

    ``access``: the Host names answered, the token and /docs (default: loopback names, no token, no docs).
    """
    limits, access = limits or ServeLimits(), access or Access()
    # /docs loads its assets from a CDN: off unless asked for (and the schema with it).
    app = FastAPI(title="littune", docs_url="/docs" if access.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if access.docs else None)
    app.add_middleware(Admission, limits=limits)
    app.add_middleware(HeadAsGet)
    app.add_middleware(Guard, access=access)  # added last: runs first
    budget = app.state.pixel_budget = PixelBudget(limits.decode_budget_bytes, limits.queue_timeout_s)
    # Decode uploads no larger than the model needs, with a margin for its own antialiased resize.
    upload_side = max(limits.decode_side, 2 * lit.model.image.preprocess.resize_size)
    thumbs = Thumbnails(index.paths, limits, budget) if index is not None else None
    if access.docs and access.token:
        _declare_bearer(app)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError):
        return _error(e.status, e.message, e.field, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        field = str(first.get("loc", ["", "request"])[-1])
        return _error(422, f"{field}: {first.get('msg', 'invalid request')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception):  # pragma: no cover - a bug, never bad input
        log.exception("internal error")
        return _error(500, f"internal error: {type(e).__name__}")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info():
        return {"model": lit.source, "image_tower": lit.model.image.name, "text_tower": lit.model.text.name,
                "embed_dim": lit.embed_dim, "index": len(index) if index is not None else None,
                "limits": asdict(limits)}

    @app.post("/api/classify")
    def classify(image: Optional[UploadFile] = File(None), labels: Optional[str] = Form(None)):
        t0 = time.perf_counter()
        names = check_labels(labels, limits)
        if image is None:
            raise ApiError(400, "image", "image: no file uploaded (multipart field 'image')")
        data = image.file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise ApiError(413, "image", f"image: larger than the limit of {limits.max_upload_bytes} bytes")
        name = image.filename or "upload"
        try:
            pil = decode(data, limits, budget, name, upload_side)
        except BadImage as e:
            if e.reason == BOMB:
                raise ApiError(413, "image", f"image: {name} has more pixels than the limit of "
                                             f"{limits.max_pixels} ({e.detail})") from None
            raise ApiError(400, "image", f"image: {e}") from None
        probs = lit.probabilities(pil, names)[0]  # (C,)
        order = probs.argsort(descending=True, stable=True).tolist()
        ranked = [{"label": names[j], "probability": float(probs[j])} for j in order]
        return {"image": name, "label": ranked[0]["label"], "ranked": ranked,
                "probabilities": lit.probability_kind,  # softmax over the labels, or sigmoid per label
                "ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.get("/api/search")
    def search(q: Optional[str] = None, k: Optional[str] = None):
        t0 = time.perf_counter()
        if index is None:
            raise ApiError(404, "q", "no index: start the server with `littune serve --model M --index INDEX`")
        query, k_int = check_query(q, k, limits)
        hits = index.search(query, k=k_int)
        return {"query": query, "k": k_int, "n_images": len(index),
                "results": [{"rank": r, "index": h.position, "key": h.key, "score": h.score,
                             "thumbnail": f"/thumb/{h.position}"} for r, h in enumerate(hits, 1)],
                "ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.get("/thumb/{i:int}")
    def thumb(i: int):
        if thumbs is None:
            raise ApiError(404, "i", "no index loaded")
        return Response(thumbs.get(i), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
