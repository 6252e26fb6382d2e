"""Prometheus metrics: every metric defined once, against a registry passed in.

`build_metrics(registry)` creates the metric families and returns a `Metrics` object whose methods
are the only way the rest of the process touches them. Nothing is registered at import time, so
tests (and several app instances in one process) each use a fresh `CollectorRegistry`.

Label sets are fixed: `model`, `provider` (catalog values), `outcome` (``ok`` or an `ErrorKind`
value), `phase` (a fixed tuple below) and `window` (`stats.WINDOWS`: 24h, 7d, 30d, 90d). Error text never becomes a label. Values are in base
units (seconds, tokens per second, Unix seconds).

Gauges keep their value between probes, so every scrape re-exposes the latest figures; after a
restart `restore()` puts them back from the database without touching counters or the histogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.liveness_rules import OUTCOMES as LIVENESS_OUTCOMES
from monitor.probes.base import METHODOLOGY_VERSION, NOT_PROVIDER_FAILURES, ErrorKind, ProbeResult, ToolCallError
from monitor.probes.prompt import MISMATCH_RATIO, size_mismatch
from monitor.stats import ACTIVE_INTERVALS, WINDOWS, ModelLive, window_name

OK_OUTCOME = "ok"
OUTCOMES: tuple[str, ...] = (OK_OUTCOME, *(kind.value for kind in ErrorKind))
TOOL_CALL_OUTCOMES: tuple[str, ...] = (OK_OUTCOME, *(kind.value for kind in ToolCallError))

# Phase label -> ProbeResult attribute. dns/tcp/tls come from the cold warm-up connection,
# headers is the measured request's time to response headers, first_token its TTFT.
PHASES: dict[str, str] = {
    "dns": "dns_s",
    "tcp": "tcp_s",
    "tls": "tls_s",
    "headers": "headers_s",
    "first_token": "ttft_s",
}

# TTFT spans ~50 ms (small models, nearby region) to tens of seconds (cold starts, queues); the
# probe's default timeout is 60 s. Denser below 2 s, where most healthy endpoints sit.
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
)

# Why a scheduled probe run never ran: the endpoint's previous run was still going (waiting for a
# concurrency slot, or a slow probe), or the run came due longer than the misfire grace ago (the
# event loop was blocked).
SKIP_MAX_INSTANCES = "max_instances"
SKIP_MISFIRE = "misfire"
SKIP_REASONS: tuple[str, ...] = (SKIP_MAX_INSTANCES, SKIP_MISFIRE)
# HA scheduling: what became of this process's scheduled fires (monitor.coordination). `won`:
# it claimed the slot and probed; `claimed_elsewhere`: another process had the slot (not a
# skipped run: the slot is probed, elsewhere); `taken_over`: it probed a slot whose winner died
# before finishing; `unavailable`: the database could not answer, it probed anyway.
SLOT_CLAIM_OUTCOMES: tuple[str, ...] = ("won", "claimed_elsewhere", "taken_over", "unavailable")

ENDPOINT_LABELS = ("model", "provider")
MODEL_LABELS = ("model",)

EndpointKey = tuple[str, str]


def installed_version() -> str:
    """The package version, or a placeholder when running from an uninstalled checkout."""
    try:
        return metadata.version("llm-endpoint-monitor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _epoch_seconds(moment: datetime | float) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    """Export `value`, or drop the series when there is none (never NaN, never a fake 0)."""
    if value is None:
        gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(value)


def _remove_if_present(metric: Gauge | Counter | Histogram, labels: tuple[str, ...]) -> None:
    # prometheus_client's remove() ignores absent label sets; kept as one helper so a future
    # client version that raises on them needs one change only.
    try:
        metric.remove(*labels)
    except KeyError:
        pass


@dataclass
class Metrics:
    """Handles to every metric family plus the update verbs the runner, scheduler and API use."""

    endpoint_up: Gauge
    endpoint_ttft_seconds: Gauge
    endpoint_output_tokens_per_second: Gauge
    endpoint_last_probe_timestamp_seconds: Gauge
    probes_total: Counter
    probe_ttft_seconds: Histogram
    model_active_endpoints: Gauge
    model_endpoints: Gauge
    model_best_ttft_seconds: Gauge
    model_best_output_tokens_per_second: Gauge
    endpoint_consecutive_failures: Gauge
    endpoint_misconfigured: Gauge
    endpoint_probe_interval_seconds: Gauge
    endpoint_probe_phase_seconds: Gauge
    scheduler_lag_seconds: Gauge
    skipped_runs_total: Counter
    probes_in_flight: Gauge  # use .inc() / .dec() (or .track_inprogress()) around a probe
    last_db_write_timestamp_seconds: Gauge
    buffered_results: Gauge
    dropped_results_total: Counter
    monitor_info: Gauge
    # --- canary ---
    endpoint_answer_ok_ratio: Gauge
    tool_call_checks_total: Counter
    prompt_size_mismatch: Gauge
    # --- liveness checks and confirmation probes (monitor.liveness, monitor.confirm) ---
    liveness_checks_total: Counter
    liveness_up: Gauge
    confirm_probes_total: Counter
    # --- figures: long-range figures per window (24h, 7d, 30d, 90d) for Grafana ---
    endpoint_uptime_ratio: Gauge
    endpoint_ttft_p50_seconds: Gauge
    ops: "CostSelftestMetrics | None" = field(default=None)  # cost and self-test (section at the end)
    # --- HA scheduling (monitor.coordination) ---
    slot_claims_total: Counter | None = None

    # --- per probe (runner) ---
    def record_probe(self, model: str, provider: str, result: ProbeResult) -> None:
        """Account one finished probe: counters, histogram, latest-probe gauges."""
        labels = (model, provider)
        outcome = OK_OUTCOME if result.ok else _outcome_of(result)
        self.probes_total.labels(model, provider, outcome).inc()
        if self.ops is not None:
            self.ops.record_probe(model, provider, result)
        self.endpoint_last_probe_timestamp_seconds.labels(*labels).set(_epoch_seconds(result.started_at))
        self._set_misconfigured(labels, result)
        self._record_canary(labels, result)
        if result.ok:
            if result.ttft_s is not None:
                self.probe_ttft_seconds.labels(*labels).observe(result.ttft_s)
            self._set_latest_ok(labels, result)
            self.endpoint_consecutive_failures.labels(*labels).set(0)
        elif result.error_kind in NOT_PROVIDER_FAILURES:
            # Neither a failure nor a recovery of the provider. labels() alone creates the series
            # at 0 if it did not exist yet.
            self.endpoint_consecutive_failures.labels(*labels)
        else:
            self.endpoint_consecutive_failures.labels(*labels).inc()

    def _set_misconfigured(self, labels: EndpointKey, result: ProbeResult) -> None:
        misconfigured = result.error_kind == ErrorKind.CONFIG_ERROR
        self.endpoint_misconfigured.labels(*labels).set(1 if misconfigured else 0)

    def _set_latest_ok(self, labels: EndpointKey, result: ProbeResult) -> None:
        _set_or_remove(self.endpoint_ttft_seconds, labels, result.ttft_s)
        _set_or_remove(self.endpoint_output_tokens_per_second, labels, result.tokens_per_second)
        for phase, attribute in PHASES.items():
            # A phase the latest ok probe did not see (e.g. no TLS on http://) is dropped rather
            # than left at an older probe's value.
            _set_or_remove(self.endpoint_probe_phase_seconds, (*labels, phase), getattr(result, attribute))

    # --- per model (after live figures change) ---
    def set_model_live(self, live: ModelLive) -> None:
        model = live.model
        for endpoint in live.endpoints:
            self.endpoint_up.labels(model, endpoint.provider).set(1 if endpoint.active else 0)
            if self.ops is not None:
                self.ops.set_endpoint_cost(model, endpoint)
        self.model_active_endpoints.labels(model).set(live.active_endpoints)
        self.model_endpoints.labels(model).set(live.total_endpoints)
        self._set_answer_ok_ratios(live)
        best_ttft_s = None if live.best_ttft_ms is None else live.best_ttft_ms / 1000.0
        _set_or_remove(self.model_best_ttft_seconds, (model,), best_ttft_s)
        _set_or_remove(self.model_best_output_tokens_per_second, (model,), live.best_throughput_tps)
        self.set_window_figures(live)

    def set_window_figures(self, live: ModelLive) -> None:
        """Export uptime and TTFT median of the figures' window (`window` label = its name; a
        window that is not one of WINDOWS is not exported). No figure: the series is dropped."""
        window = window_name(live.window_s)
        if window is None:
            return
        for endpoint in live.endpoints:
            labels = (live.model, endpoint.provider, window)
            _set_or_remove(self.endpoint_uptime_ratio, labels, endpoint.uptime)
            ttft_s = None if endpoint.ttft_ms_p50 is None else endpoint.ttft_ms_p50 / 1000.0
            _set_or_remove(self.endpoint_ttft_p50_seconds, labels, ttft_s)

    def set_long_window(self, model: str, provider: str, window: str, uptime: float | None,
                        ttft_p50_s: float | None) -> None:
        """Export one endpoint's uptime and TTFT median over a long window (from roll-ups); None
        drops the series."""
        _set_or_remove(self.endpoint_uptime_ratio, (model, provider, window), uptime)
        _set_or_remove(self.endpoint_ttft_p50_seconds, (model, provider, window), ttft_p50_s)

    def set_endpoint_interval(self, model: str, provider: str, seconds: float) -> None:
        """Set the probe cadence; also creates the endpoint's counter series at 0 so the first
        probe of each outcome shows up in `increase()` instead of being lost as a new series."""
        self.endpoint_probe_interval_seconds.labels(model, provider).set(seconds)
        for outcome in OUTCOMES:
            self.probes_total.labels(model, provider, outcome)
        self.endpoint_consecutive_failures.labels(model, provider)
        if self.ops is not None:
            self.ops.init_endpoint(model, provider)

    # --- restart ---
    def restore(
        self,
        latest: Mapping[EndpointKey, ProbeResult],
        latest_ok: Mapping[EndpointKey, ProbeResult],
        consecutive_failures: Mapping[EndpointKey, int],
    ) -> None:
        """Re-set gauges from stored results. Counters and the histogram are left alone: they
        restart from zero, which Prometheus' rate()/increase() already handle as a reset."""
        for (model, provider), result in latest.items():
            self.endpoint_last_probe_timestamp_seconds.labels(model, provider).set(
                _epoch_seconds(result.started_at)
            )
            self._set_misconfigured((model, provider), result)
        for key, result in latest_ok.items():
            self._set_latest_ok(key, result)
        for (model, provider), count in consecutive_failures.items():
            self.endpoint_consecutive_failures.labels(model, provider).set(count)

    # --- config reload ---
    def remove_endpoint(self, model: str, provider: str) -> None:
        """Drop every series of an endpoint that left the config (no stale values on /metrics)."""
        labels = (model, provider)
        for gauge in (
            self.endpoint_up,
            self.endpoint_ttft_seconds,
            self.endpoint_output_tokens_per_second,
            self.endpoint_last_probe_timestamp_seconds,
            self.endpoint_consecutive_failures,
            self.endpoint_misconfigured,
            self.endpoint_probe_interval_seconds,
            self.endpoint_answer_ok_ratio,
            self.prompt_size_mismatch,
        ):
            _remove_if_present(gauge, labels)
        for outcome in TOOL_CALL_OUTCOMES:
            _remove_if_present(self.tool_call_checks_total, (*labels, outcome))
        _remove_if_present(self.probe_ttft_seconds, labels)
        for outcome in OUTCOMES:
            _remove_if_present(self.probes_total, (*labels, outcome))
        for phase in PHASES:
            _remove_if_present(self.endpoint_probe_phase_seconds, (*labels, phase))
        self.remove_liveness(model, provider)
        if self.ops is not None:
            self.ops.remove_endpoint(model, provider)
        for window in WINDOWS:
            _remove_if_present(self.endpoint_uptime_ratio, (*labels, window))
            _remove_if_present(self.endpoint_ttft_p50_seconds, (*labels, window))

    def remove_model(self, model: str) -> None:
        """Drop the model-level series of a model that left the config."""
        for gauge in (
            self.model_active_endpoints,
            self.model_endpoints,
            self.model_best_ttft_seconds,
            self.model_best_output_tokens_per_second,
        ):
            _remove_if_present(gauge, (model,))

    # --- process health ---
    def set_scheduler_lag(self, seconds: float) -> None:
        self.scheduler_lag_seconds.set(seconds)

    def inc_skipped(self, reason: str, count: int = 1) -> None:
        """Count scheduled runs that never ran; `reason` is one of SKIP_REASONS."""
        self.skipped_runs_total.labels(reason).inc(count)

    def inc_slot_claim(self, outcome: str) -> None:
        """Count one scheduled fire by what became of it; `outcome` is one of SLOT_CLAIM_OUTCOMES."""
        if self.slot_claims_total is not None:
            self.slot_claims_total.labels(outcome).inc()

    def mark_db_write(self, moment: datetime | float) -> None:
        """Record a successful database write; `moment` is a UTC datetime or Unix seconds."""
        self.last_db_write_timestamp_seconds.set(_epoch_seconds(moment))

    def set_buffered(self, count: int) -> None:
        self.buffered_results.set(count)

    def inc_dropped(self, count: int = 1) -> None:
        self.dropped_results_total.inc(count)

    # --- canary: answer check, tool-call check, prompt size ---
    def _record_canary(self, labels: EndpointKey, result: ProbeResult) -> None:
        """The prompt-size flag of the latest probe whose provider reported a prompt size."""
        ratio = size_mismatch(result.input_tokens, result.prompt_tokens)
        if ratio is not None:
            self.prompt_size_mismatch.labels(*labels).set(1 if ratio > MISMATCH_RATIO else 0)

    def _set_answer_ok_ratios(self, live: ModelLive) -> None:
        """`answer_ok_ratio` of each endpoint's live figures (`stats.answer_ok_ratio` over the
        window, set by the figures code); no series while no answer was checked."""
        for endpoint in live.endpoints:
            ratio = getattr(endpoint, "answer_ok_ratio", None)
            _set_or_remove(self.endpoint_answer_ok_ratio, (live.model, endpoint.provider), ratio)

    def record_tool_call(self, model: str, provider: str, error: ToolCallError | None) -> None:
        outcome = OK_OUTCOME if error is None else ToolCallError(error).value
        self.tool_call_checks_total.labels(model, provider, outcome).inc()
    # --- liveness checks and confirmation probes ---
    def count_liveness(self, model: str, provider: str, outcome: str) -> None:
        """One liveness check; `outcome` is one of `liveness_rules.OUTCOMES`."""
        self.liveness_checks_total.labels(model, provider, outcome).inc()

    def set_liveness_up(self, model: str, provider: str, up: bool | None) -> None:
        """1/0 when the latest telling check answered 2xx / failed hard; None drops the series
        (liveness off for the endpoint)."""
        _set_or_remove(self.liveness_up, (model, provider), None if up is None else float(up))

    def count_confirm(self, model: str, provider: str, result: ProbeResult) -> None:
        outcome = OK_OUTCOME if result.ok else _outcome_of(result)
        self.confirm_probes_total.labels(model, provider, outcome).inc()

    def remove_liveness(self, model: str, provider: str) -> None:
        labels = (model, provider)
        _remove_if_present(self.liveness_up, labels)
        for outcome in LIVENESS_OUTCOMES:
            _remove_if_present(self.liveness_checks_total, (*labels, outcome))
        for outcome in OUTCOMES:
            _remove_if_present(self.confirm_probes_total, (*labels, outcome))


