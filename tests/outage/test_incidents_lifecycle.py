"""IncidentTracker over a real store on every backend, with a test clock: an incident opens when
the endpoint is down by quorum, records its start, kinds and locations, resolves at the first
success by quorum; maintenance opens none; a new tracker (a restarted process) resumes the open
incident; two trackers on separate connections evaluating at once never open two."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry

from monitor.catalog import Catalog
from monitor.catalog.models import MaintenanceWindow
from monitor.incidents import IncidentTracker
from monitor.metrics import build_incident_metrics
from monitor.probes.base import ErrorKind, Trigger
from monitor.store import Store, open_store
from tests.outage.incidents_support import T0, any_store, any_store_url, result  # noqa: F401 (fixtures)

M = "org/model"


def catalog(*providers: str, maintenance: tuple = ()) -> Catalog:
    return Catalog.model_validate({
        "models": [{
            "id": M, "name": "Model",
            "endpoints": [
                {"provider": p, "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "x",
                 "interval_s": 60.0}
                for p in providers
            ],
        }],
        "maintenance": maintenance,
    })


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


def tracker(store: Store, cat: Catalog, clock: Clock, registry: CollectorRegistry | None = None) -> IncidentTracker:
    return IncidentTracker(
        store, cat, interval_of=lambda e: e.interval_s, window_s=3600.0, writes=True, clock=clock,
        metrics=None if registry is None else build_incident_metrics(registry),
    )


async def probe(store: Store, clock: Clock, seconds: float, provider: str = "P", ok: bool = True, *,
                location: str = "a", kind: ErrorKind = ErrorKind.CONNECT_ERROR, trigger=Trigger.SCHEDULED) -> None:
    await store.insert_results([(M, provider, result(clock.at(seconds), ok, kind=kind, location=location, trigger=trigger))])


async def test_lifecycle_one_location(any_store: Store) -> None:
    clock = Clock()
    registry = CollectorRegistry()
    t = tracker(any_store, catalog("P"), clock, registry)
    value = lambda name, **labels: registry.get_sample_value(name, {"model": M, "provider": "P", **labels})  # noqa: E731

    await probe(any_store, clock, 0)
    await t.evaluate()
    assert value("llm_endpoint_state", state="up") == 1 and value("llm_endpoint_incident_open") == 0
    await probe(any_store, clock, 60, ok=False, kind=ErrorKind.TIMEOUT)
    await t.evaluate()
    assert await any_store.list_incidents() == []  # one failure is not an outage yet
    await probe(any_store, clock, 65, ok=False, trigger=Trigger.CONFIRM)
    await probe(any_store, clock, 66, ok=False, kind=ErrorKind.RATE_LIMITED)  # neither counts nor breaks
    await t.evaluate()
    [incident] = await any_store.list_incidents()
    assert incident.open and incident.started_at == T0 + timedelta(seconds=60)
    assert incident.detected_at == T0 + timedelta(seconds=66)
    assert dict(incident.error_kinds) == {"timeout": 1, "connect_error": 1} and incident.locations == ("a",)
    assert value("llm_endpoint_state", state="down") == 1 and value("llm_endpoint_incident_open") == 1
    assert value("llm_incident_time_to_detect_seconds_sum") == 6.0
    assert t.open_incident(M, "P").id == incident.id

    await probe(any_store, clock, 120, ok=False)
    await t.evaluate()
    [still] = await any_store.list_incidents()
    assert still.id == incident.id and dict(still.error_kinds) == {"timeout": 1, "connect_error": 2}

    await probe(any_store, clock, 180, ok=True)
    clock.at(181)
    await t.evaluate()
    [resolved] = await any_store.list_incidents()
    assert resolved.resolved_at == T0 + timedelta(seconds=180)
    assert value("llm_endpoint_incident_open") == 0 and value("llm_endpoint_state", state="up") == 1
    assert value("llm_incident_time_to_detect_seconds_count") == 1


async def test_quorum_of_two_locations(any_store: Store) -> None:
    clock = Clock()
    registry = CollectorRegistry()
    t = tracker(any_store, catalog("P"), clock, registry)
    for second in (0, 30, 60):
        await probe(any_store, clock, second, location="a")
        await probe(any_store, clock, second + 1, ok=False, location="b")
    await t.evaluate()
    assert t.state_of(M, "P").state == "regional" and await any_store.list_incidents() == []
    assert registry.get_sample_value("llm_location_endpoint_up", {"model": M, "provider": "P", "location": "b"}) == 0
    assert registry.get_sample_value("llm_location_endpoint_up", {"model": M, "provider": "P", "location": "a"}) == 1
    await probe(any_store, clock, 90, ok=False, location="a")
    await probe(any_store, clock, 95, ok=False, location="a")
    await t.evaluate()
    [incident] = await any_store.list_incidents(open=True)
    assert incident.locations == ("a", "b") and incident.started_at == T0 + timedelta(seconds=1)
    # b back: 1 of 2 ok is no quorum of successes, the incident stays open
    await probe(any_store, clock, 100, location="b")
    await t.evaluate()
    assert (await any_store.list_incidents())[0].open
    await probe(any_store, clock, 110, location="a")
    await t.evaluate()
    assert (await any_store.list_incidents())[0].resolved_at == T0 + timedelta(seconds=110)


async def test_maintenance_opens_no_incident(any_store: Store) -> None:
    clock = Clock()
    window = MaintenanceWindow(start=T0, end=T0 + timedelta(minutes=10), model=M, reason="upgrade")
    registry = CollectorRegistry()
    t = tracker(any_store, catalog("P", maintenance=(window,)), clock, registry)
    await probe(any_store, clock, 10, ok=False)
    await probe(any_store, clock, 20, ok=False)
    await t.evaluate()
    assert t.state_of(M, "P").state == "down" and await any_store.list_incidents() == []
    assert registry.get_sample_value("llm_endpoint_in_maintenance", {"model": M, "provider": "P"}) == 1


async def test_a_new_tracker_resumes_the_open_incident(any_store: Store) -> None:
    clock = Clock()
    first = tracker(any_store, catalog("P"), clock)
    await probe(any_store, clock, 0, ok=False)
    await probe(any_store, clock, 10, ok=False)
    await first.evaluate()
    [incident] = await any_store.list_incidents()
    restarted = tracker(any_store, catalog("P"), clock, CollectorRegistry())
    await probe(any_store, clock, 70, ok=False)
    await restarted.evaluate()
    assert [i.id for i in await any_store.list_incidents()] == [incident.id]
    assert restarted.open_incident(M, "P").id == incident.id
    await probe(any_store, clock, 130)
    await restarted.evaluate()
    [resolved] = await any_store.list_incidents()
    assert resolved.id == incident.id and not resolved.open


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("pg_url")


from tests.outage.incidents_support import pg_url  # noqa: E402,F401 (fixture)


async def test_concurrent_trackers_on_separate_connections_open_one_incident(shared_url: str) -> None:
    stores = [await open_store(shared_url) for _ in range(3)]
    try:
        clock = Clock()
        # R stays healthy: a location failing for every endpoint would be impaired, not a quorum
        trackers = [tracker(s, catalog("P", "Q", "R"), clock) for s in stores]
        for round_ in range(4):
            base = round_ * 600
            await probe(stores[0], clock, base, "R")
            for provider in ("P", "Q"):
                await probe(stores[0], clock, base, provider, ok=False)
                await probe(stores[0], clock, base + 5, provider, ok=False)
            await asyncio.gather(*(t.evaluate() for t in trackers for _ in range(2)))
            open_now = await stores[0].list_incidents(open=True)
            assert sorted(i.provider for i in open_now) == ["P", "Q"]
            for provider in ("P", "Q"):
                await probe(stores[0], clock, base + 60, provider)
            await asyncio.gather(*(t.evaluate() for t in trackers))
            assert await stores[0].list_incidents(open=True) == []
        assert len(await stores[0].list_incidents()) == 8  # 4 outages x 2 endpoints, no duplicate
    finally:
        for s in stores:
            await s.close()


async def test_a_sweep_evaluates_only_what_new_probes_or_time_can_have_changed(any_store: Store) -> None:
    """Five endpoints probed once: the first sweep evaluates all; a sweep a second later none;
    a new probe of one endpoint that one; once probes age out of the recent range (two 60 s
    intervals) the time-driven change is caught, and the endpoint goes unknown."""
    clock = Clock()
    providers = [f"P{index}" for index in range(5)]
    t = tracker(any_store, catalog(*providers), clock)
    for provider in providers:
        await probe(any_store, clock, 0, provider)
    evaluated: list[str] = []
    original = t._state

    def counting(model_id, endpoint, samples, now):
        evaluated.append(endpoint.provider)
        return original(model_id, endpoint, samples, now)

    t._state = counting  # type: ignore[method-assign]
    await t.evaluate()
    assert sorted(evaluated) == providers
    evaluated.clear()
    clock.at(1)
    await t.evaluate()
    assert evaluated == []
    await probe(any_store, clock, 2, "P3")
    await t.evaluate()
    assert evaluated == ["P3"]
    evaluated.clear()
    clock.at(121)  # every probe at 0 s leaves the 120 s recent range (P3's at 2 s not yet)
    await t.evaluate()
    assert sorted(evaluated) == providers
    assert t.state_of(M, "P0").state == "unknown" and t.state_of(M, "P3").state == "up"


async def test_healing_re_reads_a_slice_per_sweep_and_finds_a_missed_row(any_store: Store) -> None:
    """A row the id cursor skipped (a transaction that committed late) is found by the healing
    rotation: one endpoint of five per 15 s sweep (HEAL_S 300 s), so within five sweeps."""
    clock = Clock()
    providers = [f"P{index}" for index in range(5)]
    t = tracker(any_store, catalog(*providers), clock)
    for provider in providers:
        await probe(any_store, clock, 0, provider)
    await t.evaluate()
    t._cursor = 10**12  # every later id looks already read
    await probe(any_store, clock, 10, "P2", ok=False)
    await probe(any_store, clock, 11, "P2", ok=False)
    seen_after = None
    for sweep in range(1, 6):
        clock.at(11 + sweep)
        await t.evaluate()
        if t.state_of(M, "P2").state == "down":
            seen_after = sweep
            break
    assert seen_after is not None and 1 <= seen_after <= 5
    assert all(t.state_of(M, p).state == "up" for p in providers if p != "P2")
