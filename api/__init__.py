"""HTTP API: live figures, probe history, health, Prometheus exposition and admin hooks.

`api.app.create_app(...)` builds the FastAPI application from resources passed in (settings, store,
live figures, metrics registry, readiness check, admin hooks); nothing is created at import time.
Layout: `schemas` (response models), `deps` (injected resources as `Annotated` aliases and the
protocols they satisfy), `caching` (ETag / 304), `middleware` (headers, errors), `exposition`
(/metrics rendered off the event loop), `server` (uvicorn with connection limits), `routes/` (one
router per file).
"""
