"""The fast path and the route agree on window and profile figures; the fast path answers a
cached window figure itself and leaves uncached or invalid queries to the route."""

from __future__ import annotations

import pytest

from tests.api.conftest import LLAMA, make_settings
from tests.api.test_fast_path import COMPARED, count_stack_calls, fetch

PATH = f"/v1/models/{LLAMA}/live"


@pytest.mark.parametrize("query", ["window=30d", "window=7d&input_tokens=1000", "input_tokens=100", "window=24h"])
@pytest.mark.parametrize("encoding", ["gzip", None])
async def test_window_figures_fast_path_matches_the_route(app_factory, fake_windows, query, encoding):
    settings = make_settings()
    fast, slow = app_factory(settings=settings), app_factory(settings=settings, fast_path=False)
    headers = {"Accept-Encoding": encoding} if encoding else {}
    calls = count_stack_calls(fast)
    first = await fetch(fast, "GET", f"{PATH}?{query}", headers)  # not cached yet: the route computes
    again = await fetch(fast, "GET", f"{PATH}?{query}", headers)  # cached now: the fast path answers
    routed = await fetch(slow, "GET", f"{PATH}?{query}", headers)
    default_window = query == "window=24h"
    assert calls == ([] if default_window else [PATH])
    for response in (again, routed):
        assert response.status_code == first.status_code == 200
        assert {h: response.headers.get(h) for h in COMPARED} == {h: first.headers.get(h) for h in COMPARED}
        assert response.content == first.content
    revalidated = await fetch(fast, "GET", f"{PATH}?{query}", {"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304
    assert len(calls) == (0 if default_window else 1)


async def test_each_identity_has_its_own_body(app_factory):
    app = app_factory()
    bodies = {q: (await fetch(app, "GET", f"{PATH}?{q}", {})).json()["window_s"] for q in ("window=7d", "window=30d", "window=90d")}
    assert bodies == {"window=7d": 604800.0, "window=30d": 2592000.0, "window=90d": 7776000.0}


@pytest.mark.parametrize("query", ["window=1y", "input_tokens=7", "window=7d&window=30d", "window=7d&extra=1"])
async def test_invalid_or_unusual_queries_go_to_the_route(app_factory, query):
    app = app_factory()
    calls = count_stack_calls(app)
    await fetch(app, "GET", f"{PATH}?window=7d", {})  # cache 7d
    response = await fetch(app, "GET", f"{PATH}?{query}", {})
    assert calls[-1] == PATH and len(calls) == 2
    if query.startswith(("window=1y", "input_tokens=7")):
        assert response.status_code == 422