def _outcome_of(result: ProbeResult) -> str:
    # A failed result always carries an error_kind; guard anyway so a bug elsewhere yields a
    # bounded label value instead of "None".
    if result.error_kind is None:
        return ErrorKind.STREAM_ERROR.value
    return ErrorKind(result.error_kind).value


def build_metrics(registry: CollectorRegistry, *, version: str | None = None) -> Metrics:
    """Create every metric family on `registry` (once per registry) and return the handles."""

    def endpoint_gauge(name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, ENDPOINT_LABELS, registry=registry)

    def model_gauge(name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, MODEL_LABELS, registry=registry)

    metrics = Metrics(
        endpoint_up=endpoint_gauge(
            "llm_endpoint_up",
            f"1 when the endpoint is active (latest non-rate-limited probe ok, within {ACTIVE_INTERVALS} "
            "intervals), else 0.",
        ),
        endpoint_ttft_seconds=endpoint_gauge(
            "llm_endpoint_ttft_seconds", "Time to first token of the latest ok probe, in seconds."
        ),
        endpoint_output_tokens_per_second=endpoint_gauge(
            "llm_endpoint_output_tokens_per_second",
            "Decode rate of the latest ok probe, in output tokens per second.",
        ),
        endpoint_last_probe_timestamp_seconds=endpoint_gauge(
            "llm_endpoint_last_probe_timestamp_seconds",
            "Start time of the latest probe (ok or not), in Unix seconds.",
        ),
        probes_total=Counter(
            "llm_probes_total",
            "Probes run, by outcome (ok or the error kind).",
            (*ENDPOINT_LABELS, "outcome"),
            registry=registry,
        ),
        probe_ttft_seconds=Histogram(
            "llm_probe_ttft_seconds",
            "Time to first token of ok probes, in seconds.",
            ENDPOINT_LABELS,
            buckets=TTFT_BUCKETS_S,
            registry=registry,
        ),
        model_active_endpoints=model_gauge(
            "llm_model_active_endpoints", "Number of active endpoints of the model."
        ),
        model_endpoints=model_gauge("llm_model_endpoints", "Number of configured endpoints of the model."),
        model_best_ttft_seconds=model_gauge(
            "llm_model_best_ttft_seconds",
            "Best endpoint median time to first token over the window, in seconds.",
        ),
        model_best_output_tokens_per_second=model_gauge(
            "llm_model_best_output_tokens_per_second",
            "Best endpoint median decode rate over the window, in output tokens per second.",
        ),
        endpoint_consecutive_failures=endpoint_gauge(
            "llm_endpoint_consecutive_failures",
            f"Failed probes in a row; {' and '.join(sorted(NOT_PROVIDER_FAILURES))} probes neither "
            "count nor reset; 0 after an ok probe.",
        ),
        endpoint_misconfigured=endpoint_gauge(
            "llm_endpoint_misconfigured",
            "1 when the latest probe failed with config_error (an unset key or URL variable: an "
            "operator fix, not a provider outage), else 0.",
        ),
        endpoint_probe_interval_seconds=endpoint_gauge(
            "llm_endpoint_probe_interval_seconds", "Configured interval between probes, in seconds."
        ),
        endpoint_probe_phase_seconds=Gauge(
            "llm_endpoint_probe_phase_seconds",
            "Phase durations of the latest ok probe (dns, tcp, tls, headers, first_token), in seconds.",
            (*ENDPOINT_LABELS, "phase"),
            registry=registry,
        ),
        scheduler_lag_seconds=Gauge(
            "llm_monitor_scheduler_lag_seconds",
            "How late the latest scheduled probe started, in seconds: from the oldest scheduled run "
            "of its endpoint that no probe had served yet to the moment the probe got its "
            "concurrency slot. Waiting for a slot counts, and every skipped run "
            "(llm_monitor_skipped_runs_total) adds an interval.",
            registry=registry,
        ),
        skipped_runs_total=Counter(
            "llm_monitor_skipped_runs_total",
            "Scheduled probe runs that never ran, by reason: max_instances (the endpoint's previous "
            "run was still going, e.g. waiting for a concurrency slot) or misfire (the run came due "
            "longer than the misfire grace ago).",
            ("reason",),
            registry=registry,
        ),
        probes_in_flight=Gauge(
            "llm_monitor_probes_in_flight", "Probes currently running.", registry=registry
        ),
        last_db_write_timestamp_seconds=Gauge(
            "llm_monitor_last_db_write_timestamp_seconds",
            "Time of the latest successful database write, in Unix seconds.",
            registry=registry,
        ),
        buffered_results=Gauge(
            "llm_monitor_buffered_results",
            "Probe results waiting to be written to the database.",
            registry=registry,
        ),
        dropped_results_total=Counter(
            "llm_monitor_dropped_results_total",
            "Probe results dropped unsaved: beyond the write buffer, or refused by the database.",
            registry=registry,
        ),
        monitor_info=Gauge(
            "llm_monitor_info",
            "Build information: package version and probe methodology version (always 1).",
            ("version", "methodology"),
            registry=registry,
        ),
        **_canary_families(registry),
        liveness_checks_total=Counter(
            "llm_liveness_checks_total",
            "Liveness checks (the cheap non-inference request between probes), by outcome: ok, "
            "not_offered, rate_limited, dns_error, connect_error, tls_error, timeout, http_5xx, "
            "auth_error, not_found, other. Not probes: they enter no figure.",
            (*ENDPOINT_LABELS, "outcome"),
            registry=registry,
        ),
        liveness_up=endpoint_gauge(
            "llm_liveness_up",
            "1 when the latest telling liveness check answered 2xx, 0 after a hard failure; absent "
            "when liveness is off for the endpoint (not offered, rate-limited, refused).",
        ),
        confirm_probes_total=Counter(
            "llm_confirm_probes_total",
            "Confirmation probes (trigger=confirm) run, by outcome (ok or the error kind).",
            (*ENDPOINT_LABELS, "outcome"),
            registry=registry,
        ),
        endpoint_uptime_ratio=Gauge(
            "llm_endpoint_uptime_ratio",
            "Uptime over the trailing window (label window: 24h, 7d, 30d, 90d): ok / (ok + failed) of "
            "scheduled probes, rate_limited and maintenance in neither.",
            (*ENDPOINT_LABELS, "window"),
            registry=registry,
        ),
        endpoint_ttft_p50_seconds=Gauge(
            "llm_endpoint_ttft_p50_seconds",
            "Median time to first token of ok scheduled probes over the trailing window (label window: "
            "24h, 7d, 30d, 90d), cold starts out unless kept, in seconds.",
            (*ENDPOINT_LABELS, "window"),
            registry=registry,
        ),
    )
    metrics.monitor_info.labels(version or installed_version(), METHODOLOGY_VERSION).set(1)

    for reason in SKIP_REASONS:
        metrics.skipped_runs_total.labels(reason)  # at 0 from the start, so increase() sees the first
    metrics.ops = build_cost_selftest_metrics(registry)
    metrics.slot_claims_total = Counter(
        "llm_monitor_slot_claims_total",
        "Scheduled probe fires of this process by outcome: won (claimed the slot and probed), "
        "claimed_elsewhere (another scheduler of this location had it), taken_over (probed a slot "
        "whose winner stopped before finishing), unavailable (the database could not answer: "
        "probed anyway). Sum over instances: won + taken_over + unavailable = probes.",
        ("outcome",),
        registry=registry,
    )
    for outcome in SLOT_CLAIM_OUTCOMES:
        metrics.slot_claims_total.labels(outcome)
    return metrics


