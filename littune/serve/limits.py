"""What the web app accepts, and an ASGI middleware that refuses an oversized body before reading it."""
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
    max_concurrency: int = 64  # open connections; uvicorn answers 503 beyond it


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
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _reject(send, self.limit)


async def _reject(send, limit: int) -> None:
    body = json.dumps({"error": f"request body larger than the limit of {limit} bytes", "field": "image"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
