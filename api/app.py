"""Builds the FastAPI application from resources passed in; owns routing and middleware order.

In front of everything, `MonitorAPI` lets the live-figures fast path (`api.fast_path`) answer
`GET /v1/models/{id}/live` for known models. Middleware, outermost first: response headers
(security headers, gzip-aware ETag) -> CORS (GET only, no credentials) -> gzip -> internal-error
guard -> routes. The error guard sits inside gzip and CORS so a 500 gets the same treatment as any
other response.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from api.caching import RenderedBodies
from api.deps import AdminHooks, DefaultWindows, LiveView, Readiness, WindowedView, require_metrics_token, secret_of
from api.exposition import MetricsExposition
from api.fast_path import LiveFiguresFastPath
from api.middleware import InternalErrorMiddleware, ResponseHeadersMiddleware, hardened_headers
from api.routes import admin as admin_routes
from api.pages.fast_path import PagesFastPath
from api.pages.routes import router as pages_router
from api.routes import badge, health, history, incidents, models
from monitor.live import LiveFigures
from monitor.metrics import installed_version
from monitor.settings import Settings
from monitor.store import Store, StoreUnavailableError
from monitor.windows import WindowFigures

log = logging.getLogger(__name__)

GZIP_MINIMUM_BYTES = 500
CORS_PREFLIGHT_MAX_AGE_S = 600


class MonitorAPI(FastAPI):
    """FastAPI with the live-figures fast path asked first (None: every request takes the stack)."""

    fast_path: LiveFiguresFastPath | PagesFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None:
            reply = self.fast_path.answer(scope)
            if reply is not None:
                await self.fast_path.send(reply, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    *,
    settings: Settings,
    store: Store,
    live: LiveView,
    registry: CollectorRegistry,
    readiness: Readiness,
    admin: AdminHooks | None = None,
    lifespan: Callable[[FastAPI], Any] | None = None,
    fast_path: bool = True,
    windows: WindowedView | None = None,
) -> MonitorAPI:
    """The API over injected resources; the admin routes exist only when `settings.admin_token`
    is set, and /metrics asks for `settings.metrics_token` when that is set. `fast_path=False`
    serves live figures only through the documented route (tests compare)."""
    app = MonitorAPI(
        title="llm-endpoint-monitor",
        version=installed_version(),
        description="Live time-to-first-token and throughput of LLM provider endpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.live = live
    if windows is None:  # other windows and profiles need the samples LiveFigures holds
        windows = (
            WindowFigures(live, store, cache_s=settings.window_cache_s)
            if isinstance(live, LiveFigures) else DefaultWindows(live)
        )
    app.state.windows = windows
    rendered = RenderedBodies(
        max_age_s=settings.cache_max_age_s, gzip_minimum_bytes=GZIP_MINIMUM_BYTES, finish_headers=hardened_headers
    )
    app.state.rendered = rendered
    app.state.exposition = MetricsExposition(registry, max_age_s=settings.metrics_cache_s)
    app.state.readiness = readiness
    app.state.admin = admin

    app.add_exception_handler(StoreUnavailableError, database_unavailable)
    app.include_router(badge.router)  # before models: its suffix is more specific than {model_id:path}
    app.include_router(models.router)
    app.include_router(pages_router)
    app.include_router(incidents.router)
    app.include_router(history.router)
    app.include_router(health.router)
    metrics_guard = [Depends(require_metrics_token)] if secret_of(settings.metrics_token) is not None else []
    app.include_router(health.metrics_router, dependencies=metrics_guard)
    if secret_of(settings.admin_token) is not None:
        app.include_router(admin_routes.router)

    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES)
    cors_options = cors_options_of(settings)
    if cors_options:
        app.add_middleware(CORSMiddleware, **cors_options)
    app.add_middleware(ResponseHeadersMiddleware)
    if fast_path:
        app.fast_path = PagesFastPath(state=app.state, live=live, inner=LiveFiguresFastPath(  # badge and embed, then /live
            live=live, rendered=rendered, cors_options=cors_options, windows=windows))
    return app


DATABASE_RETRY_AFTER_S = 5


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A history query while the database is down: 503, which clients may retry (the live
    figures are served from memory and keep working)."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "database unavailable"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def cors_options_of(settings: Settings) -> dict[str, Any] | None:
    """The CORS policy, shared by the middleware stack and the fast path; None without origins."""
    origins = list(settings.cors_origins)
    if not origins:
        return None
    return {
        "allow_origins": origins,
        "allow_methods": ["GET"],
        "allow_credentials": False,
        "allow_headers": ["If-None-Match"],  # scripted revalidation; browsers add it anyway
        "expose_headers": ["ETag"],
        "max_age": CORS_PREFLIGHT_MAX_AGE_S,
    }
