"""The live-figures fast path: `GET /v1/models/{id}/live` answered before FastAPI's stack.

This is the catalog's hot path (one request per page view). `api.app.MonitorAPI` asks
`LiveFiguresFastPath.answer` first; for a known model it returns the reply straight from the
pre-rendered bodies, whose headers already went through the security-header pass and whose gzip
form was compressed once per figures change. When CORS is configured, the reply goes through a
Starlette CORS middleware with the application's policy, so the CORS headers (and `Vary: Origin`,
which it adds even without an `Origin`) are the application's.
`?window=` and `?input_tokens=` figures are answered here when `WindowFigures` has them
cached (same body and ETag key as the route's); an uncached or invalid query goes on to the route.
Everything else, an unknown model (the route's 404), HEAD, or a failure here, goes on to the
application. `tests/api/test_fast_path.py` checks the replies equal the documented route's.

Skipped for these requests, by design: FastAPI's own request layers (its telemetry hooks and body
limit; a GET of this path has no body) and the per-request header and gzip work of our middleware.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from urllib.parse import parse_qsl

from api.caching import RenderedBodies, Reply, live_entry, live_key, render_live
from monitor.windows import PROFILES, WINDOWS

log = logging.getLogger(__name__)

LIVE_PREFIX = "/v1/models/"
LIVE_SUFFIX = "/live"
_REPLY_KEY = "llm_monitor.reply"


async def _send_reply(scope: Scope, receive: Receive, send: Send) -> None:
    reply: Reply = scope[_REPLY_KEY]
    # A fresh header list per request: CORS edits the start message's list in place.
    await send({"type": "http.response.start", "status": reply.status, "headers": list(reply.headers)})
    await send({"type": "http.response.body", "body": reply.body})


class LiveFiguresFastPath:
    def __init__(
        self, *, live: Any, rendered: RenderedBodies, cors_options: dict[str, Any] | None, windows: Any = None
    ) -> None:
        self._live = live
        self._windows = windows
        self._rendered = rendered
        self._cors = CORSMiddleware(_send_reply, **cors_options) if cors_options else None

    def answer(self, scope: Scope) -> Reply | None:
        """The reply to a live-figures request for a known model; None for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not (path.startswith(LIVE_PREFIX) and path.endswith(LIVE_SUFFIX)
                and len(path) > len(LIVE_PREFIX) + len(LIVE_SUFFIX)):
            return None
        try:
            model_id = path[len(LIVE_PREFIX) : -len(LIVE_SUFFIX)]
            query: bytes = scope.get("query_string", b"")
            if not query:
                entry = live_entry(model_id, self._live, self._rendered)
            else:
                entry = self._window_entry(model_id, query)
            if entry is None:
                return None
            # The first value of each header, as Starlette's Headers.get reads it (ASGI names are
            # lower-case).
            if_none_match = accept_encoding = None
            for name, value in scope["headers"]:
                if name == b"if-none-match" and if_none_match is None:
                    if_none_match = value.decode("latin-1")
                elif name == b"accept-encoding" and accept_encoding is None:
                    accept_encoding = value.decode("latin-1")
            return self._rendered.reply(entry, if_none_match=if_none_match, accept_encoding=accept_encoding)
        except Exception:
            log.exception("live-figures fast path failed; serving through the application")
            return None

    def _window_entry(self, model_id: str, query: bytes) -> Any:
        """`?window=` / `?input_tokens=` figures when they are cached; None (the application
        answers: computes them, or says 422) for anything else."""
        if self._windows is None:
            return None
        params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        names = [name for name, _ in params]
        values = dict(params)
        if len(names) != len(values) or not set(values) <= {"window", "input_tokens"}:
            return None
        window = values.get("window")
        tokens_text = values.get("input_tokens")
        if window is not None and window not in WINDOWS:
            return None
        if tokens_text is not None and tokens_text not in {str(p) for p in PROFILES}:
            return None
        tokens = None if tokens_text is None else int(tokens_text)
        figures = self._windows.cached(model_id, None if window is None else WINDOWS[window], tokens)
        if figures is None:
            return None
        return render_live(self._rendered, live_key(model_id, window, tokens), figures)

    async def send(self, reply: Reply, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_REPLY_KEY] = reply
        if self._cors is not None:
            await self._cors(scope, receive, send)
        else:
            await _send_reply(scope, receive, send)
