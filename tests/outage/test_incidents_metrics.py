"""The incident metrics' exposition: names and labels the rules and dashboards read, stale
location series dropped, removal on config reload, and `promtool check metrics` on the result."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from monitor.endpoint_state import STATES
from monitor.metrics import build_incident_metrics
from tests.observability.support import require_binary, run_tool

EP = {"model": "org/m", "provider": "P"}


def test_exposition_and_stale_series() -> None:
    registry = CollectorRegistry()
    metrics = build_incident_metrics(registry)
    metrics.set_state("org/m", "P", "regional", STATES)
    metrics.set_incident_open("org/m", "P", False)
    metrics.set_in_maintenance("org/m", "P", False)
    metrics.set_location_up("org/m", "P", {"a": True, "b": False})
    metrics.set_impaired({"a": False, "b": True})
    metrics.observe_time_to_detect("org/m", "P", 95.0)
    value = registry.get_sample_value
    assert [value("llm_endpoint_state", {**EP, "state": s}) for s in STATES] == [0, 0, 1, 0, 0, 0]
    assert value("llm_location_endpoint_up", {**EP, "location": "b"}) == 0
    assert value("llm_location_impaired", {"location": "b"}) == 1
    assert value("llm_incident_time_to_detect_seconds_bucket", {**EP, "le": "120.0"}) == 1
    assert value("llm_incident_time_to_detect_seconds_bucket", {**EP, "le": "90.0"}) == 0

    text = generate_latest(registry).decode()
    result = run_tool([require_binary("promtool"), "check", "metrics"], stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr

    metrics.set_location_up("org/m", "P", {"a": True})  # b stopped probing it
    metrics.set_impaired({"a": False})
    assert value("llm_location_endpoint_up", {**EP, "location": "b"}) is None
    assert value("llm_location_endpoint_up", {**EP, "location": "a"}) == 1
    assert value("llm_location_impaired", {"location": "b"}) is None

    metrics.remove_endpoint("org/m", "P", STATES)  # left the config
    text = generate_latest(registry).decode()
    assert 'provider="P"' not in text
