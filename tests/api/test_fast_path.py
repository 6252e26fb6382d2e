"""The live-figures fast path answers exactly as the documented route would.

Two apps over the same fakes, one with the fast path and one without, get the same requests
(gzip or not; CORS for listed origins, for any origin or off; an allowed, foreign or no `Origin`;
a current or stale ETag; unknown model); status, body (after decoding) and headers must agree.
HEAD is included to show the fast path leaves it to the application (the documented route has no
HEAD).
"""

from __future__ import annotations

import gzip
import itertools

import httpx
import pytest

from tests.api.conftest import ALLOWED_ORIGIN, LLAMA, make_settings

PATH = f"/v1/models/{LLAMA}/live"
# Compared as-is; content-length differs legitimately only with gzip (mtime/level are fixed
# on our side, while the middleware's output carries a timestamp), so bodies are compared decoded.
COMPARED = ("content-type", "etag", "cache-control", "vary", "content-encoding",
            "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy",
            "access-control-allow-origin", "access-control-expose-headers")


async def fetch(app, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, headers=headers)


def count_stack_calls(app) -> list[str]:
    """Paths of the requests that reach the application's middleware stack."""
    calls: list[str] = []
    stack = app.build_middleware_stack()

    async def counted(scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await stack(scope, receive, send)

    app.middleware_stack = counted
    return calls


CORS_CONFIGS = {"listed": (ALLOWED_ORIGIN,), "any": ("*",), "off": ()}


@pytest.mark.parametrize(
    "cors, encoding, origin, etag_state, method",
    list(itertools.product(CORS_CONFIGS, ["gzip, br", "identity", None], [ALLOWED_ORIGIN, "https://evil.example", None],
                           ["none", "current", "gzip-current", "stale"], ["GET", "HEAD"])),
)
async def test_fast_path_matches_the_documented_route(app_factory, cors, encoding, origin, etag_state, method):
    settings = make_settings(cors_origins=CORS_CONFIGS[cors])
    fast, slow = app_factory(settings=settings), app_factory(settings=settings, fast_path=False)
    first = await fetch(slow, "GET", PATH, {})
    etag = first.headers["etag"]
    headers: dict[str, str] = {}
    if encoding:
        headers["Accept-Encoding"] = encoding
    if origin:
        headers["Origin"] = origin
    if etag_state == "current":
        headers["If-None-Match"] = etag
    elif etag_state == "gzip-current":
        headers["If-None-Match"] = etag[:-1] + '-gzip"'
    elif etag_state == "stale":
        headers["If-None-Match"] = '"0000"'
    stack_calls = count_stack_calls(fast)
    a, b = await fetch(fast, method, PATH, headers), await fetch(slow, method, PATH, headers)
    # The fast path answered every GET itself and left HEAD to the application.
    assert stack_calls == ([] if method == "GET" else [PATH])
    assert a.status_code == b.status_code
    assert a.content == b.content  # decoded by httpx when gzip-coded
    for name in COMPARED:
        assert a.headers.get(name) == b.headers.get(name), name
    if a.headers.get("content-encoding") == "gzip" and method == "GET":
        assert int(a.headers["content-length"]) < len(a.content)


async def test_unknown_model_falls_through_to_the_route_404(app_factory):
    app = app_factory()
    stack_calls = count_stack_calls(app)
    response = await fetch(app, "GET", "/v1/models/nope/live", {})
    assert response.status_code == 404 and response.json() == {"detail": "unknown model: nope"}
    assert stack_calls == ["/v1/models/nope/live"]


async def test_a_failure_in_the_fast_path_falls_back_to_the_application(app_factory, fake_live, caplog):
    class Exploding:
        def model(self, model_id):
            raise RuntimeError("boom")

        def __getattr__(self, name):
            return getattr(fake_live, name)

    app = app_factory(live=Exploding())
    response = await fetch(app, "GET", PATH, {})
    # The documented route hits the same failure and answers with the generic 500.
    assert response.status_code == 500 and response.json() == {"detail": "internal error"}
    assert "fast path failed" in caplog.text


def test_precompressed_body_is_plain_gzip_of_the_identity_body():
    from api.caching import RenderedBodies
    from pydantic import BaseModel

    class Big(BaseModel):
        text: str

    rendered = RenderedBodies(max_age_s=60, gzip_minimum_bytes=500).get("k", (object(),), lambda: Big(text="x" * 2000))
    assert gzip.decompress(rendered.gzip_body) == rendered.body
    assert dict(rendered.gzip_raw_headers)[b"content-encoding"] == b"gzip"
    small = RenderedBodies(max_age_s=60, gzip_minimum_bytes=500).get("k", (object(),), lambda: Big(text="x"))
    assert small.gzip_body is None
