"""Prometheus metrics: every metric defined once, against a registry passed in.

`build_metrics(registry)` creates the metric families and returns a `Metrics` object whose methods
are the only way the rest of the process touches them. Nothing is registered at import time, so
tests (and several app instances in one process) each use a fresh `CollectorRegistry`.

Label sets are fixed: `model`, `provider` (catalog values), `outcome` (``ok`` or an `ErrorKind`
value) and `phase` (a fixed tuple below). Error text never becomes a label. Values are in base
units (seconds, tokens per second, Unix seconds).

Gauges keep their value between probes, so every scrape re-exposes the latest figures; after a
restart `restore()` puts them back from the database without touching counters or the histogram.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.probes.base import METHODOLOGY_VERSION, NOT_PROVIDER_FAILURES, ErrorKind, ProbeResult
from monitor.stats import ACTIVE_INTERVALS, ModelLive

OK_OUTCOME = "ok"
OUTCOMES: tuple[str, ...] = (OK_OUTCOME, *(kind.value for kind in ErrorKind))

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

    # --- per probe (runner) ---
    def record_probe(self, model: str, provider: str, result: ProbeResult) -> None:
        """Account one finished probe: counters, histogram, latest-probe gauges."""
        labels = (model, provider)
        outcome = OK_OUTCOME if result.ok else _outcome_of(result)
        self.probes_total.labels(model, provider, outcome).inc()
        self.endpoint_last_probe_timestamp_seconds.labels(*labels).set(_epoch_seconds(result.started_at))
        self._set_misconfigured(labels, result)
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
        self.model_active_endpoints.labels(model).set(live.active_endpoints)
        self.model_endpoints.labels(model).set(live.total_endpoints)
        best_ttft_s = None if live.best_ttft_ms is None else live.best_ttft_ms / 1000.0
        _set_or_remove(self.model_best_ttft_seconds, (model,), best_ttft_s)
        _set_or_remove(self.model_best_output_tokens_per_second, (model,), live.best_throughput_tps)

    def set_endpoint_interval(self, model: str, provider: str, seconds: float) -> None:
        """Set the probe cadence; also creates the endpoint's counter series at 0 so the first
        probe of each outcome shows up in `increase()` instead of being lost as a new series."""
        self.endpoint_probe_interval_seconds.labels(model, provider).set(seconds)
        for outcome in OUTCOMES:
            self.probes_total.labels(model, provider, outcome)
        self.endpoint_consecutive_failures.labels(model, provider)

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
        ):
            _remove_if_present(gauge, labels)
        _remove_if_present(self.probe_ttft_seconds, labels)
        for outcome in OUTCOMES:
            _remove_if_present(self.probes_total, (*labels, outcome))
        for phase in PHASES:
            _remove_if_present(self.endpoint_probe_phase_seconds, (*labels, phase))

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

    def mark_db_write(self, moment: datetime | float) -> None:
        """Record a successful database write; `moment` is a UTC datetime or Unix seconds."""
        self.last_db_write_timestamp_seconds.set(_epoch_seconds(moment))

    def set_buffered(self, count: int) -> None:
        self.buffered_results.set(count)

    def inc_dropped(self, count: int = 1) -> None:
        self.dropped_results_total.inc(count)


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
    )
    metrics.monitor_info.labels(version or installed_version(), METHODOLOGY_VERSION).set(1)
    for reason in SKIP_REASONS:
        metrics.skipped_runs_total.labels(reason)  # at 0 from the start, so increase() sees the first
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
        for labels in _label_sets(self.location_endpoint_up):
            if labels[:2] == (model, provider) and labels[2] not in location_up:
                _remove_if_present(self.location_endpoint_up, labels)

    def set_impaired(self, impaired: Mapping[str, bool]) -> None:
        for location, value in impaired.items():
            self.location_impaired.labels(location).set(1 if value else 0)
        for labels in _label_sets(self.location_impaired):
            if labels[0] not in impaired:
                _remove_if_present(self.location_impaired, labels)

    def observe_time_to_detect(self, model: str, provider: str, seconds: float) -> None:
        self.incident_time_to_detect_seconds.labels(model, provider).observe(max(0.0, seconds))

    def remove_endpoint(self, model: str, provider: str, states: tuple[str, ...]) -> None:
        for name in states:
            _remove_if_present(self.endpoint_state, (model, provider, name))
        for gauge in (self.endpoint_incident_open, self.endpoint_in_maintenance):
            _remove_if_present(gauge, (model, provider))
        self.set_location_up(model, provider, {})
        _remove_if_present(self.incident_time_to_detect_seconds, (model, provider))


def _label_sets(metric: Gauge) -> list[tuple[str, ...]]:
    """The label values of every series a labelled metric currently holds."""
    return [tuple(labels) for labels in list(metric._metrics)]  # prometheus_client keeps them there


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
