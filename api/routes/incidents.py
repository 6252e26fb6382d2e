"""`GET /v1/incidents`: stored incidents, newest first, read from the database (so API-only
replicas see the incidents the schedulers opened).

Filters: `model`, `provider` (exact), `open=true|false`, `since` (ISO 8601 with a time zone:
incidents open at some moment at or after it), `limit` (1-1000, default 100). A bad value gets
422 with the parameter named.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import Field

from api.caching import cached_json
from api.deps import SettingsDep, StoreDep
from api.schemas import ErrorOut, UtcDatetime, _Out
from monitor.endpoint_state import Incident

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


class IncidentOut(_Out):
    id: int
    model: str = Field(description="Model id.")
    provider: str = Field(description="Provider name as configured.")
    started_at: UtcDatetime = Field(description="Start of the outage: its first failed probe.")
    detected_at: UtcDatetime = Field(description="When it was declared down by quorum.")
    resolved_at: UtcDatetime | None = Field(description="Its first success by quorum; null while open.")
    error_kinds: dict[str, int] = Field(description="Provider failures during the incident, per error_kind.")
    locations: list[str] = Field(description="Locations whose probes failed during the incident.")

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls(
            id=incident.id, model=incident.model, provider=incident.provider,
            started_at=incident.started_at, detected_at=incident.detected_at,
            resolved_at=incident.resolved_at, error_kinds=dict(incident.error_kinds),
            locations=list(incident.locations),
        )


class IncidentListOut(_Out):
    data: list[IncidentOut] = Field(description="Newest first.")


def parse_since(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp with a time zone, as UTC; 422 naming `since` otherwise."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())  # RFC 3339 also allows a lower-case t and z
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or moment.utcoffset() is None:
        raise HTTPException(422, "since: expected an ISO 8601 timestamp with a time zone, e.g. 2026-12-01T00:00:00Z")
    return moment.astimezone(timezone.utc)


@router.get(
    "",
    response_model=IncidentListOut,
    responses={
        422: {"description": "A query parameter is invalid (named)"},
        status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorOut, "description": "Database unavailable; retry"},
    },
    summary="Incidents, newest first",
)
async def list_incidents(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    model: Annotated[str | None, Query(max_length=512, description="Only this model id.")] = None,
    provider: Annotated[str | None, Query(max_length=512, description="Only this provider.")] = None,
    open: Annotated[bool | None, Query(description="true: open only; false: resolved only.")] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64, json_schema_extra={"format": "date-time"},
            description="ISO 8601 / RFC 3339 with a time zone (2026-12-01T00:00:00Z): incidents open at or after it.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 100,
) -> Response:
    incidents = await store.list_incidents(
        model_id=model, provider=provider, open=open, since=parse_since(since), limit=limit,
    )
    payload = IncidentListOut(data=[IncidentOut.of(incident) for incident in incidents])
    return cached_json(request, payload, max_age_s=min(settings.cache_max_age_s, 15))
