"""The liveness and confirmation metrics: their verbs, and that they leave with their endpoint."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from monitor.metrics import build_metrics
from tests.service.conftest import result


def test_liveness_and_confirmation_series_leave_with_their_endpoint():
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    for provider in ("Gone", "Kept"):
        metrics.count_liveness("m", provider, "ok")
        metrics.set_liveness_up("m", provider, True)
        metrics.count_confirm("m", provider, result(ok=False))
    metrics.remove_endpoint("m", "Gone")

    def value(name, provider, **labels):
        return registry.get_sample_value(name, {"model": "m", "provider": provider, **labels})

    assert value("llm_liveness_up", "Gone") is None
    assert value("llm_liveness_checks_total", "Gone", outcome="ok") is None
    assert value("llm_confirm_probes_total", "Gone", outcome="http_error") is None
    assert value("llm_liveness_up", "Kept") == 1
    assert value("llm_liveness_checks_total", "Kept", outcome="ok") == 1
    assert value("llm_confirm_probes_total", "Kept", outcome="http_error") == 1
    metrics.set_liveness_up("m", "Kept", None)
    assert value("llm_liveness_up", "Kept") is None
