"""Runner and restart restore: only configured endpoints reach /metrics; every result is stored."""

from __future__ import annotations

from monitor.catalog import parse_catalog
from monitor.live import LiveFigures
from monitor.probes.base import ErrorKind
from monitor.runner import ResultBuffer, Runner
from llm_monitor.service import restore_metrics
from monitor.store import InMemoryStore
from tests.service.conftest import result

CONFIG = """
models:
  - id: m1
    endpoints:
      - {provider: A, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
"""


def endpoint_series(registry, name: str, model: str, provider: str) -> float | None:
    return registry.get_sample_value(name, {"model": model, "provider": provider})


async def test_a_probe_of_an_endpoint_removed_while_in_flight_is_stored_but_not_exported(metrics, registry):
    catalog = parse_catalog(CONFIG, source="t")
    live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: 60)
    buffer = ResultBuffer(InMemoryStore(), metrics, capacity=10)
    runner = Runner(client=None, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=1)
    runner.record("m1", "A", result(0))
    runner.record("m1", "Gone", result(1))  # its job was unscheduled by a reload mid-probe
    assert buffer.pending == 2  # both stored
    assert endpoint_series(registry, "llm_endpoint_last_probe_timestamp_seconds", "m1", "A") is not None
    assert endpoint_series(registry, "llm_endpoint_last_probe_timestamp_seconds", "m1", "Gone") is None
    assert registry.get_sample_value("llm_probes_total", {"model": "m1", "provider": "Gone", "outcome": "ok"}) is None


async def test_restart_restores_only_configured_endpoints(metrics, registry):
    catalog = parse_catalog(CONFIG, source="t")
    live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: 60)
    history = InMemoryStore()  # includes an endpoint no longer configured
    timed_out = result(5, ok=False)
    timed_out.error_kind = ErrorKind.TIMEOUT
    await history.insert_results([("m1", "A", result(0)), ("m9", "Removed", result(1)), ("m9", "Removed", timed_out)])
    await restore_metrics(history, metrics, live, catalog)
    assert endpoint_series(registry, "llm_endpoint_consecutive_failures", "m1", "A") == 0
    assert endpoint_series(registry, "llm_endpoint_ttft_seconds", "m1", "A") == 0.1
    for name in ("llm_endpoint_consecutive_failures", "llm_endpoint_last_probe_timestamp_seconds",
                 "llm_endpoint_ttft_seconds"):
        assert endpoint_series(registry, name, "m9", "Removed") is None, name
