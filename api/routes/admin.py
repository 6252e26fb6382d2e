"""Admin operations (probe an endpoint now, reload the config), behind a bearer token.

Mounted by `create_app` only when `settings.admin_token` is set, so with no token the paths do
not exist (404). With a token, a wrong or missing bearer gets 401; no hooks wired in gets 503.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from api.deps import AdminAuthDep, AdminHooksDep, LiveDep
from api.routes.health import NO_STORE
from api.routes.models import ModelIdPath, ProviderPath
from api.schemas import AdminOut, ErrorOut

UNAUTHORIZED = {status.HTTP_401_UNAUTHORIZED: {"model": ErrorOut, "description": "Missing or wrong token"}}
UNAVAILABLE = {status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorOut, "description": "No admin hooks here"}}

router = APIRouter(prefix="/admin", tags=["admin"], responses={**UNAUTHORIZED, **UNAVAILABLE})


@router.post(
    "/probe/{model_id:path}/{provider}",
    response_model=AdminOut,
    responses={status.HTTP_404_NOT_FOUND: {"model": ErrorOut, "description": "Unknown model or provider"}},
    summary="Probe one endpoint now, outside its schedule",
)
async def probe_now(
    model_id: ModelIdPath, provider: ProviderPath, _auth: AdminAuthDep, live: LiveDep, hooks: AdminHooksDep
) -> JSONResponse:
    providers = live.providers(model_id)
    if providers is None or provider not in providers:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown endpoint: {model_id} / {provider}")
    try:
        result = await hooks.probe_now(model_id, provider)
    except LookupError:  # removed by a concurrent reload
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown endpoint: {model_id} / {provider}") from None
    return JSONResponse(result, headers=NO_STORE)


@router.post("/reload", response_model=AdminOut, summary="Re-read the config file")
async def reload(_auth: AdminAuthDep, hooks: AdminHooksDep) -> JSONResponse:
    return JSONResponse(await hooks.reload(), headers=NO_STORE)
