"""The pages and the badge over HTTP (in-process app, real LiveFigures over a 2,000-model catalog):
paging and server-side search, size of the first view, validators, headers, bad input."""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.pages.view import PAGE_SIZE
from bench.dataset import PROVIDERS, model_id_of
from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.live import LiveFigures
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.settings import Settings
from monitor.store import InMemoryStore

MODELS = 2000
NOW = datetime.now(timezone.utc)


def result(ok: bool, *, ttft_s: float = 0.25, minutes_ago: float = 1) -> ProbeResult:
    return ProbeResult(
        ok=ok, error_kind=None if ok else ErrorKind.TIMEOUT, error=None if ok else "timeout",
        http_status=200 if ok else None, started_at=NOW - timedelta(minutes=minutes_ago),
        ttft_s=ttft_s if ok else None, connect_s=None, total_s=1.0, output_tokens=20 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None, tokens_per_second=40.0 if ok else None,
        protocol="openai", model="x",
    )


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """Built directly (parsing the YAML of 6,000 endpoints takes seconds on a busy machine)."""
    return Catalog(models=tuple(
        ModelConfig(id=model_id_of(m), name=f"Bench model {m}", endpoints=tuple(
            EndpointConfig(provider=provider, protocol="openai", base_url="http://127.0.0.1:9/v1", model=f"m-{m}-{p}")
            for p, provider in enumerate(PROVIDERS[:3])
        ))
        for m in range(MODELS)
    ))


@pytest.fixture
def live(catalog):
    figures = LiveFigures(catalog, window_s=86400.0, interval_of=lambda e: e.interval_s)
    providers = [e.provider for e in catalog.models[0].endpoints]
    for provider in providers:  # model 0: every endpoint up
        figures.add(model_id_of(0), provider, result(True))
    figures.add(model_id_of(1), providers[0], result(True))  # model 1: degraded (1 of 3)
    for provider in providers:  # model 2: down
        figures.add(model_id_of(2), provider, result(False))
    return figures


