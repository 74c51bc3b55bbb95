"""What the web app accepts, and an ASGI middleware that refuses an oversized body before reading it.

Resident memory of a server is bounded by these numbers (README, "The server's limits"): at most
``max_active`` requests run at once, each holding one upload (``max_upload_bytes``), and at most
``pixel_budget`` pixels are being decoded at once over all of them; up to ``max_queue`` more
requests wait without their bodies being read, and any beyond get 503 JSON with Retry-After.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class ServeLimits:
    max_upload_bytes: int = 10 * 1024 * 1024  # one uploaded image file
    form_overhead_bytes: int = 64 * 1024  # multipart headers and the labels field, on top of the image
    max_pixels: int = 40_000_000  # checked from the image header, before decoding
    max_labels: int = 50
    max_label_chars: int = 100
    max_query_chars: int = 300
    max_k: int = 100
    thumb_px: int = 256
    thumb_cache: int = 512  # thumbnails kept in memory (~10 KB each)
    max_active: int = 8  # requests running at once (inference is serialised by the model's lock anyway)
    max_queue: int = 120  # requests waiting for a slot, bodies unread (<= 64 KB each); beyond: 503 JSON at once
    queue_timeout_s: float = 30.0  # a request that waited this long for a slot (or for pixels) gets 503
    retry_after_s: int = 2  # the Retry-After header of a 503
    pixel_budget: int = 48_000_000  # pixels decoded at once over all requests (>= max_pixels)
    decode_side: int = 512  # uploads are decoded with the shorter side no smaller than this (JPEG draft)

    def __post_init__(self):
        for key in ("max_upload_bytes", "max_pixels", "max_labels", "max_k", "max_active", "pixel_budget",
                    "decode_side", "thumb_px"):
            if getattr(self, key) < 1:
                raise ValueError(f"serve limits: {key} must be >= 1, got {getattr(self, key)}")
        if self.max_queue < 0 or not self.queue_timeout_s > 0:
            raise ValueError("serve limits: max_queue must be >= 0 and queue_timeout_s > 0")
        if self.pixel_budget < self.max_pixels:
            raise ValueError(f"serve limits: pixel_budget ({self.pixel_budget}) is below max_pixels "
                             f"({self.max_pixels}): the largest accepted image could never be decoded")


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for a request whose Content-Length (or streamed body) exceeds ``limit`` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _reject(send, self.limit)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # chunked upload without a length
                raise BodyTooLarge()
            return message

        async def watched(message):
            nonlocal started
            if seen > self.limit:  # the app caught BodyTooLarge itself (FastAPI answers a failed form
                if message["type"] == "http.response.start":  # read with 400): its answer becomes the 413
                    await _reject(send, self.limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _reject(send, self.limit)


async def _reject(send, limit: int) -> None:
    await send_json(send, 413, f"request body larger than the limit of {limit} bytes", "image")


async def send_json(send, status: int, error: str, field: str | None, headers: dict | None = None) -> None:
    """An ``{"error", "field"}`` answer from an ASGI middleware (the app's own errors look the same)."""
    body = json.dumps({"error": error, "field": field}).encode()
    extra = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + extra})
    await send({"type": "http.response.body", "body": body})
