"""The self-test over real loopback sockets: the reference endpoint's true TTFT against the
monitor's measurement, a deliberately blocked event loop making the process suspect, probes
recorded meanwhile flagged (result, store, counter) and the flag clearing once the loop is free,
a failed self-test counting as suspect, and a running service exporting the error without the
reference endpoint appearing in any figure or stored row."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.catalog.models import Catalog, EndpointConfig, ModelConfig
from monitor.live import LiveFigures
from monitor.metrics import build_metrics
from monitor.runner import ResultBuffer, Runner
from monitor.selftest import RECHECK_S, ReferenceEndpoint, SelfTest
from monitor.store.memory import InMemoryStore
from tests.e2e.conftest import config_for, provider, start_service, wait_until  # noqa: F401 (fixtures)

BLOCK_S = 0.5
MAX_ERROR_S = 0.1


class LoopBlocker:
    """Blocks the monitor's event loop for BLOCK_S as soon as the reference request arrives
    (called in the reference server's thread), while `armed`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.armed = False

    def __call__(self) -> None:
        if self.armed:
            self.loop.call_soon_threadsafe(time.sleep, BLOCK_S)


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def blocked_selftest(client):
    blocker = LoopBlocker(asyncio.get_running_loop())
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    selftest = SelfTest(
        client=client, metrics=metrics.ops, max_error_s=MAX_ERROR_S, interval_s=300,
        reference=ReferenceEndpoint(on_request=blocker),
    )
    try:
        yield selftest, blocker, metrics, registry
    finally:
        selftest.stop()


async def test_idle_reading_is_measured_against_the_servers_own_clock(client):
    selftest = SelfTest(client=client, max_error_s=5.0, interval_s=300)
    try:
        reading = await selftest.run_once()
    finally:
        selftest.stop()
    assert reading.ok and not reading.suspect and not selftest.suspect
    assert reading.true_ttft_s is not None and reading.true_ttft_s >= 0.2  # the server sleeps 0.2 s first
    assert reading.error_s == reading.measured_ttft_s - reading.true_ttft_s
    assert selftest.next_delay_s() == 300
    # The reference server's request log is emptied after every reading (bounded memory).
    assert selftest.reference.server.requests == []


async def test_a_blocked_event_loop_makes_the_process_suspect_and_probes_are_flagged(blocked_selftest, provider):
    selftest, blocker, metrics, registry = blocked_selftest
    endpoint = EndpointConfig(provider="P", protocol="openai", base_url=provider.url + "/v1", model="x")
    model = ModelConfig(id="m/1", name="M", endpoints=(endpoint,))
    store = InMemoryStore()
    live = LiveFigures(Catalog(models=(model,)), window_s=86400, interval_of=lambda e: 1800.0)
    buffer = ResultBuffer(store, metrics, capacity=100)
    metrics.set_endpoint_interval("m/1", "P", 1800)
    runner = Runner(client=selftest._client, metrics=metrics, live=live, buffer=buffer, environ={},
                    max_concurrent=2, is_suspect=selftest.is_suspect)

    before = await runner.probe_endpoint(model, endpoint)
    assert before.ok and not before.suspect

    blocker.armed = True
    reading = await selftest.run_once()
    assert reading.ok and reading.suspect and selftest.suspect
    assert reading.error_s > MAX_ERROR_S  # the first token waited for the blocked loop
    assert registry.get_sample_value("llm_monitor_selftest_ttft_error_seconds") == reading.error_s
    assert registry.get_sample_value("llm_monitor_selftest_max_error_seconds") == MAX_ERROR_S
    assert registry.get_sample_value("llm_monitor_selftest_suspect") == 1
    assert selftest.next_delay_s() == RECHECK_S  # re-checks soon while suspect

    during = await runner.probe_endpoint(model, endpoint)
    assert during.ok and during.suspect

    blocker.armed = False
    recovered = await selftest.run_once()
    assert recovered.ok and not selftest.suspect, recovered
    assert registry.get_sample_value("llm_monitor_selftest_suspect") == 0
    after = await runner.probe_endpoint(model, endpoint)
    assert not after.suspect

    assert await buffer.flush()
    stored = [r.suspect for r in reversed(await store.recent_results("m/1", "P", 10))]
    assert stored == [False, True, False]
    assert registry.get_sample_value("llm_probes_suspect_total", {"model": "m/1", "provider": "P"}) == 1
    assert registry.get_sample_value("llm_monitor_selftest_runs_total", {"outcome": "ok"}) == 2


async def test_a_failed_self_test_is_suspect(client):
    selftest = SelfTest(client=client, max_error_s=MAX_ERROR_S, interval_s=300)
    selftest.start()
    selftest.reference.stop()  # nothing answers on the reference port any more
    reading = await selftest.run_once()
    assert not reading.ok and reading.suspect and selftest.suspect
    assert reading.error_s > 0


def test_a_running_service_exports_the_error_and_keeps_the_reference_out_of_figures(start_service, provider, tmp_path):
    service = start_service(config_for(("Healthy", provider.url)))

    def exported() -> str | None:
        text = service.get("/metrics").text
        runs = [line for line in text.splitlines() if line.startswith('llm_monitor_selftest_runs_total{outcome="ok"}')]
        return text if runs and float(runs[0].split()[-1]) >= 1 else None

    text = wait_until(exported, timeout_s=30, what="a self-test reading on /metrics")
    assert "llm_monitor_selftest_ttft_error_seconds " in text
    wait_until(lambda: service.get("/v1/models/m/one/live").json()["endpoints"][0]["samples"] >= 1,
               timeout_s=30, what="a probe of the catalog endpoint")
    models = service.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["m/one"]
    labelled = [line for line in service.get("/metrics").text.splitlines() if 'model="' in line]
    assert labelled and all('model="m/one"' in line for line in labelled)
    assert service.stop() == 0
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        rows = db.execute("SELECT DISTINCT model_id, provider FROM probe_result").fetchall()
    assert rows == [("m/one", "Healthy")]
