"""ASGI middleware: response hardening headers and the generic 500 handler.

- `ResponseHeadersMiddleware` (outermost): security headers on every response; marks the ETag of a
  gzip-coded body as such; folds duplicate `Vary` tokens added by several layers.
  `hardened_headers` applies the same pass once to the prebuilt headers of rendered bodies.
- `InternalErrorMiddleware` (innermost, inside gzip and CORS): turns an unhandled exception into
  `500 {"detail": "internal error"}` (no traceback leaves the process) and logs it server side.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.caching import RawHeaders, gzip_variant

log = logging.getLogger(__name__)

# JSON needs no sub-resources at all; nothing may frame it.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The interactive docs pages (FastAPI's Swagger UI / ReDoc) load their script and style from a
# CDN and use inline bootstrapping; everything else stays closed.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class _HTTPMiddleware:
    """Pure ASGI middleware that acts on HTTP requests only; lifespan and websocket pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle_http(scope, receive, send)

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ResponseHeadersMiddleware(_HTTPMiddleware):
    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                harden(message)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_SECURITY_RAW = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_JSON_CSP_RAW = JSON_CSP.encode()
_DOCS_CSP_RAW = DOCS_CSP.encode()


def harden(message: Message) -> None:
    """Add the security headers to a response start message, in one pass over its raw headers
    (this runs on every response, the hot live-figures path included)."""
    raw = list(message.get("headers", ()))
    message["headers"] = raw
    present: dict[bytes, bytes] = {}
    vary: list[bytes] = []
    for name, value in raw:
        name = name.lower()
        present.setdefault(name, value)
        if name == b"vary":
            vary.append(value)
    csp = present.get(b"content-security-policy")
    # A page that names its own frame-ancestors (the embeddable card) must not also be denied
    # framing by X-Frame-Options.
    framable = csp is not None and b"frame-ancestors" in csp and b"frame-ancestors 'none'" not in csp
    for name, value in _SECURITY_RAW:
        if name not in present and not (framable and name == b"x-frame-options"):
            raw.append((name, value))
    if csp is None:
        is_html = present.get(b"content-type", b"").startswith(b"text/html")
        raw.append((b"content-security-policy", _DOCS_CSP_RAW if is_html else _JSON_CSP_RAW))
    etag = present.get(b"etag")
    if etag and present.get(b"content-encoding") == b"gzip" and etag[:1] == b'"' and etag[-1:] == b'"':
        tagged = gzip_variant(etag.decode("latin-1")).encode("latin-1")
        raw[:] = [(n, tagged if n.lower() == b"etag" else v) for n, v in raw]
    if len(vary) > 1 or (vary and b"," in vary[0]):
        tokens: list[str] = []
        for value in vary:
            for token in value.decode("latin-1").split(","):
                token = token.strip()
                if token and token.lower() not in {t.lower() for t in tokens}:
                    tokens.append(token)
        raw[:] = [(n, v) for n, v in raw if n.lower() != b"vary"]
        raw.append((b"vary", ", ".join(tokens).encode("latin-1")))


def hardened_headers(raw: RawHeaders) -> RawHeaders:
    """`harden` applied to a prebuilt header list (rendered bodies are hardened once, not per request)."""
    message: Message = {"type": "http.response.start", "headers": list(raw)}
    harden(message)
    return tuple(message["headers"])


class InternalErrorMiddleware(_HTTPMiddleware):
    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise  # too late for a clean 500; the server closes the connection
            await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)

