"""The badge and the embed answered in front of FastAPI's stack, as `/live` is (api/fast_path.py).

Both are hot paths of the catalog site (an `<img>` and an `<iframe>` per page view), so like the
live figures they are served from prebuilt bytes: `PagesFastPath.answer` recognises
`GET /v1/models/{id}/badge.svg?metric=M` and `GET /embed/models/{id}[?theme=T]` for a known model
and a query the route would accept as it is, and replies with the same body and the same
hardened headers the route sends through the middleware stack (the body cache is the route's:
`badge_body`, `Pages.embed_body`). CORS goes through the live fast path's CORS pass, so the
headers are the application's. Anything else (unknown model, another query, HEAD, an error here)
goes to the live-figures fast path and then the application, which gives the route's 404/422.
`tests/pages/test_fast_path.py` checks the replies equal the routes'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from starlette.types import Receive, Scope, Send

from api.caching import Reply
from api.fast_path import LiveFiguresFastPath
from api.pages.rendering import Body
from api.pages.routes import pages_of
from api.pages.view import relative_time_changes_at
from api.routes.badge import BadgeMetric, badge_body

log = logging.getLogger(__name__)

BADGE_PREFIX, BADGE_SUFFIX = "/v1/models/", "/badge.svg"
EMBED_PREFIX = "/embed/models/"
METRICS = {f"metric={m.value}".encode(): m.value for m in BadgeMetric}
METRICS[b""] = BadgeMetric.ttft.value
THEMES = {b"": None, b"theme=light": "light", b"theme=dark": "dark"}


class PagesFastPath:
    def __init__(self, *, state: Any, live: Any, inner: LiveFiguresFastPath) -> None:
        self._state = state
        self._live = live
        self._inner = inner
        # (kind, model id, metric or theme) -> (figures, catalog, valid until, body)
        self._bodies: dict[tuple[Any, ...], tuple[Any, Any, datetime | None, Body]] = {}

    def answer(self, scope: Scope) -> Reply | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        try:
            body = None
            if path.startswith(BADGE_PREFIX) and path.endswith(BADGE_SUFFIX):
                metric = METRICS.get(scope.get("query_string", b""))
                model_id = path[len(BADGE_PREFIX) : -len(BADGE_SUFFIX)]
                if metric is not None and model_id:
                    body = self._remembered(
                        ("badge", model_id, metric),
                        lambda: badge_body(self._state, self._live, model_id, metric, self._state.settings.cache_max_age_s),
                        None,
                    )
            elif path.startswith(EMBED_PREFIX):
                query = scope.get("query_string", b"")
                model_id = path[len(EMBED_PREFIX):]
                if query in THEMES and model_id:
                    body = self._remembered(
                        ("embed", model_id, THEMES[query]),
                        lambda: pages_of(self._state).embed_body(self._live, self._state.rendered, model_id, THEMES[query]),
                        model_id,
                    )
            else:
                return self._inner.answer(scope)
            if body is None:
                return None
            if_none_match = accept_encoding = None
            for name, value in scope["headers"]:
                if name == b"if-none-match" and if_none_match is None:
                    if_none_match = value.decode("latin-1")
                elif name == b"accept-encoding" and accept_encoding is None:
                    accept_encoding = value.decode("latin-1")
            return body.reply(if_none_match=if_none_match, accept_encoding=accept_encoding)
        except Exception:
            log.exception("pages fast path failed; serving through the application")
            return None

    def _remembered(self, key: tuple[Any, ...], make: Callable[[], Body | None], timed_model: str | None) -> Body | None:
        """The body `make()` gives, remembered while the model's figures object and the catalog
        are the same objects (both are replaced, never changed, when anything changes) and, for
        `timed_model`, until its relative "updated" time would read differently."""
        figures, catalog = self._live.model(key[1]), getattr(self._live, "catalog", None)
        now = datetime.now(timezone.utc) if timed_model is not None else None
        entry = self._bodies.get(key)
        if entry is not None and entry[0] is figures and entry[1] is catalog and (
            now is None or (entry[2] is not None and now < entry[2])
        ):
            return entry[3]
        body = make()
        if body is not None and figures is not None:
            if len(self._bodies) > 8 * max(1, len(getattr(catalog, "models", ()))):
                self._bodies.clear()  # models left the catalog: start over
            changes_at = None if now is None else relative_time_changes_at(figures.updated_at, now)
            self._bodies[key] = (figures, catalog, changes_at, body)
        return body

    async def send(self, reply: Reply, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner.send(reply, scope, receive, send)


__all__ = ["PagesFastPath"]
