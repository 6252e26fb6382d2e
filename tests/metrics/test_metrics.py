"""monitor.metrics against a fresh CollectorRegistry per test, read back through the registry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import OUTCOMES, PHASES, TTFT_BUCKETS_S, build_metrics
from monitor.probes.base import METHODOLOGY_VERSION, ErrorKind, ProbeResult, TokenCountSource
from monitor.stats import EndpointLive, ModelLive

MODEL = "meta-llama/llama-3.2-1b-instruct"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def ok_result(*, ttft_s=0.25, tps=57.0, at=T0, **audit) -> ProbeResult:
    fields = dict(dns_s=0.004, tcp_s=0.011, tls_s=0.032, headers_s=0.2)
    fields.update(audit)
    return ProbeResult(
        ok=True, error_kind=None, error=None, http_status=200, started_at=at,
        ttft_s=ttft_s, connect_s=0.05, total_s=2.0, output_tokens=100,
        token_count_source=TokenCountSource.USAGE, tokens_per_second=tps, **fields,
    )


def failed_result(kind: ErrorKind, *, at=T0, status=None) -> ProbeResult:
    return ProbeResult(
        ok=False, error_kind=kind, error="boom", http_status=status, started_at=at,
        ttft_s=None, connect_s=None, total_s=0.1, output_tokens=None,
        token_count_source=None, tokens_per_second=None,
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return build_metrics(registry, version="9.9.9")


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def ep(model=MODEL, provider="Cloudflare"):
    return {"model": model, "provider": provider}


def test_nothing_is_registered_globally_and_each_registry_gets_its_own_families():
    first, second = CollectorRegistry(), CollectorRegistry()
    build_metrics(first)
    build_metrics(second)  # would raise "Duplicated timeseries" if anything were shared
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("llm_probes_total", {**ep(), "outcome": "ok"}) is None
    assert "llm_endpoint_up" not in generate_latest(REGISTRY).decode()


def test_ok_probe_sets_counters_histogram_and_latest_gauges(registry, metrics):
    metrics.record_probe(MODEL, "Cloudflare", ok_result(ttft_s=0.244, tps=57.5))

    assert value(registry, "llm_probes_total", **ep(), outcome="ok") == 1
    assert value(registry, "llm_probe_ttft_seconds_count", **ep()) == 1
    assert value(registry, "llm_probe_ttft_seconds_sum", **ep()) == pytest.approx(0.244)
    assert value(registry, "llm_probe_ttft_seconds_bucket", **ep(), le="0.2") == 0
    assert value(registry, "llm_probe_ttft_seconds_bucket", **ep(), le="0.3") == 1
    assert value(registry, "llm_endpoint_ttft_seconds", **ep()) == pytest.approx(0.244)
    assert value(registry, "llm_endpoint_output_tokens_per_second", **ep()) == pytest.approx(57.5)
    assert value(registry, "llm_endpoint_last_probe_timestamp_seconds", **ep()) == T0.timestamp()
    assert value(registry, "llm_endpoint_consecutive_failures", **ep()) == 0
    phases = {p: value(registry, "llm_endpoint_probe_phase_seconds", **ep(), phase=p) for p in PHASES}
    assert phases == {"dns": 0.004, "tcp": 0.011, "tls": 0.032, "headers": 0.2, "first_token": 0.244}


def test_failed_probe_counts_outcome_but_keeps_latest_ok_figures(registry, metrics):
    metrics.record_probe(MODEL, "Cloudflare", ok_result(ttft_s=0.3, tps=40.0))
    later = T0 + timedelta(minutes=30)
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.TIMEOUT, at=later))

    assert value(registry, "llm_probes_total", **ep(), outcome="timeout") == 1
    assert value(registry, "llm_probes_total", **ep(), outcome="ok") == 1
    assert value(registry, "llm_probe_ttft_seconds_count", **ep()) == 1  # failures not observed
    assert value(registry, "llm_endpoint_ttft_seconds", **ep()) == pytest.approx(0.3)
    assert value(registry, "llm_endpoint_output_tokens_per_second", **ep()) == pytest.approx(40.0)
    assert value(registry, "llm_endpoint_last_probe_timestamp_seconds", **ep()) == later.timestamp()


def test_consecutive_failures_count_failures_ignore_rate_limits_and_reset_on_ok(registry, metrics):
    def failures():
        return value(registry, "llm_endpoint_consecutive_failures", **ep())

    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.RATE_LIMITED, status=429))
    assert failures() == 0  # series exists, nothing counted
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.CONNECT_ERROR))
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.HTTP_ERROR, status=500))
    assert failures() == 2
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.RATE_LIMITED, status=429))
    assert failures() == 2  # neither counts nor resets
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.CONFIG_ERROR))
    assert failures() == 2  # a missing key says nothing about the provider either
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.STREAM_ERROR))
    assert failures() == 3
    metrics.record_probe(MODEL, "Cloudflare", ok_result())
    assert failures() == 0
    assert value(registry, "llm_probes_total", **ep(), outcome="rate_limited") == 2


def test_ok_probe_without_throughput_or_phase_drops_those_series(registry, metrics):
    metrics.record_probe(MODEL, "Cloudflare", ok_result(tps=50.0))
    # One content chunk: no decode rate; plain http: no TLS phase.
    metrics.record_probe(MODEL, "Cloudflare", ok_result(tps=None, tls_s=None))
    assert value(registry, "llm_endpoint_output_tokens_per_second", **ep()) is None
    assert value(registry, "llm_endpoint_probe_phase_seconds", **ep(), phase="tls") is None
    assert value(registry, "llm_endpoint_probe_phase_seconds", **ep(), phase="tcp") == 0.011
    assert "NaN" not in generate_latest(registry).decode()


def model_live(*, best_ttft_ms, best_tps, actives=(True, False)) -> ModelLive:
    providers = ("Cloudflare", "Groq")[: len(actives)]
    endpoints = tuple(
        EndpointLive(
            provider=p, active=a, last_probe_at=T0, last_error_kind=None if a else "timeout",
            ttft_ms_p50=best_ttft_ms, throughput_tps_p50=best_tps, uptime=1.0 if a else 0.0, samples=3,
        )
        for p, a in zip(providers, actives)
    )
    return ModelLive(
        model=MODEL, best_ttft_ms=best_ttft_ms, best_throughput_tps=best_tps,
        active_endpoints=sum(actives), total_endpoints=len(actives), available_via=providers,
        updated_at=T0, window_s=86400.0, endpoints=endpoints,
    )


def test_set_model_live_sets_up_counts_and_best_in_base_units(registry, metrics):
    metrics.set_model_live(model_live(best_ttft_ms=244.0, best_tps=57.0))

    assert value(registry, "llm_endpoint_up", **ep(provider="Cloudflare")) == 1
    assert value(registry, "llm_endpoint_up", **ep(provider="Groq")) == 0
    assert value(registry, "llm_model_active_endpoints", model=MODEL) == 1
    assert value(registry, "llm_model_endpoints", model=MODEL) == 2
    assert value(registry, "llm_model_best_ttft_seconds", model=MODEL) == pytest.approx(0.244)
    assert value(registry, "llm_model_best_output_tokens_per_second", model=MODEL) == 57.0


def test_best_values_without_data_remove_the_series_instead_of_exporting_nan_or_zero(registry, metrics):
    metrics.set_model_live(model_live(best_ttft_ms=244.0, best_tps=57.0))
    metrics.set_model_live(model_live(best_ttft_ms=None, best_tps=None, actives=(False,)))

    assert value(registry, "llm_model_best_ttft_seconds", model=MODEL) is None
    assert value(registry, "llm_model_best_output_tokens_per_second", model=MODEL) is None
    assert value(registry, "llm_model_active_endpoints", model=MODEL) == 0
    assert value(registry, "llm_model_endpoints", model=MODEL) == 1
    text = generate_latest(registry).decode()
    assert "llm_model_best_ttft_seconds{" not in text
    assert "NaN" not in text


def test_restore_sets_gauges_without_touching_counters_or_histogram(registry, metrics):
    failed_at = T0 + timedelta(minutes=5)
    key = (MODEL, "Cloudflare")
    metrics.restore(
        {key: failed_result(ErrorKind.TIMEOUT, at=failed_at)},
        {key: ok_result(ttft_s=0.5, tps=33.0)},
        {key: 4},
    )

    assert value(registry, "llm_endpoint_last_probe_timestamp_seconds", **ep()) == failed_at.timestamp()
    assert value(registry, "llm_endpoint_ttft_seconds", **ep()) == 0.5
    assert value(registry, "llm_endpoint_output_tokens_per_second", **ep()) == 33.0
    assert value(registry, "llm_endpoint_probe_phase_seconds", **ep(), phase="first_token") == 0.5
    assert value(registry, "llm_endpoint_consecutive_failures", **ep()) == 4
    for outcome in OUTCOMES:
        assert value(registry, "llm_probes_total", **ep(), outcome=outcome) is None
    assert value(registry, "llm_probe_ttft_seconds_count", **ep()) is None

    # Counting resumes from the restored streak.
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.TIMEOUT))
    assert value(registry, "llm_endpoint_consecutive_failures", **ep()) == 5


def test_set_endpoint_interval_exposes_cadence_and_zeroed_outcome_series(registry, metrics):
    metrics.set_endpoint_interval(MODEL, "Cloudflare", 1800)

    assert value(registry, "llm_endpoint_probe_interval_seconds", **ep()) == 1800
    assert {o: value(registry, "llm_probes_total", **ep(), outcome=o) for o in OUTCOMES} == dict.fromkeys(
        OUTCOMES, 0.0
    )
    assert set(OUTCOMES) == {"ok", *(k.value for k in ErrorKind)}


def test_remove_endpoint_drops_every_series_of_that_endpoint_only(registry, metrics):
    for provider in ("Cloudflare", "Groq"):
        metrics.set_endpoint_interval(MODEL, provider, 60)
        metrics.record_probe(MODEL, provider, ok_result())
        metrics.record_probe(MODEL, provider, failed_result(ErrorKind.TIMEOUT))
    metrics.set_model_live(model_live(best_ttft_ms=244.0, best_tps=57.0))

    metrics.remove_endpoint(MODEL, "Groq")

    text = generate_latest(registry).decode()
    assert 'provider="Groq"' not in text
    assert 'provider="Cloudflare"' in text
    assert value(registry, "llm_probes_total", **ep(provider="Cloudflare"), outcome="ok") == 1
    metrics.remove_endpoint(MODEL, "Groq")  # idempotent

    metrics.remove_model(MODEL)
    assert value(registry, "llm_model_endpoints", model=MODEL) is None


def test_process_health_metrics(registry, metrics):
    metrics.set_scheduler_lag(0.125)
    metrics.probes_in_flight.inc()
    metrics.probes_in_flight.inc()
    metrics.probes_in_flight.dec()
    metrics.mark_db_write(T0)
    metrics.set_buffered(7)
    metrics.inc_dropped(3)
    metrics.inc_dropped()

    assert value(registry, "llm_monitor_scheduler_lag_seconds") == 0.125
    assert value(registry, "llm_monitor_probes_in_flight") == 1
    assert value(registry, "llm_monitor_last_db_write_timestamp_seconds") == T0.timestamp()
    metrics.mark_db_write(1_700_000_000.5)  # Unix seconds accepted too (time.time())
    assert value(registry, "llm_monitor_last_db_write_timestamp_seconds") == 1_700_000_000.5
    assert value(registry, "llm_monitor_buffered_results") == 7
    assert value(registry, "llm_monitor_dropped_results_total") == 4
    assert value(registry, "llm_monitor_info", version="9.9.9", methodology=METHODOLOGY_VERSION) == 1


def test_exposition_parses_with_one_help_line_per_family_and_base_unit_names(registry, metrics):
    metrics.set_endpoint_interval(MODEL, "Cloudflare", 1800)
    metrics.record_probe(MODEL, "Cloudflare", ok_result())
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.AUTH_ERROR, status=401))
    metrics.set_model_live(model_live(best_ttft_ms=244.0, best_tps=57.0))
    metrics.probes_in_flight.inc()
    text = generate_latest(registry).decode()

    # prometheus_client adds `<name>_created` gauges for counters and histograms unless the
    # process sets PROMETHEUS_DISABLE_CREATED_SERIES; they are the client's, not ours.
    families = {
        f.name: f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    expected = {
        "llm_endpoint_up": "gauge",
        "llm_endpoint_ttft_seconds": "gauge",
        "llm_endpoint_output_tokens_per_second": "gauge",
        "llm_endpoint_last_probe_timestamp_seconds": "gauge",
        "llm_probes": "counter",
        "llm_probe_ttft_seconds": "histogram",
        "llm_model_active_endpoints": "gauge",
        "llm_model_endpoints": "gauge",
        "llm_model_best_ttft_seconds": "gauge",
        "llm_model_best_output_tokens_per_second": "gauge",
        "llm_endpoint_consecutive_failures": "gauge",
        "llm_endpoint_misconfigured": "gauge",
        "llm_endpoint_probe_interval_seconds": "gauge",
        "llm_endpoint_probe_phase_seconds": "gauge",
        "llm_monitor_scheduler_lag_seconds": "gauge",
        "llm_monitor_skipped_runs": "counter",
        "llm_monitor_probes_in_flight": "gauge",
        "llm_monitor_last_db_write_timestamp_seconds": "gauge",
        "llm_monitor_buffered_results": "gauge",
        "llm_monitor_dropped_results": "counter",
        "llm_monitor_info": "gauge",
        # cost and self-test
        "llm_probe_cost_usd": "counter",
        "llm_endpoint_cost_usd_per_month": "gauge",
        "llm_probes_suspect": "counter",
        "llm_monitor_selftest_ttft_error_seconds": "gauge",
        "llm_monitor_selftest_max_error_seconds": "gauge",
        "llm_monitor_selftest_suspect": "gauge",
        "llm_monitor_selftest_runs": "counter",
        "llm_liveness_checks": "counter",
        "llm_liveness_up": "gauge",
        "llm_confirm_probes": "counter",
        "llm_endpoint_uptime_ratio": "gauge",
        "llm_endpoint_ttft_p50_seconds": "gauge",
        "llm_monitor_slot_claims": "counter",
    }
    # canary
    expected |= {"llm_endpoint_answer_ok_ratio": "gauge", "llm_tool_call_checks": "counter",
                 "llm_prompt_size_mismatch": "gauge"}
    assert {name: f.type for name, f in families.items()} == expected
    for family in families.values():
        assert family.documentation.strip()
    help_lines = [
        line for line in text.splitlines() if line.startswith("# HELP ") and "_created " not in line
    ]
    assert sorted(line.split()[2] for line in help_lines) == sorted(
        f"{name}_total" if kind == "counter" else name for name, kind in expected.items()
    )

    probes = families["llm_probes"].samples
    auth = [s for s in probes if s.name == "llm_probes_total" and s.labels["outcome"] == "auth_error"]
    assert auth[0].value == 1 and auth[0].labels == {**ep(), "outcome": "auth_error"}
    buckets = [s for s in families["llm_probe_ttft_seconds"].samples if s.name.endswith("_bucket")]
    assert [float(s.labels["le"]) for s in buckets] == [*TTFT_BUCKETS_S, float("inf")]
    # Labels stay within the fixed sets.
    allowed = {"model", "provider", "outcome", "phase", "le", "version", "methodology", "reason", "window"}
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) <= allowed


def test_skipped_runs_are_counted_by_reason_from_zero(registry, metrics):
    def skipped(reason: str) -> float | None:
        return registry.get_sample_value("llm_monitor_skipped_runs_total", {"reason": reason})

    assert (skipped("max_instances"), skipped("misfire")) == (0, 0)  # increase() sees the first
    metrics.inc_skipped("max_instances", 3)
    metrics.inc_skipped("misfire")
    assert (skipped("max_instances"), skipped("misfire")) == (3, 1)


def test_misconfigured_follows_the_latest_probe_and_is_restored(registry, metrics):
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.CONFIG_ERROR))
    assert registry.get_sample_value("llm_endpoint_misconfigured", {"model": MODEL, "provider": "Cloudflare"}) == 1
    metrics.record_probe(MODEL, "Cloudflare", failed_result(ErrorKind.TIMEOUT))
    assert registry.get_sample_value("llm_endpoint_misconfigured", {"model": MODEL, "provider": "Cloudflare"}) == 0
    fresh = CollectorRegistry()
    build_metrics(fresh).restore({(MODEL, "Groq"): failed_result(ErrorKind.CONFIG_ERROR)}, {}, {})
    assert fresh.get_sample_value("llm_endpoint_misconfigured", {"model": MODEL, "provider": "Groq"}) == 1
    metrics.remove_endpoint(MODEL, "Cloudflare")
    assert registry.get_sample_value("llm_endpoint_misconfigured", {"model": MODEL, "provider": "Cloudflare"}) is None