# --- canary ---
def _canary_families(registry: CollectorRegistry) -> dict[str, Gauge | Counter]:
    return {
        "endpoint_answer_ok_ratio": Gauge(
            "llm_endpoint_answer_ok_ratio",
            "Share of the ok probes in the live window whose answer canary was checked and right "
            "(truncated answers that were right so far are not counted); absent while none was checked.",
            ENDPOINT_LABELS, registry=registry,
        ),
        "tool_call_checks_total": Counter(
            "llm_tool_call_checks",
            "Tool-call canary requests, by outcome: ok, invalid_json, unknown_tool, schema_mismatch, "
            "no_tool_call or request_failed.",
            (*ENDPOINT_LABELS, "outcome"), registry=registry,
        ),
        "prompt_size_mismatch": Gauge(
            "llm_prompt_size_mismatch",
            "1 when the latest probe whose provider reported its prompt size (usage.prompt_tokens) "
            "was more than 20 % off the workload profile (input_tokens), else 0.",
            ENDPOINT_LABELS, registry=registry,
        ),
    }
# --------------------------------------------------------------------------- cost and self-test
@dataclass
class CostSelftestMetrics:
    """Probe cost (monitor/cost.py) and the self-test (monitor/selftest.py).

    `llm_probe_cost_usd_total` counts the `cost_usd` of every recorded probe (0 for an unpriced
    endpoint); `llm_endpoint_cost_usd_per_month` is the live figures' projection (absent without
    a price); `llm_probes_suspect_total` counts probes recorded while the self-test's error was
    above its threshold; the self-test gauges carry no model/provider labels."""

    probe_cost_usd_total: Counter
    endpoint_cost_usd_per_month: Gauge
    probes_suspect_total: Counter
    selftest_ttft_error_seconds: Gauge
    selftest_max_error_seconds: Gauge
    selftest_suspect: Gauge
    selftest_runs_total: Counter

    def init_endpoint(self, model: str, provider: str) -> None:
        self.probe_cost_usd_total.labels(model, provider)
        self.probes_suspect_total.labels(model, provider)

    def record_probe(self, model: str, provider: str, result: ProbeResult) -> None:
        cost = result.cost_usd
        if cost is not None and cost >= 0:
            self.probe_cost_usd_total.labels(model, provider).inc(cost)
        if result.suspect:
            self.probes_suspect_total.labels(model, provider).inc()

    def set_endpoint_cost(self, model: str, endpoint: object) -> None:
        value = getattr(endpoint, "cost_usd_per_month", None)
        _set_or_remove(self.endpoint_cost_usd_per_month, (model, getattr(endpoint, "provider")), value)

    def remove_endpoint(self, model: str, provider: str) -> None:
        for metric in (self.probe_cost_usd_total, self.endpoint_cost_usd_per_month, self.probes_suspect_total):
            _remove_if_present(metric, (model, provider))

    def record_selftest(self, error_s: float, *, ok: bool, suspect: bool) -> None:
        self.selftest_ttft_error_seconds.set(error_s)
        self.selftest_suspect.set(1 if suspect else 0)
        self.selftest_runs_total.labels("ok" if ok else "failed").inc()


