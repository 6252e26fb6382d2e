"""An endpoint's long-range history and its SLO report, both served from the roll-ups
(`monitor/rollups.py`, `monitor/store/rollups.py`), so they keep working past raw retention.

- `GET /v1/models/{model_id}/endpoints/{provider}/history?from&to&step=1h|1d[&location][&input_tokens]`:
  one item per UTC bucket [t, t + step) with bucket_start(from) <= t < to, oldest first; a
  bucket without probes is present with `samples: 0` and null figures, so charts show gaps.
- `GET /v1/models/{model_id}/endpoints/{provider}/slo?objective=0.99&period=30d`: availability
  and error budget over the trailing period (accounting rules: `monitor.rollups.slo_report`).

Bad values get 422 in FastAPI's validation shape, naming the parameter
(`{"detail": [{"loc": ["query", "from"], "msg": ..., "type": "value_error"}]}`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from api.caching import cached_json
from api.deps import LiveDep, SettingsDep, StoreDep
from api.routes.models import CACHED, DATABASE_DOWN, NOT_FOUND, ModelIdPath, ProviderPath, unknown_model
from api.schemas import UtcDatetime
from monitor.catalog.schema import parse_duration
from monitor.rollups import DAY, HOUR, STEPS, BucketAggregate, bucket_start, bucket_starts, slo_report

router = APIRouter(prefix="/v1/models", tags=["history"])

# At most this many buckets per answer: 100 days of hours, 10 years of days.
MAX_BUCKETS = {HOUR: 2400, DAY: 3660}
DEFAULT_SPAN_S = {HOUR: 86400, DAY: 90 * 86400}
SLO_MIN_PERIOD_S = HOUR
SLO_MAX_PERIOD_S = 3660 * DAY
# Periods up to this long are summed over hourly roll-ups (the period starts on an hour); longer
# ones over daily roll-ups (it starts on a UTC midnight).
SLO_HOURLY_UP_TO_S = 31 * DAY
LOCATION_PATTERN = r"^[a-z0-9-]{1,32}$"


class _Out(BaseModel):
    # `from` / `to` are Python keywords: the fields are `start` / `end`, serialised by alias.
    model_config = ConfigDict(frozen=True, serialize_by_alias=True, populate_by_name=True)


class HistoryBucketOut(_Out):
    t: UtcDatetime = Field(description="Bucket start (UTC); the bucket is [t, t + step).")
    samples: int = Field(description="Scheduled probes in the bucket, every outcome (maintenance included).")
    ok: int
    failed: int = Field(description="Failed scheduled probes outside maintenance, rate_limited not included.")
    rate_limited: int
    maintenance: int = Field(description="Scheduled probes inside a maintenance window (in no other count).")
    uptime: float | None = Field(description="ok / (ok + failed); null without either.")
    ttft_ms_p5: float | None
    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    ttft_samples: int = Field(description="Probes behind the TTFT quantiles.")
    throughput_tps_p5: float | None
    throughput_tps_p50: float | None
    throughput_tps_p95: float | None
    throughput_samples: int = Field(description="Probes behind the throughput quantiles.")

    @classmethod
    def of(cls, t: datetime, bucket: BucketAggregate | None) -> HistoryBucketOut:
        bucket = bucket or BucketAggregate()
        counts = bucket.counts
        return cls(
            t=t, samples=bucket.samples, ok=counts["ok"], failed=bucket.failed,
            rate_limited=counts["rate_limited"], maintenance=counts["maintenance"], uptime=bucket.uptime,
            ttft_ms_p5=bucket.ttft_ms(0.05), ttft_ms_p50=bucket.ttft_ms(0.5), ttft_ms_p95=bucket.ttft_ms(0.95),
            ttft_samples=sum(bucket.ttft_bins.values()),
            throughput_tps_p5=bucket.throughput_tps(0.05), throughput_tps_p50=bucket.throughput_tps(0.5),
            throughput_tps_p95=bucket.throughput_tps(0.95), throughput_samples=sum(bucket.tps_bins.values()),
        )


class HistoryOut(_Out):
    step: str
    start: UtcDatetime = Field(serialization_alias="from", description="Start of the first bucket.")
    end: UtcDatetime = Field(serialization_alias="to", description="The requested end (exclusive).")
    location: str | None
    input_tokens: int | None
    data: list[HistoryBucketOut]


class ExcludedOut(_Out):
    rate_limited: int
    maintenance: int
    config_error: int


class SLOOut(_Out):
    objective: float
    period_s: float
    start: UtcDatetime = Field(serialization_alias="from")
    end: UtcDatetime = Field(serialization_alias="to")
    availability: float | None = Field(description="good / (good + bad); null without either.")
    good: int
    bad: int
    excluded: ExcludedOut
    error_budget_remaining: float | None = Field(
        description="1 - bad / ((1 - objective) * (good + bad)): 1 untouched, 0 spent, below 0 overspent."
    )


def invalid(parameter: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", parameter), "msg": message, "input": value}]
    )


def parse_instant(parameter: str, text: str) -> datetime:
    """ISO 8601; a value without an offset is read as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise invalid(parameter, "not an ISO 8601 date-time (e.g. 2026-12-01T00:00:00Z)", text) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise invalid(parameter, "date-time out of range", text) from None


