"""Live figures per model (served from memory) and an endpoint's probe history (from the store).

Model ids contain `/` (`meta-llama/llama-3.2-1b-instruct`), hence `{model_id:path}`; the fixed
suffixes (`/live`, `/endpoints/{provider}/probes`) keep the two routes apart.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from api.caching import cached_json, live_entry, live_key, render_live
from api.deps import LiveDep, RenderedDep, SettingsDep, StoreDep, WindowsDep
from api.schemas import ErrorOut, ModelListOut, ModelLiveOut, ModelOut, ProbeListOut, ProbeResultOut
from monitor.windows import WINDOWS

router = APIRouter(prefix="/v1/models", tags=["models"])

# Documentation examples (the contract's sample config); schemathesis also sends them.
EXAMPLE_MODEL_ID = "meta-llama/llama-3.2-1b-instruct"
EXAMPLE_PROVIDER = "Cloudflare"
ModelIdPath = Annotated[str, Path(description="Model id; may contain '/'.", examples=[EXAMPLE_MODEL_ID])]
ProviderPath = Annotated[str, Path(description="Provider name, exactly as configured.", examples=[EXAMPLE_PROVIDER])]
NOT_FOUND = {status.HTTP_404_NOT_FOUND: {"model": ErrorOut, "description": "Unknown model or provider"}}
CACHED = {status.HTTP_304_NOT_MODIFIED: {"description": "The client's copy (If-None-Match) is current"}}
DATABASE_DOWN = {status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorOut, "description": "Database unavailable; retry"}}


class Profile(IntEnum):
    """Workload profiles (approximate prompt tokens), as `input_tokens` in the catalog."""

    short = 100
    medium = 1000
    long = 10000


WindowName = Literal["24h", "7d", "30d", "90d"]
assert set(WindowName.__args__) == set(WINDOWS)  # type: ignore[attr-defined]
WindowQuery = Annotated[
    WindowName | None,
    Query(description="Trailing window of the figures (default: the service's live window, 24h)."),
]
ProfileQuery = Annotated[
    Profile | None,
    Query(description="Workload profile of the figures (prompt tokens); default: each endpoint's configured one."),
]


def figure_identity(window: str | None, input_tokens: Profile | None) -> tuple[float | None, int | None]:
    return (None if window is None else WINDOWS[window]), (None if input_tokens is None else int(input_tokens))


def unknown_model(model_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model: {model_id}")


@router.get(
    "", response_model=ModelListOut, responses={**CACHED, **DATABASE_DOWN}, summary="Every model with its live figures"
)
async def list_models(
    request: Request, live: LiveDep, windows: WindowsDep, rendered: RenderedDep,
    window: WindowQuery = None, input_tokens: ProfileQuery = None,
) -> Response:
    window_s, tokens = figure_identity(window, input_tokens)
    if window_s is None and tokens is None:
        models = live.models()
        key = "models"
    else:
        models = await windows.models(window_s, tokens)
        key = f"models?window={window or ''}&input_tokens={tokens or ''}"
    return rendered.respond(request, rendered.get(
        key,
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
    responses={**NOT_FOUND, **CACHED, **DATABASE_DOWN},
    summary="A model's live figures",
)
async def model_live(
    request: Request, model_id: ModelIdPath, live: LiveDep, windows: WindowsDep, rendered: RenderedDep,
    window: WindowQuery = None, input_tokens: ProfileQuery = None,
) -> Response:
    window_s, tokens = figure_identity(window, input_tokens)
    if window_s is None and tokens is None:
        entry = live_entry(model_id, live, rendered)
    else:
        figures = await windows.model(model_id, window_s, tokens)
        entry = None if figures is None else render_live(rendered, live_key(model_id, window, tokens), figures)
    if entry is None:
        raise unknown_model(model_id)
    return rendered.respond(request, entry)
