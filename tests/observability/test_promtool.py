"""promtool on the committed Prometheus files: config, rules, rule unit tests, and a lint of a real
/metrics exposition built with `monitor.metrics.build_metrics`.

The binaries come from the Debian `prometheus` package; a missing binary FAILS these tests.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.metrics import build_metrics
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.stats import EndpointLive, ModelLive
from tests.observability.support import (
    PROMETHEUS_DIR,
    PROMTOOL_TESTS,
    RULE_FILES,
    require_binary,
    run_tool,
)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


def test_prometheus_config_is_valid(promtool: str) -> None:
    result = run_tool([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files glob must pick up every rule file (a typo would load nothing).
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_rule_files_are_valid(promtool: str) -> None:
    assert RULE_FILES, "no rule files under prometheus/rules"
    result = run_tool([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert PROMTOOL_TESTS, "no promtool tests under prometheus/tests"
    result = run_tool([promtool, "test", "rules", *map(str, PROMTOOL_TESTS)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# Each mutation weakens one alert the way a careless edit would; the unit tests must notice.
MUTATIONS = {
    # The page is the incident (declared down by quorum), never a raw count of failed probes.
    "endpoint-down on the raw failure count": (
        "max by (model, provider) (llm_endpoint_incident_open) == 1",
        "max by (model, provider) (llm_endpoint_consecutive_failures) >= 1",
    ),
    "endpoint-down once per probing process": (
        "max by (model, provider) (llm_endpoint_incident_open) == 1",
        "llm_endpoint_incident_open == 1",
    ),
    "endpoint-down during maintenance": (
        "\n            unless on (model, provider) max by (model, provider) (llm_endpoint_in_maintenance) == 1\n",
        "\n",
    ),
    "model-down from an impaired location's own view": (
        "(max by (model) (llm_model_active_endpoints) == 0", "(min by (model) (llm_model_active_endpoints) == 0",
    ),
    "model-down when the only location is impaired": (
        "              and on () (max (llm_location_impaired) == 1)\n", "              and on () (max (llm_location_impaired) == 2)\n",
    ),
    "model-down during maintenance": (
        "\n            unless on (model)\n          (count by (model) (max by (model, provider) (llm_endpoint_in_maintenance) == 1)"
        " >= max by (model) (llm_model_endpoints))\n",
        "\n",
    ),
    "location-impaired on one evaluation": ("max by (location) (llm_location_impaired) == 1\n        for: 2m\n", "max by (location) (llm_location_impaired) == 1\n"),
    "model-down without its for:": ("        for: 35m\n", "        for: 5m\n"),
    "stale threshold of 1.5 intervals": ("> 2.5 * llm_endpoint_probe_interval_seconds", "> 1.5 * llm_endpoint_probe_interval_seconds"),
    "TTFT regression on one slow probe": ("avg_over_time_7d\n        for: 1h\n", "avg_over_time_7d\n        for: 10m\n"),
    "rate limiting on any throttled probe": ("llm:endpoint_rate_limited_ratio:3h > 0.5", "llm:endpoint_rate_limited_ratio:3h > 0.1"),
    "monitor down on one failed scrape": ('absent(up{job="llm-monitor"})\n        for: 2m\n', 'absent(up{job="llm-monitor"})\n'),
    # A missing credential (config_error) must not page, neither per endpoint nor per model.
    "endpoint-down on a misconfigured endpoint": (
        "\n            unless on (model, provider) max by (model, provider) (llm_endpoint_misconfigured) == 1\n",
        "\n",
    ),
    "model-down when every endpoint is misconfigured": (
        "\n            unless on (model)\n          (count by (model) (llm_endpoint_misconfigured == 1)"
        " >= max by (model) (llm_model_endpoints))\n",
        "\n",
    ),
    "model-down muted by one misconfigured endpoint": (
        "(count by (model) (llm_endpoint_misconfigured == 1) >= max by (model) (llm_model_endpoints))",
        "(max by (model) (llm_endpoint_misconfigured) == 1)",
    ),
    # Restored last-probe timestamps are old until the first new probe after a restart.
    "stale alert right after a restart": (
        "\n            unless on (job, instance, model, provider)\n          (llm_endpoint_probe_interval_seconds"
        " > on (job, instance) group_left () (time() - process_start_time_seconds))\n",
        "\n",
    ),
    "stale alert held off by any process's restart": (
        "on (job, instance) group_left () (time() - process_start_time_seconds)",
        "on () group_left () (time() - max(process_start_time_seconds))",
    ),
    "scheduler lag on one late job": ("llm_monitor_scheduler_lag_seconds > 30\n        for: 40m\n", "llm_monitor_scheduler_lag_seconds > 30\n        for: 10m\n"),
    "overload on one skipped run": (
        "increase(llm_monitor_skipped_runs_total[10m])) > 0\n        for: 30m\n",
        "increase(llm_monitor_skipped_runs_total[10m])) > 0\n        for: 5m\n",
    ),
    "overload blind to misfires": (
        "increase(llm_monitor_skipped_runs_total[10m])",
        'increase(llm_monitor_skipped_runs_total{reason="max_instances"}[10m])',
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_rule_unit_tests_catch_a_weakened_alert(promtool: str, tmp_path: Path, mutation: str) -> None:
    before, after = MUTATIONS[mutation]
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    alerts = copy / "rules" / "alerts.yml"
    text = alerts.read_text()
    assert text.count(before) == 1, f"mutation anchor {before!r} not found once in alerts.yml"
    alerts.write_text(text.replace(before, after))
    result = run_tool([promtool, "test", "rules", *(str(copy / "tests" / p.name) for p in PROMTOOL_TESTS)], timeout=120)
    assert result.returncode != 0, f"promtool tests still pass with {mutation!r}:\n{result.stdout}"


def _result(*, ok: bool, kind: ErrorKind | None = None, ttft: float | None = None, at: datetime) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        error_kind=kind,
        error=None if ok else f"{kind} (test)",
        http_status=200 if ok else 500,
        started_at=at,
        ttft_s=ttft,
        connect_s=0.004 if ok else None,
        total_s=0.5,
        output_tokens=20 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=80.0 if ok else None,
        headers_s=0.05 if ok else None,
        dns_s=0.001 if ok else None,
        tcp_s=0.002 if ok else None,
        tls_s=0.01 if ok else None,
    )


def test_real_metrics_exposition_passes_promtool_lint(promtool: str) -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    now = datetime.now(timezone.utc)
    for provider in ("Fast", "Broken", "Throttled"):
        metrics.set_endpoint_interval("org/model-a", provider, 1800)
    metrics.record_probe("org/model-a", "Fast", _result(ok=True, ttft=0.25, at=now - timedelta(minutes=30)))
    metrics.record_probe("org/model-a", "Fast", _result(ok=True, ttft=0.3, at=now))
    metrics.record_probe("org/model-a", "Broken", _result(ok=False, kind=ErrorKind.HTTP_ERROR, at=now))
    metrics.record_probe("org/model-a", "Broken", _result(ok=False, kind=ErrorKind.CONNECT_ERROR, at=now))
    metrics.record_probe("org/model-a", "Throttled", _result(ok=False, kind=ErrorKind.RATE_LIMITED, at=now))
    endpoints = (
        EndpointLive("Fast", True, now, None, 275.0, 80.0, 1.0, 2),
        EndpointLive("Broken", False, now, "connect_error", None, None, 0.0, 2),
        EndpointLive("Throttled", False, now, "rate_limited", None, None, None, 1),
    )
    metrics.set_model_live(ModelLive("org/model-a", 275.0, 80.0, 1, 3, ("Fast", "Broken", "Throttled"), now, 86400.0, endpoints))
    metrics.set_scheduler_lag(0.002)
    metrics.inc_skipped("max_instances", 3)
    metrics.mark_db_write(now)
    metrics.set_buffered(0)
    exposition = generate_latest(registry).decode()

    # The exposition holds what the rules and dashboards read, with the labels they match on.
    for needle in (
        'llm_endpoint_consecutive_failures{model="org/model-a",provider="Broken"} 2.0',
        'llm_probes_total{model="org/model-a",outcome="rate_limited",provider="Throttled"} 1.0',
        'llm_model_active_endpoints{model="org/model-a"} 1.0',
        'llm_endpoint_probe_phase_seconds{model="org/model-a",phase="tls",provider="Fast"} 0.01',
        'llm_endpoint_probe_interval_seconds{model="org/model-a",provider="Fast"} 1800.0',
        'llm_monitor_skipped_runs_total{reason="max_instances"} 3.0',
        'llm_monitor_skipped_runs_total{reason="misfire"} 0.0',
    ):
        assert needle in exposition, f"missing from /metrics: {needle}"

    result = run_tool([promtool, "check", "metrics"], stdin=exposition)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"
