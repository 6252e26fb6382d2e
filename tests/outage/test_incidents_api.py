"""`GET /v1/incidents` over a real store (SQLite and PostgreSQL, as an API-only process reads
them): the contract's shape, filters, newest first, and 422 naming the bad parameter."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.api.conftest import FakeLive, make_settings
from tests.outage.incidents_support import T0, any_store, any_store_url  # noqa: F401 (fixtures)
from api.app import create_app
from prometheus_client import CollectorRegistry


@pytest.fixture
async def client(any_store):
    async def readiness():
        return {}

    app = create_app(settings=make_settings(), store=any_store, live=FakeLive([]),
                     registry=CollectorRegistry(), readiness=readiness)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _seed(store):
    old, _ = await store.open_incident("m/a", "P1", started_at=T0, detected_at=T0 + timedelta(minutes=2),
                                       error_kinds={"timeout": 2}, locations=["a"])
    await store.resolve_incident(old.id, T0 + timedelta(minutes=7))
    new, _ = await store.open_incident("m/a", "P2", started_at=T0 + timedelta(hours=1),
                                       detected_at=T0 + timedelta(hours=1, minutes=1),
                                       error_kinds={"connect_error": 3, "timeout": 1}, locations=["b", "a"])
    return old, new


async def test_shape_and_order(client, any_store) -> None:
    old, new = await _seed(any_store)
    response = await client.get("/v1/incidents")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json") and "etag" in response.headers
    data = response.json()["data"]
    assert [item["id"] for item in data] == [new.id, old.id]
    assert data[0] == {
        "id": new.id, "model": "m/a", "provider": "P2",
        "started_at": "2026-12-01T13:00:00Z", "detected_at": "2026-12-01T13:01:00Z", "resolved_at": None,
        "error_kinds": {"connect_error": 3, "timeout": 1}, "locations": ["a", "b"],
    }
    assert data[1]["resolved_at"] == "2026-12-01T12:07:00Z"


async def test_filters(client, any_store) -> None:
    old, new = await _seed(any_store)

    async def ids(query: str) -> list[int]:
        response = await client.get("/v1/incidents" + query)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert await ids("?open=true") == [new.id]
    assert await ids("?open=false") == [old.id]
    assert await ids("?provider=P1") == [old.id]
    assert await ids("?model=m/a&provider=P2") == [new.id]
    assert await ids("?model=nope") == []
    assert await ids("?since=2026-12-01T12:30:00Z") == [new.id]
    assert await ids("?since=2026-12-01T13:05:00%2B01:00") == [new.id, old.id]  # 12:05Z, before 12:07Z
    assert await ids("?limit=1") == [new.id]


@pytest.mark.parametrize("query, name", [
    ("?open=maybe", "open"), ("?since=yesterday", "since"), ("?since=2026-12-01T12:00:00", "since"),
    ("?limit=0", "limit"), ("?limit=5000", "limit"),
])
async def test_bad_query_is_422_naming_the_parameter(client, query: str, name: str) -> None:
    response = await client.get("/v1/incidents" + query)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert name in response.text
