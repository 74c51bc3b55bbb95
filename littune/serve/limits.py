"""What the web app accepts, and how JSON errors are sent from its ASGI middlewares.

Resident memory of a server is bounded by these numbers (docs/limits.md): at most ``max_active``
request bodies are held at once (``max_upload_bytes`` + ``form_overhead_bytes`` each), and at most
``pixel_budget`` pixels' worth of bytes are being decoded at once over all of them; up to
``max_queue`` more requests wait without their bodies being read, and any beyond get 503 JSON
with Retry-After.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


DECODE_BYTES_PER_PIXEL = 9


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
    body_timeout_s: float = 30.0  # a request body must arrive whole within this (else 408)
    max_per_client: int = 0  # slots one client address may hold per stage; 0: half of max_active (at least 1)

    def __post_init__(self):
        for key in ("max_upload_bytes", "max_pixels", "max_labels", "max_k", "max_active", "pixel_budget",
                    "decode_side", "thumb_px"):
            if getattr(self, key) < 1:
                raise ValueError(f"serve limits: {key} must be >= 1, got {getattr(self, key)}")
        if self.max_queue < 0 or not self.queue_timeout_s > 0 or not self.body_timeout_s > 0:
            raise ValueError("serve limits: max_queue must be >= 0, queue_timeout_s and body_timeout_s > 0")
        if self.max_per_client < 0:
            raise ValueError(f"serve limits: max_per_client must be >= 0 (0: half of max_active), "
                             f"got {self.max_per_client}")
        if self.max_per_client == 0:
            self.max_per_client = max(1, self.max_active // 2)
        if self.pixel_budget < self.max_pixels:
            raise ValueError(f"serve limits: pixel_budget ({self.pixel_budget}) is below max_pixels "
                             f"({self.max_pixels}): the largest accepted image could never be decoded")

    @property
    def decode_budget_bytes(self) -> int:
        """The decoding budget in bytes: ``pixel_budget`` pixels at 9 bytes each (an 8-bit palette image
        with transparency on its way to RGB; RGB takes 4). Each image is charged ``images.decode_bytes``."""
        return self.pixel_budget * DECODE_BYTES_PER_PIXEL

    @property
    def max_body_bytes(self) -> int:
        """A whole request body: one upload and the form around it."""
        return self.max_upload_bytes + self.form_overhead_bytes


async def send_json(send, status: int, error: str, field: str | None, headers: dict | None = None) -> None:
    """An ``{"error", "field"}`` answer from an ASGI middleware (the app's own errors look the same)."""
    body = json.dumps({"error": error, "field": field}).encode()
    extra = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + extra})
    await send({"type": "http.response.body", "body": body})
