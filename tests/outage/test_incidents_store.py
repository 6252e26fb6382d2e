"""The incident verbs of the store on every backend (memory, SQLite, PostgreSQL): one open
incident per endpoint, idempotent resolution, listing filters and order, failure summaries,
and the partial unique index under concurrent openers from separate connections."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from monitor.probes.base import ErrorKind, Trigger
from monitor.store import SQLStore, Store, open_store
from tests.outage.incidents_support import T0, any_store, any_store_url, pg_url, result  # noqa: F401 (fixtures)

M, P = "org/model", "Prov"


async def _open(store: Store, model: str = M, provider: str = P, minute: int = 0):
    return await store.open_incident(
        model, provider, started_at=T0 + timedelta(minutes=minute),
        detected_at=T0 + timedelta(minutes=minute + 2), error_kinds={"timeout": 2}, locations=["b", "a"],
    )


async def test_open_once_then_resolve_idempotently(any_store: Store) -> None:
    first, created = await _open(any_store)
    assert created and first.open
    assert first.locations == ("a", "b") and dict(first.error_kinds) == {"timeout": 2}
    again, created_again = await _open(any_store, minute=5)
    assert not created_again and again.id == first.id and again.started_at == first.started_at

    await any_store.update_incident(first.id, error_kinds={"timeout": 3, "http_error": 1}, locations=["a"])
    [listed] = await any_store.list_incidents(open=True)
    assert dict(listed.error_kinds) == {"http_error": 1, "timeout": 3} and listed.locations == ("a",)

    resolved_at = T0 + timedelta(minutes=9)
    assert await any_store.resolve_incident(first.id, resolved_at) is True
    assert await any_store.resolve_incident(first.id, resolved_at + timedelta(minutes=1)) is False
    [closed] = await any_store.list_incidents()
    assert closed.resolved_at == resolved_at
    # A resolved incident is never changed again, and the next outage is a new incident.
    await any_store.update_incident(first.id, error_kinds={"x": 1}, locations=["z"])
    assert dict((await any_store.list_incidents())[0].error_kinds) == {"http_error": 1, "timeout": 3}
    second, created = await _open(any_store, minute=20)
    assert created and second.id != first.id
    assert [i.id for i in await any_store.list_incidents(open=True)] == [second.id]


async def test_list_filters_and_newest_first(any_store: Store) -> None:
    a, _ = await _open(any_store, M, "A", minute=0)
    await any_store.resolve_incident(a.id, T0 + timedelta(minutes=10))
    b, _ = await _open(any_store, M, "B", minute=30)
    c, _ = await _open(any_store, "other/model", "A", minute=60)
    assert [i.id for i in await any_store.list_incidents()] == [c.id, b.id, a.id]
    assert [i.id for i in await any_store.list_incidents(model_id=M)] == [b.id, a.id]
    assert [i.id for i in await any_store.list_incidents(provider="A")] == [c.id, a.id]
    assert [i.id for i in await any_store.list_incidents(open=False)] == [a.id]
    assert [i.id for i in await any_store.list_incidents(open=True)] == [c.id, b.id]
    # since: open at some moment at or after it (a resolved at minute 10 is left out after that).
    assert [i.id for i in await any_store.list_incidents(since=T0 + timedelta(minutes=11))] == [c.id, b.id]
    assert [i.id for i in await any_store.list_incidents(since=T0 + timedelta(minutes=10))] == [c.id, b.id, a.id]
    assert [i.id for i in await any_store.list_incidents(limit=1)] == [c.id]


async def test_failure_summary_counts_provider_failures_only(any_store: Store) -> None:
    at = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    await any_store.insert_results([
        (M, P, result(at(0), ok=False, kind=ErrorKind.TIMEOUT, location="a")),
        (M, P, result(at(1), ok=False, kind=ErrorKind.TIMEOUT, location="b", trigger=Trigger.CONFIRM)),
        (M, P, result(at(2), ok=False, kind=ErrorKind.HTTP_ERROR, location="a")),
        (M, P, result(at(3), ok=False, kind=ErrorKind.RATE_LIMITED, location="c")),
        (M, P, result(at(4), ok=False, kind=ErrorKind.CONFIG_ERROR, location="c")),
        (M, P, result(at(5), ok=True, location="c")),
        (M, "Other", result(at(2), ok=False, kind=ErrorKind.TIMEOUT, location="z")),
        (M, P, result(at(-5), ok=False, kind=ErrorKind.TIMEOUT, location="old")),
    ])
    kinds, locations = await any_store.failure_summary(M, P, at(0))
    assert kinds == {"timeout": 2, "http_error": 1}
    assert locations == ("a", "b")


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.db'}"
    return request.getfixturevalue("pg_url")


async def test_concurrent_openers_on_separate_connections_leave_one_open(sql_url: str) -> None:
    """Several stores (separate engines, as separate processes have) open the same incident at
    once: the partial unique index lets exactly one insert win, and all agree on its id."""
    stores: list[SQLStore] = [await open_store(sql_url) for _ in range(4)]
    try:
        for _ in range(5):  # repeat: a race that is lost only sometimes must show up
            outcomes = await asyncio.gather(*(_open(s) for s in stores for _ in range(3)))
            assert sum(created for _, created in outcomes) == 1
            assert len({incident.id for incident, _ in outcomes}) == 1
            incident_id = outcomes[0][0].id
            resolved = await asyncio.gather(
                *(s.resolve_incident(incident_id, T0 + timedelta(hours=1)) for s in stores)
            )
            assert sorted(resolved) == [False, False, False, True]
        async with stores[0].engine.connect() as connection:
            total = (await connection.execute(sa.text("SELECT count(*) FROM incident"))).scalar_one()
            still_open = (
                await connection.execute(sa.text("SELECT count(*) FROM incident WHERE resolved_at IS NULL"))
            ).scalar_one()
        assert (total, still_open) == (5, 0)
        # The database itself refuses a second open row, whatever a client does.
        await _open(stores[0])
        with pytest.raises(sa.exc.IntegrityError):
            async with stores[0].engine.begin() as connection:
                await connection.execute(sa.text(
                    "INSERT INTO incident (model_id, provider, started_at, detected_at, error_kinds, locations)"
                    " VALUES (:m, :p, :t, :t, '{}', '[]')"
                ), {"m": M, "p": P, "t": T0})
    finally:
        for s in stores:
            await s.close()
