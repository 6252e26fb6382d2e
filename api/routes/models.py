"""Live figures per model (served from memory) and an endpoint's probe history (from the store).

Model ids contain `/` (`meta-llama/llama-3.2-1b-instruct`), hence `{model_id:path}`; the fixed
suffixes (`/live`, `/endpoints/{provider}/probes`) keep the two routes apart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from api.caching import cached_json, live_entry
from api.deps import LiveDep, RenderedDep, SettingsDep, StoreDep
from api.schemas import ErrorOut, ModelListOut, ModelLiveOut, ModelOut, ProbeListOut, ProbeResultOut

router = APIRouter(prefix="/v1/models", tags=["models"])

# Documentation examples (the contract's sample config); schemathesis also sends them.
EXAMPLE_MODEL_ID = "meta-llama/llama-3.2-1b-instruct"
EXAMPLE_PROVIDER = "Cloudflare"
ModelIdPath = Annotated[str, Path(description="Model id; may contain '/'.", examples=[EXAMPLE_MODEL_ID])]
ProviderPath = Annotated[str, Path(description="Provider name, exactly as configured.", examples=[EXAMPLE_PROVIDER])]
NOT_FOUND = {status.HTTP_404_NOT_FOUND: {"model": ErrorOut, "description": "Unknown model or provider"}}
CACHED = {status.HTTP_304_NOT_MODIFIED: {"description": "The client's copy (If-None-Match) is current"}}
DATABASE_DOWN = {status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorOut, "description": "Database unavailable; retry"}}


def unknown_model(model_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model: {model_id}")


@router.get("", response_model=ModelListOut, responses=CACHED, summary="Every model with its live figures")
async def list_models(request: Request, live: LiveDep, rendered: RenderedDep) -> Response:
    models = live.models()
    return rendered.respond(request, rendered.get(
        "models",
        tuple(item for pair in models for item in pair),
        lambda: ModelListOut(
            data=[ModelOut(id=m.id, name=m.name, live=ModelLiveOut.of(figures)) for m, figures in models]
        ),
    ))


@router.get(
    "/{model_id:path}/endpoints/{provider}/probes",
    response_model=ProbeListOut,
    responses={**NOT_FOUND, **CACHED, **DATABASE_DOWN},
    summary="An endpoint's recent probes, newest first",
)
async def list_probes(
    request: Request,
    model_id: ModelIdPath,
    provider: ProviderPath,
    store: StoreDep,
    live: LiveDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many probes, newest first.")] = 50,
) -> Response:
    providers = live.providers(model_id)
    if providers is None:
        raise unknown_model(model_id)
    if provider not in providers:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown provider for {model_id}: {provider}")
    results = await store.recent_results(model_id, provider, limit)
    payload = ProbeListOut(data=[ProbeResultOut.of(result) for result in results])
    return cached_json(request, payload, max_age_s=settings.cache_max_age_s)


@router.get(
    "/{model_id:path}/live",
    response_model=ModelLiveOut,
    responses={**NOT_FOUND, **CACHED},
    summary="A model's live figures",
)
async def model_live(
    request: Request, model_id: ModelIdPath, live: LiveDep, rendered: RenderedDep
) -> Response:
    entry = live_entry(model_id, live, rendered)
    if entry is None:
        raise unknown_model(model_id)
    return rendered.respond(request, entry)
