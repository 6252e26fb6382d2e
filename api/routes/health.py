"""Process health: liveness, readiness, and the Prometheus exposition of the injected registry
(rendered by `api.exposition`, off the event loop; behind a bearer token when
`settings.metrics_token` is set)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from api.deps import ExpositionDep, ReadinessDep
from api.schemas import HealthOut, ReadinessOut

router = APIRouter(tags=["health"])
# Its own router: `create_app` puts it behind the metrics token when one is configured.
metrics_router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", response_model=HealthOut, summary="The process is up")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


def is_ready(checks: dict[str, Any]) -> bool:
    """Ready unless a check reports False. None means "not applicable here" (e.g. no scheduler in
    an API-only process); other values (counts, lag) are informational, so 0 is not a failure."""
    return not any(value is False for value in checks.values())


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "A check failed", "model": ReadinessOut}},
    summary="Database reachable and scheduler running",
)
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    try:
        checks = dict(await readiness())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("readiness check raised")
        checks = {"readiness": False}
    code = status.HTTP_200_OK if is_ready(checks) else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(checks, status_code=code, headers=NO_STORE)


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={status.HTTP_200_OK: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus exposition",
)
async def metrics(request: Request, exposition: ExpositionDep) -> Response:
    # Prometheus asks for OpenMetrics when it can (the classic text format otherwise) and gzip.
    rendered = await exposition.get(
        accept=request.headers.get("accept"), accept_encoding=request.headers.get("accept-encoding")
    )
    headers = {**NO_STORE, "Vary": "Accept-Encoding"}
    if rendered.content_encoding is not None:
        # Already compressed in the worker thread; the gzip middleware passes encoded bodies through.
        headers["Content-Encoding"] = rendered.content_encoding
    return Response(rendered.body, media_type=rendered.content_type, headers=headers)