def build_cost_selftest_metrics(registry: CollectorRegistry) -> CostSelftestMetrics:
    metrics = CostSelftestMetrics(
        probe_cost_usd_total=Counter(
            "llm_probe_cost_usd",
            "What the recorded probes cost, in USD, from their usage (or estimate) and the "
            "endpoint's price; confirmation probes and merged canary requests included, warm-up "
            "requests at zero; 0 for an endpoint without a price.",
            ENDPOINT_LABELS,
            registry=registry,
        ),
        endpoint_cost_usd_per_month=Gauge(
            "llm_endpoint_cost_usd_per_month",
            "Projected monthly probe cost of the endpoint, in USD: the window's mean cost per probe "
            "x scheduled probes per month (all locations) x (1 + the window's confirm rate).",
            ENDPOINT_LABELS,
            registry=registry,
        ),
        probes_suspect_total=Counter(
            "llm_probes_suspect",
            "Probes recorded as suspect: finished while the monitor's self-test TTFT error was above "
            "its threshold (an overloaded host).",
            ENDPOINT_LABELS,
            registry=registry,
        ),
        selftest_ttft_error_seconds=Gauge(
            "llm_monitor_selftest_ttft_error_seconds",
            "The monitor's own TTFT error on its loopback self-test: measured minus true TTFT (the "
            "reference server's own clock), in seconds; a failed self-test sets its elapsed time.",
            registry=registry,
        ),
        selftest_max_error_seconds=Gauge(
            "llm_monitor_selftest_max_error_seconds",
            "Self-test error above which finished probes are flagged suspect (LLM_MONITOR_SELFTEST_MAX_ERROR_S).",
            registry=registry,
        ),
        selftest_suspect=Gauge(
            "llm_monitor_selftest_suspect",
            "1 while the latest self-test's error is above its threshold or the self-test failed: "
            "probes finishing now are flagged suspect; else 0.",
            registry=registry,
        ),
        selftest_runs_total=Counter(
            "llm_monitor_selftest_runs",
            "Self-test probes run, by outcome (ok, failed).",
            ("outcome",),
            registry=registry,
        ),
    )
    for outcome in ("ok", "failed"):
        metrics.selftest_runs_total.labels(outcome)
    return metrics


