"""Process health: liveness, readiness, and the Prometheus exposition of the injected registry."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client.exposition import choose_encoder

from api.deps import ReadinessDep, RegistryDep
from api.schemas import HealthOut, ReadinessOut

router = APIRouter(tags=["health"])
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


@router.get(
    "/metrics",
    response_class=Response,
    responses={status.HTTP_200_OK: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus exposition",
)
async def metrics(request: Request, registry: RegistryDep) -> Response:
    # Prometheus asks for OpenMetrics when it can; the classic text format otherwise.
    encode, content_type = choose_encoder(request.headers.get("accept"))
    return Response(encode(registry), media_type=content_type, headers=NO_STORE)
