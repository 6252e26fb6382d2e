"""Builds the FastAPI application from resources passed in; owns routing and middleware order.

Middleware, outermost first: response headers (security headers, gzip-aware ETag) -> CORS
(GET only, no credentials) -> live-figures fast path -> gzip -> internal-error guard -> routes.
The error guard sits inside gzip and CORS so a 500 gets the same treatment as any other response.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from prometheus_client import CollectorRegistry

from api.caching import RenderedBodies, max_age_of
from api.deps import AdminHooks, LiveView, Readiness, admin_token_of
from api.middleware import InternalErrorMiddleware, LiveFiguresFastPath, ResponseHeadersMiddleware
from api.routes import admin as admin_routes
from api.routes import health, models
from monitor.metrics import installed_version
from monitor.store import Store

GZIP_MINIMUM_BYTES = 500
CORS_PREFLIGHT_MAX_AGE_S = 600


def create_app(
    *,
    settings: Any,
    store: Store,
    live: LiveView,
    registry: CollectorRegistry,
    readiness: Readiness,
    admin: AdminHooks | None = None,
    lifespan: Callable[[FastAPI], Any] | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """The API over injected resources. `settings` needs `cors_origins`, `admin_token` and
    optionally `cache_max_age_s`; the admin routes exist only when `admin_token` is set.
    `fast_path=False` serves live figures only through the documented route (tests compare)."""
    app = FastAPI(
        title="llm-endpoint-monitor",
        version=installed_version(),
        description="Live time-to-first-token and throughput of LLM provider endpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.live = live
    app.state.rendered = RenderedBodies(max_age_s=max_age_of(settings), gzip_minimum_bytes=GZIP_MINIMUM_BYTES)
    app.state.registry = registry
    app.state.readiness = readiness
    app.state.admin = admin

    app.include_router(models.router)
    app.include_router(health.router)
    if admin_token_of(settings) is not None:
        app.include_router(admin_routes.router)

    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES)
    if fast_path:
        app.add_middleware(LiveFiguresFastPath)
    origins = list(getattr(settings, "cors_origins", None) or [])
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET"],
            allow_credentials=False,
            allow_headers=["If-None-Match"],  # scripted revalidation; browsers add it anyway
            expose_headers=["ETag"],
            max_age=CORS_PREFLIGHT_MAX_AGE_S,
        )
    app.add_middleware(ResponseHeadersMiddleware)
    return app
