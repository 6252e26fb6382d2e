"""RenderedBodies: serialise once per figures object, again only when the object changes."""

from __future__ import annotations

from pydantic import BaseModel

from api.caching import RenderedBodies, strong_etag


class Out(BaseModel):
    value: int


def test_body_is_rendered_once_per_source_identity():
    cache = RenderedBodies(max_age_s=60, gzip_minimum_bytes=500)
    calls = []

    def render(value):
        calls.append(value)
        return Out(value=value)

    first, second = object(), object()
    rendered = cache.get("k", (first,), lambda: render(1))
    assert rendered.body == b'{"value":1}' and rendered.etag == strong_etag(rendered.body)
    assert dict(rendered.raw_headers)[b"content-length"] == b"11"
    assert dict(rendered.raw_headers)[b"cache-control"] == b"public, max-age=60"
    assert cache.get("k", (first,), lambda: render(99)) is rendered  # same object: cached
    assert calls == [1]
    again = cache.get("k", (second,), lambda: render(2))  # replaced figures: re-rendered
    assert again.body == b'{"value":2}' and again.etag != rendered.etag and calls == [1, 2]
    cache.get("k", (second, first), lambda: render(3))  # a different number of sources too
    assert calls == [1, 2, 3]
    cache.get("other", (second, first), lambda: render(4))  # keys are independent
    assert calls == [1, 2, 3, 4]
