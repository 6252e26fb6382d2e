"""Cross-cutting HTTP behaviour: ETag/304, Cache-Control, CORS, gzip, security headers, 500s."""

from __future__ import annotations

import gzip
import logging
from dataclasses import replace

import httpx
import pytest

from api.caching import matching_tag
from tests.api.conftest import ALLOWED_ORIGIN, LLAMA, LLAMA_LIVE, make_settings

CACHED_PATHS = ["/v1/models", f"/v1/models/{LLAMA}/live"]


@pytest.mark.parametrize("path", CACHED_PATHS)
async def test_strong_etag_and_cache_control_then_304_on_if_none_match(client, path):
    first = await client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "public, max-age=60"
    assert (await client.get(path)).headers["etag"] == etag  # stable for the same figures

    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=60"

    weak_in_list = await client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak_in_list.status_code == 304
    stale = await client.get(path, headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == first.content


async def test_etag_changes_when_the_figures_change(app_factory, fake_live):
    app = app_factory()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        path = f"/v1/models/{LLAMA}/live"
        before = await client.get(path)
        model = fake_live.entries[0][0]
        fake_live.entries[0] = (model, replace(LLAMA_LIVE, best_ttft_ms=250.0))
        after = await client.get(path, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.json()["best_ttft_ms"] == 250.0
    assert after.headers["etag"] != before.headers["etag"]


async def test_cache_max_age_follows_settings(app_factory):
    app = app_factory(settings=make_settings(cache_max_age_s=15))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/v1/models")
    assert response.headers["cache-control"] == "public, max-age=15"


def test_if_none_match_parsing():
    tag = '"abc"'
    assert matching_tag(None, tag) is None
    assert matching_tag('"abd"', tag) is None
    assert matching_tag("*", tag) == tag
    assert matching_tag(' "x" ,W/"abc"', tag) == '"abc"'
    assert matching_tag('"abc-gzip"', tag) == '"abc-gzip"'


async def test_gzip_when_accepted_with_a_distinct_strong_etag(client):
    plain = await client.get("/v1/models", headers={"Accept-Encoding": "identity"})
    assert len(plain.content) > 500
    assert "content-encoding" not in plain.headers

    # httpx decodes transparently; look at the raw bytes on the wire.
    async with client.stream("GET", "/v1/models", headers={"Accept-Encoding": "gzip"}) as streamed:
        raw = b"".join([chunk async for chunk in streamed.aiter_raw()])
        headers = streamed.headers
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content)
    # Each token once, though the route and gzip both add Accept-Encoding (CORS adds Origin).
    assert [t.strip() for t in headers["vary"].split(",")] == ["Accept-Encoding", "Origin"]
    assert headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'

    revalidated = await client.get(
        "/v1/models", headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["etag"] == headers["etag"]


async def test_small_responses_are_not_compressed(client):
    response = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


async def test_cors_simple_request_from_allowed_origin_gets_the_header(client):
    response = await client.get("/v1/models", headers={"Origin": ALLOWED_ORIGIN})
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "access-control-allow-credentials" not in response.headers
    assert "etag" in response.headers["access-control-expose-headers"].lower()
    assert "Origin" in response.headers["vary"]


async def test_cors_not_granted_to_other_origins(client):
    response = await client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_allows_get_only(client):
    preflight = await client.options(
        f"/v1/models/{LLAMA}/live",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert preflight.headers["access-control-allow-methods"] == "GET"
    assert "access-control-allow-credentials" not in preflight.headers
    revalidate = await client.options(
        "/v1/models",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert revalidate.status_code == 200
    credentials_header = await client.options(
        "/v1/models",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert credentials_header.status_code == 400

    post = await client.options(
        "/admin/reload", headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert post.status_code == 400
    evil = await client.options(
        "/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers


async def test_no_cors_headers_when_no_origin_is_configured(app_factory):
    app = app_factory(settings=make_settings(cors_origins=()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/v1/models", headers={"Origin": ALLOWED_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "path", ["/v1/models", f"/v1/models/{LLAMA}/live", "/healthz", "/metrics", "/v1/models/x/live", "/nope"]
)
async def test_security_headers_on_every_response(client, path):
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


class ExplodingLive:
    def models(self):
        raise RuntimeError("secret-db-password=hunter2 at /srv/app.py line 12")

    def model(self, model_id):
        raise ZeroDivisionError("division by zero")

    def providers(self, model_id):
        return None


async def test_internal_errors_are_generic_json_500_logged_server_side(app_factory, caplog):
    app = app_factory(live=ExplodingLive())
    transport = httpx.ASGITransport(app=app)  # raise_app_exceptions stays on: nothing may escape
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with caplog.at_level(logging.ERROR, logger="api.middleware"):
            response = await client.get("/v1/models", headers={"Origin": ALLOWED_ORIGIN})
            other = await client.get(f"/v1/models/{LLAMA}/live")

    for r in (response, other):
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error"}
        assert "Traceback" not in r.text and "hunter2" not in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
    # Inside CORS: a browser on an allowed origin can read the 500 too.
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "RuntimeError" in caplog.text and "Traceback" in caplog.text
