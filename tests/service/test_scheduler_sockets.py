"""The scheduler driving the real runner over loopback providers: every configured endpoint gets
probed under its own job, and an overloaded schedule shows in metrics, not in the log."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from monitor.catalog import Catalog, parse_catalog
from monitor.live import LiveFigures
from monitor.metrics import Metrics, build_metrics
from monitor.probes.transport import build_client
from monitor.runner import ResultBuffer, Runner
from monitor.scheduler import ProbeScheduler
from monitor.store import InMemoryStore
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response


@dataclass
class Probing:
    catalog: Catalog
    registry: CollectorRegistry
    metrics: Metrics
    live: LiveFigures
    scheduler: ProbeScheduler

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@asynccontextmanager
async def probing(config: str, *, interval_s: float, max_concurrent: int):
    """The scheduler, runner, live figures and metrics of a scheduler process (in-memory store)."""
    catalog = parse_catalog(config, source="test")
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: interval_s)
    buffer = ResultBuffer(InMemoryStore(), metrics, capacity=100_000)
    async with build_client() as client:
        runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={},
                        max_concurrent=max_concurrent)
        scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: interval_s)
        scheduler.start(catalog, {})
        try:
            yield Probing(catalog, registry, metrics, live, scheduler)
        finally:
            await scheduler.shutdown(grace_s=1)


def serve_openai(server: StreamServer, root: str, *, ttft_s: float = 0.01) -> str:
    """An OpenAI-compatible provider under `root` on the server; returns its base_url."""
    server.route("GET", f"{root}/v1/models", json_response(200, {"data": []}))
    server.route("POST", f"{root}/v1/chat/completions",
                 lambda _r: sse_stream_response(openai_stream(ttft_s=ttft_s, gap_s=0.005, n_tokens=5)))
    return f"{server.url}{root}/v1"


async def test_endpoints_whose_ids_join_to_the_same_text_are_probed_separately():
    # "a|b" via "c" and "a" via "b|c": a `model|provider` job id would make these one job.
    with StreamServer() as server:
        first = serve_openai(server, "/first")
        second = serve_openai(server, "/second")
        config = f"""
models:
  - id: "a|b"
    endpoints:
      - {{provider: c, protocol: openai, base_url: "{first}", model: x}}
  - id: a
    endpoints:
      - {{provider: "b|c", protocol: openai, base_url: "{second}", model: x}}
"""
        async with probing(config, interval_s=0.5, max_concurrent=4) as run:
            assert len(list(run.catalog.endpoints())) == 2
            await asyncio.sleep(1.6)

        assert len(server.requests_to("/first/v1/chat/completions")) >= 2
        assert len(server.requests_to("/second/v1/chat/completions")) >= 2
        for model, provider in (("a|b", "c"), ("a", "b|c")):
            assert run.sample("llm_probes_total", model=model, provider=provider, outcome="ok") >= 2
            assert run.sample("llm_endpoint_up", model=model, provider=provider) == 1
            live = run.live.model(model)
            assert [(e.provider, e.active) for e in live.endpoints] == [(provider, True)]
            assert live.endpoints[0].samples >= 2


def many_endpoints_config(base_url: str, count: int) -> str:
    line = '      - {{provider: P{i}, protocol: openai, base_url: "{url}", model: x}}'
    endpoints = "\n".join(line.format(i=i, url=base_url) for i in range(count))
    return f"models:\n  - id: org/model\n    endpoints:\n{endpoints}\n"


def skip_lines(records: list[logging.LogRecord]) -> list[str]:
    words = ("skipped", "maximum number of running instances", "was missed")
    return [r.getMessage() for r in records if any(w in r.getMessage() for w in words)]


async def test_an_overloaded_schedule_counts_skipped_runs_reports_real_lag_and_logs_a_summary(caplog):
    # 150 endpoints every second against a provider taking 0.5 s, 10 probes at a time: about 20
    # probes a second can start, so most runs find the endpoint's previous run still waiting.
    count, interval_s = 150, 1.0
    caplog.set_level(logging.WARNING)
    with StreamServer() as server:
        slow = serve_openai(server, "/slow", ttft_s=0.5)
        config = many_endpoints_config(slow, count)
        async with probing(config, interval_s=interval_s, max_concurrent=10) as run:
            await asyncio.sleep(4.0)
            served = len(server.requests_to("/slow/v1/chat/completions"))
            skipped = run.sample("llm_monitor_skipped_runs_total", reason="max_instances")
            lag_s = run.sample("llm_monitor_scheduler_lag_seconds")

    assert served < count * 4 / 2  # the schedule really was overloaded: most runs could not start
    assert skipped > count  # several skipped runs per endpoint, each counted
    # The backlog shows: a probe starts seconds after its oldest unserved run, not 1 ms.
    assert lag_s > 3 * 0.5
    lines = skip_lines(caplog.records)
    assert 1 <= len(lines) <= 3, lines
    assert any(f"(max_instances {int(skipped)}" in line for line in lines), lines
