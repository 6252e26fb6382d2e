"""/metrics: rendered in a worker thread, shared by concurrent scrapers, reused for
`metrics_cache_s`, gzip-coded for scrapers that accept it, optionally behind a bearer token."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from pydantic import SecretStr

from api.exposition import MetricsExposition
from tests.api.conftest import make_settings


class CountingCollector:
    """Counts collections and records which thread ran them; each takes `delay_s`."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.delay_s = delay_s

    def collect(self):
        self.calls += 1
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)
        yield GaugeMetricFamily("test_collections", "collections so far", value=self.calls)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_scrapes_share_one_rendering_made_off_the_event_loop():
    registry = CollectorRegistry()
    collector = CountingCollector(delay_s=0.2)
    registry.register(collector)
    exposition = MetricsExposition(registry, max_age_s=5)

    bodies = await asyncio.gather(*(exposition.get(accept=None, accept_encoding=None) for _ in range(10)))

    assert collector.calls == 1
    assert threading.get_ident() not in collector.threads
    assert len({b.body for b in bodies}) == 1 and b"test_collections 1.0" in bodies[0].body


async def test_a_rendering_is_reused_for_max_age_then_made_again():
    registry = CollectorRegistry()
    gauge = Gauge("test_value", "a value", registry=registry)
    clock = FakeClock()
    exposition = MetricsExposition(registry, max_age_s=5, clock=clock)

    gauge.set(1)
    first = await exposition.get(accept=None, accept_encoding=None)
    gauge.set(2)
    clock.now += 4.9
    assert (await exposition.get(accept=None, accept_encoding=None)).body == first.body
    clock.now += 0.2
    assert b"test_value 2.0" in (await exposition.get(accept=None, accept_encoding=None)).body


async def test_zero_max_age_renders_every_scrape():
    registry = CollectorRegistry()
    collector = CountingCollector()
    registry.register(collector)
    exposition = MetricsExposition(registry, max_age_s=0)
    await exposition.get(accept=None, accept_encoding=None)
    await exposition.get(accept=None, accept_encoding=None)
    assert collector.calls == 2


async def test_a_scraper_that_gives_up_does_not_cancel_the_shared_rendering():
    registry = CollectorRegistry()
    collector = CountingCollector(delay_s=0.2)
    registry.register(collector)
    exposition = MetricsExposition(registry, max_age_s=5)
    impatient = asyncio.ensure_future(exposition.get(accept=None, accept_encoding=None))
    patient = asyncio.ensure_future(exposition.get(accept=None, accept_encoding=None))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert b"test_collections 1.0" in (await patient).body
    assert collector.calls == 1


async def test_gzip_scrapers_get_the_compressed_exposition(app_factory):
    app = app_factory()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        coded = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert plain.status_code == coded.status_code == 200
    assert "content-encoding" not in plain.headers
    assert coded.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in coded.headers["vary"]
    assert coded.text == plain.text  # httpx decodes: exactly the same exposition
    assert int(coded.headers["content-length"]) < len(plain.content)


async def test_a_metrics_token_guards_metrics_only(app_factory):
    settings = make_settings().model_copy(update={"metrics_token": SecretStr("scrape-s3cret")})
    app = app_factory(settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-s3cret"})
        health = await client.get("/healthz")
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "scrape-s3cret" not in missing.text + wrong.text
    assert right.status_code == 200 and "llm_endpoint_up" in right.text
    assert health.status_code == 200


async def test_without_a_metrics_token_metrics_are_open(client):
    assert (await client.get("/metrics")).status_code == 200
