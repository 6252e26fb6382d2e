"""Response models of the HTTP API (the contract's JSON shapes). Not table rows.

Every timestamp is serialised as ISO 8601 UTC with a `Z` suffix: `UtcDatetime` normalises aware
datetimes to UTC and reads naive ones (as some database drivers return them) as UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, ToolCallError, Trigger
from monitor.endpoint_state import LocationView
from monitor.stats import EndpointLive, ModelLive


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(_Out):
    detail: str = Field(description="What went wrong, for humans.")


class LocationLiveOut(_Out):
    """One location's view of an endpoint (its own probes only)."""

    location: str
    active: bool = Field(description="Active as seen from this location.")
    last_probe_at: UtcDatetime | None
    last_error_kind: ErrorKind | None
    ttft_ms_p50: float | None = Field(description="Median TTFT of this location's scheduled ok probes in the window, ms.")
    throughput_tps_p50: float | None
    uptime: float | None = Field(ge=0, le=1)
    samples: int = Field(ge=0, description="Scheduled probes from this location in the window.")
    failing: bool = Field(description="Its latest confirm.failures provider failures have no success after them.")

    @classmethod
    def of(cls, view: LocationView) -> LocationLiveOut:
        return cls(
            location=view.location, active=view.active, last_probe_at=view.last_probe_at,
            last_error_kind=view.last_error_kind, ttft_ms_p50=view.ttft_ms_p50,
            throughput_tps_p50=view.throughput_tps_p50, uptime=view.uptime, samples=view.samples,
            failing=view.failing,
        )


class OpenIncidentOut(_Out):
    id: int
    started_at: UtcDatetime
    locations: list[str]


class MaintenanceOut(_Out):
    start: UtcDatetime
    end: UtcDatetime
    reason: str


EndpointState = Literal["up", "degraded", "regional", "down", "misconfigured", "unknown"]


class EndpointLiveOut(_Out):
    provider: str = Field(description="Provider name as configured.")
    active: bool = Field(
        description="Latest probe that was not rate_limited is ok and no older than 2 intervals."
    )
    last_probe_at: UtcDatetime | None = Field(description="Start of the latest probe in the window.")
    last_error_kind: ErrorKind | None = Field(description="error_kind of the latest probe (null when ok).")
    ttft_ms_p50: float | None = Field(description="Median time to first token of ok probes in the window, ms.")
    throughput_tps_p50: float | None = Field(
        description="Median decode rate of ok probes in the window, output tokens per second."
    )
    uptime: float | None = Field(
        ge=0, le=1, description="ok / (ok + failed) in the window; rate_limited probes count in neither."
    )
    samples: int = Field(ge=0, description="Scheduled probes of the profile in the window (the n of uptime).")
    # --- figures: n, spread and 95 % intervals ---
    ok_samples: int = Field(ge=0, description="The ok ones among `samples` (the n behind the medians).")
    ttft_ms_p5: float | None = Field(description="5th percentile of the TTFTs behind ttft_ms_p50, ms.")
    ttft_ms_p95: float | None = Field(description="95th percentile of the TTFTs behind ttft_ms_p50, ms.")
    ttft_ms_p50_ci: tuple[float, float] | None = Field(
        description="[low, high] distribution-free 95 % interval of ttft_ms_p50 (order statistics); null below 6 values."
    )
    throughput_tps_p50_ci: tuple[float, float] | None = Field(
        description="[low, high] distribution-free 95 % interval of throughput_tps_p50; null below 6 values."
    )
    uptime_ci: tuple[float, float] | None = Field(
        description="[low, high] Wilson 95 % interval of uptime; null when uptime is."
    )
    answer_ok_ratio: float | None = Field(
        ge=0, le=1, description="Share of the ok probes whose answer check passed; null when none was checked."
    )
    state: EndpointState = Field(description="up, degraded, regional, down (by quorum), misconfigured or unknown.")
    state_reason: str | None = Field(description="Why the state is not plain up, for humans.")
    locations: list[LocationLiveOut] = Field(description="Each location's view.")
    open_incident: OpenIncidentOut | None = Field(description="The endpoint's open incident, if any.")
    maintenance: MaintenanceOut | None = Field(description="The maintenance window covering it now, if any.")

    @classmethod
    def of(cls, live: EndpointLive) -> EndpointLiveOut:
        return cls(
            provider=live.provider,
            active=live.active,
            last_probe_at=live.last_probe_at,
            last_error_kind=live.last_error_kind,
            ttft_ms_p50=live.ttft_ms_p50,
            throughput_tps_p50=live.throughput_tps_p50,
            uptime=live.uptime,
            samples=live.samples,
            ok_samples=live.ok_samples,
            ttft_ms_p5=live.ttft_ms_p5,
            ttft_ms_p95=live.ttft_ms_p95,
            ttft_ms_p50_ci=live.ttft_ms_p50_ci,
            throughput_tps_p50_ci=live.throughput_tps_p50_ci,
            uptime_ci=live.uptime_ci,
            answer_ok_ratio=live.answer_ok_ratio,
            state=live.state,
            state_reason=live.state_reason,
            locations=[LocationLiveOut.of(view) for view in live.locations],
            open_incident=None if live.open_incident is None else OpenIncidentOut(
                id=live.open_incident.id, started_at=live.open_incident.started_at,
                locations=list(live.open_incident.locations),
            ),
            maintenance=None if live.maintenance is None else MaintenanceOut(
                start=live.maintenance.start, end=live.maintenance.end, reason=live.maintenance.reason,
            ),
        )


