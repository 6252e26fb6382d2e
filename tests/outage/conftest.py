"""Shared parts of the liveness and confirmation tests: a catalog of loopback endpoints and the
probing parts of a process (runner, metrics, in-memory store) around them."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from monitor.catalog import Catalog, parse_catalog
from monitor.live import LiveFigures
from monitor.metrics import Metrics, build_metrics
from monitor.probes.base import ProbeResult
from monitor.probes.transport import build_client
from monitor.runner import ResultBuffer, Runner
from monitor.store import InMemoryStore
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response

MODEL = "m/one"
KEY = "sk-live-0123456789abcdef"


def catalog_of(*endpoints: tuple[str, str], liveness: str = "1s", confirm: str = "1s",
               failures: int = 2, key_env: str = "TEST_KEY") -> Catalog:
    """One model, one openai endpoint per (provider, base_url), keyed by `key_env`."""
    key_line = f", api_key_env: {key_env}"
    lines = "\n".join(
        f"      - {{provider: {name}, protocol: openai, base_url: '{url}', model: x{key_line}}}"
        for name, url in endpoints
    )
    return parse_catalog(f"""
defaults:
  interval: 30m
  timeout: 5s
  max_tokens: 16
  liveness: {{interval: {liveness}}}
  confirm: {{interval: {confirm}, failures: {failures}}}
models:
  - id: {MODEL}
    name: One
    endpoints:
{lines}
""", source="test")


ENVIRON = {"TEST_KEY": KEY}


def serve_openai(server: StreamServer, root: str = "") -> str:
    server.route("GET", f"{root}/v1/models", json_response(200, {"data": []}))
    server.route("POST", f"{root}/v1/chat/completions",
                 lambda _r: sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=4)))
    return f"{server.url}{root}/v1"


@dataclass
class Parts:
    registry: CollectorRegistry
    metrics: Metrics
    store: InMemoryStore
    runner: Runner
    buffer: ResultBuffer

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def stored(self, provider: str) -> list[ProbeResult]:
        """The endpoint's stored probes, oldest first."""
        await self.buffer.flush()
        return list(reversed(await self.store.recent_results(MODEL, provider, 10_000)))


@asynccontextmanager
async def probing_parts(catalog: Catalog, *, max_concurrent: int = 16):
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: e.interval_s)
    store = InMemoryStore()
    buffer = ResultBuffer(store, metrics, capacity=100_000)
    async with build_client() as client:
        runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ=ENVIRON,
                        max_concurrent=max_concurrent, location="here")
        yield Parts(registry, metrics, store, runner, buffer)
