"""Who may ask: a ``Host`` allow-list (against DNS rebinding) and an optional bearer token.

DNS rebinding: a web page on evil.example re-points its own name at 127.0.0.1, and the browser
then lets that page read this server's answers, with ``Host: evil.example``. Answering only the
names this server is reached by (the address it binds to, ``localhost``, ``127.0.0.1``, ``::1``,
and any given with ``--allow-host``) closes that door (400 for any other ``Host``).

A token (``--token``, or ``LITTUNE_TOKEN``) is asked of every request for data (``/api/*``,
``/thumb/*``) as ``Authorization: Bearer TOKEN`` (401 otherwise; the scheme name in any case).
The page and its static files hold no data and stay open: the page reads the token from its URL fragment
(``http://host:port/#token=TOKEN``, which browsers never send to the server) and sends it.
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from .limits import send_json

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
DOC_PATHS = ("/docs", "/openapi.json", "/docs/oauth2-redirect")


@dataclass(frozen=True)
class Access:
    """Which ``Host`` names are answered, the bearer token (None: none asked) and whether /docs exists."""

    hosts: tuple[str, ...] = LOOPBACK_NAMES
    token: str | None = None
    docs: bool = False

    @classmethod
    def for_bind(cls, bind: str, extra_hosts: tuple[str, ...] = (), token: str | None = None,
                 docs: bool = False) -> "Access":
        if not is_loopback(bind) and not token:
            raise ValueError(f"--host {bind} listens beyond this machine: give --token TOKEN (or set "
                             "LITTUNE_TOKEN) so only those who know it can use the server")
        if token is not None and len(token) < 8:
            raise ValueError("--token: at least 8 characters (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe())'`)")
        names = dict.fromkeys(_bare(h) for h in (bind, *LOOPBACK_NAMES, *extra_hosts))  # ordered, unique
        return cls(hosts=tuple(names), token=token, docs=docs)


def is_loopback(host: str) -> bool:
    if _bare(host) == "localhost":
        return True
    try:
        return ipaddress.ip_address(_bare(host)).is_loopback
    except ValueError:
        return False


def _bare(host: str) -> str:
    """'[::1]' -> '::1', 'Example.COM' -> 'example.com'."""
    return host.strip().strip("[]").lower()


def host_name(header: str) -> str:
    """A Host header's name without the port: 'localhost:8000' -> 'localhost', '[::1]:80' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def bearer(header: bytes) -> bytes:
    """The token of ``Authorization: Bearer TOKEN`` (the scheme in any case, RFC 7235), else b""."""
    scheme, _, token = header.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


class Guard:
    """ASGI middleware: 400 for a ``Host`` not allowed, 401 for a data request without the token."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access
        self._token = access.token.encode() if access.token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.access.hosts:
            return await send_json(send, 400, f"Host {host!r} is not served here (allowed: "
                                   f"{', '.join(self.access.hosts)}; add names with --allow-host)", "host")
        if self._token and not self._open(scope["path"]):
            if not hmac.compare_digest(bearer(headers.get(b"authorization", b"")), self._token):
                return await send_json(send, 401, "this server needs a token: send `Authorization: Bearer TOKEN` "
                                       "(the page: open http://HOST:PORT/#token=TOKEN)", "authorization",
                                       {"WWW-Authenticate": "Bearer"})
        return await self.app(scope, receive, send)

    def _open(self, path: str) -> bool:
        return (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
                or (self.access.docs and path in DOC_PATHS))