class ModelLiveOut(_Out):
    model: str = Field(description="Model id, e.g. meta-llama/llama-3.2-1b-instruct.")
    best_ttft_ms: float | None = Field(
        description="Best endpoint median TTFT over active endpoints (over all with data when none is active)."
    )
    best_throughput_tps: float | None = Field(description="Best endpoint median decode rate, likewise.")
    active_endpoints: int = Field(ge=0)
    total_endpoints: int = Field(ge=0)
    available_via: list[str] = Field(description="Every configured provider of the model.")
    updated_at: UtcDatetime | None = Field(description="Newest probe of any endpoint of the model.")
    window_s: float = Field(gt=0, description="Trailing window of the medians and uptime, seconds (`?window=`).")
    endpoints: list[EndpointLiveOut]

    @classmethod
    def of(cls, live: ModelLive) -> ModelLiveOut:
        return cls(
            model=live.model,
            best_ttft_ms=live.best_ttft_ms,
            best_throughput_tps=live.best_throughput_tps,
            active_endpoints=live.active_endpoints,
            total_endpoints=live.total_endpoints,
            available_via=list(live.available_via),
            updated_at=live.updated_at,
            window_s=live.window_s,
            endpoints=[EndpointLiveOut.of(e) for e in live.endpoints],
        )


class ModelOut(_Out):
    id: str
    name: str
    live: ModelLiveOut


class ModelListOut(_Out):
    data: list[ModelOut]


class ProbeResultOut(_Out):
    """One stored probe: the contract fields, then the audit record (`ProbeResult.to_dict()`)."""

    ok: bool = Field(description="The stream delivered at least one content token and ended cleanly.")
    error_kind: ErrorKind | None
    error: str | None = Field(description="Short human text, or null.")
    http_status: int | None
    started_at: UtcDatetime
    ttft_s: float | None = Field(description="Request sent to first non-empty token, seconds (warm connection).")
    connect_s: float | None = Field(description="Cold connection setup (DNS + TCP + TLS), seconds.")
    total_s: float | None
    output_tokens: int | None
    token_count_source: TokenCountSource | None
    tokens_per_second: float | None
    protocol: str
    model: str
    first_answer_s: float | None
    first_reasoning_s: float | None
    last_token_s: float | None
    headers_s: float | None
    dns_s: float | None
    tcp_s: float | None
    tls_s: float | None
    token_chunks: int
    usage_tokens: int | None
    first_read_tokens: int
    finish_reason: str | None
    http_version: str | None
    connection_reused: bool | None
    loop_lag_s: float | None
    cpu_s: float | None
    stream_bytes: int
    retry_after_s: float | None
    methodology: str
    location: str = Field(description="Where the probe ran from (the prober's --location).")
    trigger: Trigger = Field(description="scheduled (its interval slot), confirm (re-probe after a failure) or manual.")
    answer_ok: bool | None = Field(description="Answer canary verdict; null when not checked.")
    tool_call_ok: bool | None = Field(description="Tool-call canary verdict (separate request); null when not checked.")
    tool_call_error: ToolCallError | None
    input_tokens: int = Field(description="Workload profile: approximate prompt size in tokens.")
    prompt_tokens: int | None = Field(description="Provider-reported prompt tokens, when sent.")
    cost_usd: float | None = Field(description="What the probe cost in USD, from its usage and the endpoint's price; null without a price.")
    cold_start: bool = Field(description="The provider paid a model load for this probe.")
    server_load_s: float | None
    server_prompt_eval_s: float | None
    server_eval_s: float | None
    server_eval_tokens: int | None
    suspect: bool = Field(description="Finished while the monitor's own self-test error was above its threshold.")

    @classmethod
    def of(cls, result: ProbeResult) -> ProbeResultOut:
        return cls.model_validate(result.to_dict())


class ProbeListOut(_Out):
    data: list[ProbeResultOut] = Field(description="Newest first.")


class HealthOut(_Out):
    status: str


# Readiness is whatever the service reports (check name -> bool, null for "not applicable", or
# an informational value); documented as a free-form object.
ReadinessOut = dict[str, Any]
AdminOut = dict[str, Any]
