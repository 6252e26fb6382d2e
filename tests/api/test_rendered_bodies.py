"""RenderedBodies: serialise once per figures object, again only when the object changes."""

from __future__ import annotations

from pydantic import BaseModel

from api.caching import RenderedBodies, strong_etag


class Out(BaseModel):
    value: int


def test_body_is_rendered_once_per_source_identity():
    cache = RenderedBodies()
    calls = []

    def render(value):
        calls.append(value)
        return Out(value=value)

    first, second = object(), object()
    body, etag = cache.get("k", (first,), lambda: render(1))
    assert body == b'{"value":1}' and etag == strong_etag(body)
    assert cache.get("k", (first,), lambda: render(99)) == (body, etag)  # same object: cached
    assert calls == [1]
    body2, etag2 = cache.get("k", (second,), lambda: render(2))  # replaced figures: re-rendered
    assert body2 == b'{"value":2}' and etag2 != etag and calls == [1, 2]
    cache.get("k", (second, first), lambda: render(3))  # a different number of sources too
    assert calls == [1, 2, 3]
    cache.get("other", (second, first), lambda: render(4))  # keys are independent
    assert calls == [1, 2, 3, 4]