async def _check_endpoint(live: Any, model_id: str, provider: str) -> None:
    providers = live.providers(model_id)
    if providers is None:
        raise unknown_model(model_id)
    if provider not in providers:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown provider for {model_id}: {provider}")


def _now() -> datetime:
    return datetime.now(UTC)


@router.get(
    "/{model_id:path}/endpoints/{provider}/history",
    response_model=HistoryOut,
    response_model_by_alias=True,
    responses={**NOT_FOUND, **CACHED, **DATABASE_DOWN},
    summary="An endpoint's history per hour or day, from the roll-ups",
)
async def endpoint_history(
    request: Request,
    model_id: ModelIdPath,
    provider: ProviderPath,
    store: StoreDep,
    live: LiveDep,
    settings: SettingsDep,
    start: Annotated[str | None, Query(alias="from", description="ISO 8601 (UTC when no offset); default: `to` minus 24 h (1h) or 90 d (1d).")] = None,
    end: Annotated[str | None, Query(alias="to", description="ISO 8601, exclusive; default now.")] = None,
    step: Annotated[str, Query(description="Bucket length: 1h or 1d (UTC boundaries).")] = "1h",
    location: Annotated[str | None, Query(pattern=LOCATION_PATTERN, description="One location only (default: all merged).")] = None,
    input_tokens: Annotated[int | None, Query(ge=1, le=10_000_000, description="One workload profile only (default: all).")] = None,
) -> Response:
    if step not in STEPS:
        raise invalid("step", "must be 1h or 1d", step)
    step_s = STEPS[step]
    end_at = parse_instant("to", end) if end is not None else _now()
    start_at = (
        parse_instant("from", start) if start is not None else end_at - timedelta(seconds=DEFAULT_SPAN_S[step_s])
    )
    if start_at >= end_at:
        raise invalid("from", "must be before `to`", start)
    first = bucket_start(start_at, step_s)
    buckets = math.ceil((end_at - first).total_seconds() / step_s)
    if buckets > MAX_BUCKETS[step_s]:
        longest = "100 days" if step_s == HOUR else "3660 days"
        raise invalid("from", f"range too long for step={step}: at most {longest} ({MAX_BUCKETS[step_s]} buckets)", start)
    await _check_endpoint(live, model_id, provider)
    stored = await store.rollup_buckets(
        model_id, provider, step_s, first, end_at, location=location, input_tokens=input_tokens
    )
    payload = HistoryOut(
        step=step, start=first, end=end_at, location=location, input_tokens=input_tokens,
        data=[HistoryBucketOut.of(t, stored.get(t)) for t in bucket_starts(first, end_at, step_s)],
    )
    return cached_json(request, payload, max_age_s=settings.cache_max_age_s)


@router.get(
    "/{model_id:path}/endpoints/{provider}/slo",
    response_model=SLOOut,
    response_model_by_alias=True,
    responses={**NOT_FOUND, **CACHED, **DATABASE_DOWN},
    summary="An endpoint's availability against an objective over a trailing period",
)
async def endpoint_slo(
    request: Request,
    model_id: ModelIdPath,
    provider: ProviderPath,
    store: StoreDep,
    live: LiveDep,
    settings: SettingsDep,
    objective: Annotated[float, Query(gt=0, lt=1, allow_inf_nan=False, description="Target availability, e.g. 0.99.")] = 0.99,
    period: Annotated[str, Query(description="Trailing period: 30d, 7d, 24h, 1h30m or seconds (1 h to 3660 d).")] = "30d",
) -> Response:
    try:
        period_s = parse_duration(period)
    except ValueError as error:
        raise invalid("period", str(error), period) from None
    if not SLO_MIN_PERIOD_S <= period_s <= SLO_MAX_PERIOD_S:
        raise invalid("period", "must be between 1h and 3660d", period)
    await _check_endpoint(live, model_id, provider)
    end_at = _now()
    step_s = HOUR if period_s <= SLO_HOURLY_UP_TO_S else DAY
    start_at = bucket_start(end_at - timedelta(seconds=period_s), step_s)
    counts = await store.rollup_counts(model_id, provider, step_s, start_at, end_at)
    report = slo_report(counts, objective=objective, period_s=period_s)
    payload = SLOOut(
        objective=report.objective, period_s=report.period_s, start=start_at, end=end_at,
        availability=report.availability, good=report.good, bad=report.bad,
        excluded=ExcludedOut(**report.excluded), error_budget_remaining=report.error_budget_remaining,
    )
    return cached_json(request, payload, max_age_s=settings.cache_max_age_s)