def client_for(live, *, cors_origins=()) -> httpx.AsyncClient:
    settings = Settings(cors_origins=list(cors_origins), window_s=86400.0)
    app = create_app(settings=settings, store=InMemoryStore(), live=live, registry=CollectorRegistry(),
                     readiness=lambda: None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def cards_of(html: str) -> list[str]:
    return re.findall(r'<article class="card" data-model="([^"]+)"', html)


async def test_first_view_is_one_page_under_100_kb_with_validators(live):
    async with client_for(live) as client:
        response = await client.get("/status", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert len(response.content) < 100_000
        assert len(cards_of(response.text)) == PAGE_SIZE
        assert f"Page 1 of {MODELS // PAGE_SIZE}" in response.text
        assert response.headers["cache-control"] == "public, max-age=60"
        etag = response.headers["etag"]
        zipped = await client.get("/status", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["etag"] == etag[:-1] + '-gzip"'
        assert int(zipped.headers["content-length"]) < 20_000
        again = await client.get("/status", headers={"If-None-Match": etag})
        # The page shows times to the minute: across a minute boundary it is a new page.
        if again.status_code != 304:
            assert again.status_code == 200 and again.headers["etag"] != etag
            etag = again.headers["etag"]
            again = await client.get("/status", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        css_url = re.search(r'<link rel="stylesheet" href="([^"]+)"', response.text).group(1)
        css = await client.get(css_url)
        assert css.status_code == 200 and "immutable" in css.headers["cache-control"]
        assert css.headers["content-type"].startswith("text/css")
        csp = response.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in response.headers


async def test_paging_search_and_filters_run_on_the_server(live):
    async with client_for(live) as client:
        last = await client.get("/status", params={"page": MODELS // PAGE_SIZE})
        assert cards_of(last.text) == [model_id_of(i) for i in range(MODELS - PAGE_SIZE, MODELS)]
        beyond = await client.get("/status", params={"page": 999})
        assert cards_of(beyond.text) == cards_of(last.text)
        one = await client.get("/status", params={"q": model_id_of(1234)})
        assert cards_of(one.text) == [model_id_of(1234)]
        case = await client.get("/status", params={"q": model_id_of(1234).upper()})
        assert cards_of(case.text) == [model_id_of(1234)]
        none = await client.get("/status", params={"q": "no such model anywhere"})
        assert cards_of(none.text) == [] and "No model matches." in none.text
        down = await client.get("/status", params={"filter": "down"})
        assert cards_of(down.text) == [model_id_of(2)]
        degraded = await client.get("/status", params={"filter": "degraded"})
        assert cards_of(degraded.text) == [model_id_of(1)]
        assert "Down (1)" in down.text and "Degraded (1)" in down.text
        # Page links keep the query.
        page = await client.get("/status", params={"q": "model", "page": 2})
        assert 'href="/status?q=model&amp;page=3"' in page.text


@pytest.mark.parametrize("params, field", [
    ({"filter": "broken"}, "filter"), ({"page": "0"}, "page"), ({"page": "x"}, "page"),
    ({"q": "x" * 201}, "q"), ({"theme": "pink"}, "theme"),
])
async def test_bad_query_values_get_422_naming_the_field(live, params, field):
    async with client_for(live) as client:
        response = await client.get("/status", params=params)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_unknown_models_get_404(live):
    async with client_for(live) as client:
        for path in ("/status/models/no/such", "/embed/models/no/such", "/v1/models/no/such/badge.svg"):
            response = await client.get(path)
            assert response.status_code == 404 and "unknown model" in response.json()["detail"]


async def test_embed_frame_ancestors_follow_the_cors_origins(live):
    path = "/embed/models/" + model_id_of(0)
    async with client_for(live) as client:
        closed = await client.get(path)
        assert closed.headers["content-security-policy"].endswith("frame-ancestors 'none'")
        assert closed.headers["x-frame-options"] == "DENY"
    origins = ["https://catalog.example", "http://127.0.0.1:8080"]
    async with client_for(live, cors_origins=origins) as client:
        opened = await client.get(path)
        assert opened.headers["content-security-policy"].endswith("frame-ancestors " + " ".join(origins))
        assert "x-frame-options" not in opened.headers
        assert "set-cookie" not in opened.headers


async def test_badge_is_rendered_once_per_figures_version(live):
    path = "/v1/models/" + model_id_of(0) + "/badge.svg"
    async with client_for(live) as client:
        first = await client.get(path, params={"metric": "ttft"})
        assert ET.fromstring(first.content).find(".//{http://www.w3.org/2000/svg}text[@class='value']").text == "250 ms"
        same = await client.get(path, params={"metric": "ttft"})
        assert same.headers["etag"] == first.headers["etag"]
        cache = client._transport.app.state.badges  # type: ignore[attr-defined]
        body = cache._entries[(model_id_of(0), "ttft")][2]
        live.recompute(force=True)  # new figures objects, equal values: the badge stays
        await client.get(path, params={"metric": "ttft"})
        assert cache._entries[(model_id_of(0), "ttft")][2] is body
        embed = await client.get("/embed/models/" + model_id_of(0))
        embeds = client._transport.app.state.pages.embeds  # type: ignore[attr-defined]
        kept = embeds._entries[(model_id_of(0), None)][2]
        live.recompute(force=True)
        assert (await client.get("/embed/models/" + model_id_of(0))).content == embed.content
        assert embeds._entries[(model_id_of(0), None)][2] is kept
        provider = live.catalog.models[0].endpoints[0].provider
        live.add(model_id_of(0), provider, result(True, ttft_s=0.1, minutes_ago=0.5))
        changed = await client.get(path, params={"metric": "ttft"})
        assert changed.headers["etag"] != first.headers["etag"]
        assert cache._entries[(model_id_of(0), "ttft")][2] is not body
        gz = await client.get(path, params={"metric": "uptime"}, headers={"Accept-Encoding": "gzip"})
        assert gz.headers.get("content-encoding") == "gzip"
        assert ET.fromstring(gzip.decompress(gz.content) if gz.content[:2] == b"\x1f\x8b" else gz.content) is not None
        down = await client.get("/v1/models/" + model_id_of(2) + "/badge.svg", params={"metric": "active"})
        assert b">0/3<" in down.content and b"#c62828" in down.content


def app_client(live, *, fast_path: bool, cors_origins) -> httpx.AsyncClient:
    settings = Settings(cors_origins=list(cors_origins), window_s=86400.0)
    app = create_app(settings=settings, store=InMemoryStore(), live=live, registry=CollectorRegistry(),
                     readiness=lambda: None, fast_path=fast_path)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize("cors_origins", [(), ("https://catalog.example",)])
async def test_fast_path_replies_equal_the_routes(live, cors_origins):
    """Badge and embed answered in front of the stack carry the route's status, headers and body
    for every mix of query, gzip, Origin and If-None-Match; what it does not handle falls through."""
    paths = [
        "/v1/models/" + model_id_of(0) + "/badge.svg",
        *("/v1/models/" + model_id_of(0) + f"/badge.svg?metric={m}" for m in ("ttft", "throughput", "active", "uptime")),
        "/v1/models/" + model_id_of(2) + "/badge.svg?metric=active",
        "/v1/models/" + model_id_of(0) + "/badge.svg?metric=bogus",  # 422 from the route
        "/v1/models/nope/badge.svg",  # 404 from the route
        "/embed/models/" + model_id_of(0), "/embed/models/" + model_id_of(0) + "?theme=dark",
        "/embed/models/" + model_id_of(1) + "?theme=light", "/embed/models/" + model_id_of(0) + "?theme=blue",
        "/embed/models/nope", "/v1/models/" + model_id_of(0) + "/live",
    ]
    header_sets = [{}, {"Accept-Encoding": "gzip"}, {"Origin": "https://catalog.example", "Accept-Encoding": "gzip"},
                   {"Origin": "https://elsewhere.example"}]
    async with app_client(live, fast_path=True, cors_origins=cors_origins) as fast, \
            app_client(live, fast_path=False, cors_origins=cors_origins) as slow:
        for path in paths:
            for headers in header_sets:
                a, b = await fast.get(path, headers=headers), await slow.get(path, headers=headers)
                assert (a.status_code, a.content) == (b.status_code, b.content), (path, headers)
                assert sorted(a.headers.multi_items()) == sorted(b.headers.multi_items()), (path, headers)
                if a.status_code == 200:
                    tag = a.headers["etag"]
                    a2 = await fast.get(path, headers={**headers, "If-None-Match": tag})
                    b2 = await slow.get(path, headers={**headers, "If-None-Match": tag})
                    assert a2.status_code == b2.status_code == 304, (path, headers)
                    assert sorted(a2.headers.multi_items()) == sorted(b2.headers.multi_items()), (path, headers)


async def test_fast_path_answers_badges_and_embeds_of_known_models_only(live):
    async with app_client(live, fast_path=True, cors_origins=()) as client:
        fast = client._transport.app.fast_path  # type: ignore[attr-defined]

        def scope(path: str, query: bytes = b"", method: str = "GET") -> dict:
            return {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}

        badge = "/v1/models/" + model_id_of(0) + "/badge.svg"
        assert fast.answer(scope(badge, b"metric=uptime")).status == 200
        assert fast.answer(scope("/embed/models/" + model_id_of(0), b"theme=dark")).status == 200
        assert fast.answer(scope("/v1/models/" + model_id_of(0) + "/live")).status == 200  # the inner fast path
        assert fast.answer(scope(badge, b"metric=bogus")) is None
        assert fast.answer(scope(badge, b"metric=ttft&x=1")) is None
        assert fast.answer(scope(badge, method="HEAD")) is None
        assert fast.answer(scope("/v1/models/nope/badge.svg")) is None
        assert fast.answer(scope("/status")) is None