# ------------------------------------------------------------------------------------ incidents
# Endpoint state, incidents, per-location health and maintenance. Every value is derived from the
# shared database by `monitor.incidents.IncidentTracker` (never from this process's own probes
# only), so N probing processes in M locations export the same values: the alert rules take
# `max by (model, provider)` over instances, and nothing flaps when another process probes next.

# Time from an outage's first failed probe to its incident opening: a minute or two with
# confirmation probes, up to an interval or two without them.
DETECT_BUCKETS_S: tuple[float, ...] = (15, 30, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200)


@dataclass
class IncidentMetrics:
    endpoint_state: Gauge
    endpoint_incident_open: Gauge
    location_endpoint_up: Gauge
    location_impaired: Gauge
    endpoint_in_maintenance: Gauge
    incident_time_to_detect_seconds: Histogram
    # The label values exported so far, so that stale series are dropped without scanning.
    _locations: dict[EndpointKey, set[str]] = field(default_factory=dict)
    _impaired_locations: set[str] = field(default_factory=set)

    def set_state(self, model: str, provider: str, state: str, states: tuple[str, ...]) -> None:
        for name in states:
            self.endpoint_state.labels(model, provider, name).set(1 if name == state else 0)

    def set_incident_open(self, model: str, provider: str, is_open: bool) -> None:
        self.endpoint_incident_open.labels(model, provider).set(1 if is_open else 0)

    def set_in_maintenance(self, model: str, provider: str, covered: bool) -> None:
        self.endpoint_in_maintenance.labels(model, provider).set(1 if covered else 0)

    def set_location_up(self, model: str, provider: str, location_up: Mapping[str, bool]) -> None:
        """Export the locations given; drop the endpoint's series of any other location."""
        for location, up in location_up.items():
            self.location_endpoint_up.labels(model, provider, location).set(1 if up else 0)
        exported = self._locations.setdefault((model, provider), set())
        for location in exported - set(location_up):
            _remove_if_present(self.location_endpoint_up, (model, provider, location))
        exported.intersection_update(location_up)
        exported.update(location_up)

    def set_impaired(self, impaired: Mapping[str, bool]) -> None:
        for location, value in impaired.items():
            self.location_impaired.labels(location).set(1 if value else 0)
        for location in self._impaired_locations - set(impaired):
            _remove_if_present(self.location_impaired, (location,))
        self._impaired_locations = set(impaired)

    def observe_time_to_detect(self, model: str, provider: str, seconds: float) -> None:
        self.incident_time_to_detect_seconds.labels(model, provider).observe(max(0.0, seconds))

    def remove_endpoint(self, model: str, provider: str, states: tuple[str, ...]) -> None:
        for name in states:
            _remove_if_present(self.endpoint_state, (model, provider, name))
        for gauge in (self.endpoint_incident_open, self.endpoint_in_maintenance):
            _remove_if_present(gauge, (model, provider))
        self.set_location_up(model, provider, {})
        self._locations.pop((model, provider), None)
        _remove_if_present(self.incident_time_to_detect_seconds, (model, provider))


