"""HTTP edges: HEAD wherever GET works, and JSON (not uvicorn's plain text) for a malformed request.

``HeadAsGet`` runs a HEAD request as a GET and drops the body it sends (its headers, the length
included, stay), as RFC 9110 section 9.3.2 asks. ``JsonErrorH11`` is uvicorn's h11 protocol whose
400 for a request it cannot parse is ``{"error", "field"}`` like every other answer of the server.
"""
from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadAsGet:
    """ASGI middleware: HEAD answers what GET would, without the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest follows; only the last (empty) message ends the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)


class JsonErrorH11(H11Protocol):
    """uvicorn's h11 protocol with a JSON body on its own 400 (a request line or header it cannot parse)."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"malformed HTTP request: {msg}", "field": "request"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()