def build_incident_metrics(registry: CollectorRegistry) -> IncidentMetrics:
    return IncidentMetrics(
        endpoint_state=Gauge(
            "llm_endpoint_state",
            "1 for the endpoint's current state (up, degraded, regional, down, misconfigured, unknown), "
            "0 for the others; from every location's probes in the database.",
            (*ENDPOINT_LABELS, "state"),
            registry=registry,
        ),
        endpoint_incident_open=Gauge(
            "llm_endpoint_incident_open",
            "1 while the endpoint has an open incident (declared down by quorum, not yet recovered).",
            ENDPOINT_LABELS,
            registry=registry,
        ),
        location_endpoint_up=Gauge(
            "llm_location_endpoint_up",
            "1 when the endpoint is active as seen from this location (its latest non-rate-limited "
            "probe there ok, within 2 intervals), else 0.",
            (*ENDPOINT_LABELS, "location"),
            registry=registry,
        ),
        location_impaired=Gauge(
            "llm_location_impaired",
            "1 when the location's probes fail for every endpoint it probes (at least 2 endpoints "
            "of 2 providers): the monitor's own trouble there. Its failures count towards no quorum.",
            ("location",),
            registry=registry,
        ),
        endpoint_in_maintenance=Gauge(
            "llm_endpoint_in_maintenance",
            "1 while a configured maintenance window covers the endpoint (no incident opens, no page).",
            ENDPOINT_LABELS,
            registry=registry,
        ),
        incident_time_to_detect_seconds=Histogram(
            "llm_incident_time_to_detect_seconds",
            "From an outage's first failed probe to its incident opening, in seconds (observed once, "
            "by the process that opened the incident).",
            ENDPOINT_LABELS,
            buckets=DETECT_BUCKETS_S,
            registry=registry,
        ),
    )
