"""ProbeScheduler with claims: probes only the slots it wins, counts the others, probes anyway
when the database cannot answer, and takes over a dead winner's slot (in-process schedulers on
the real PostgreSQL, a fake probe)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry

from monitor.catalog import parse_catalog
from monitor.coordination import LocalClaims, PostgresClaims, SlotGrid
from monitor.metrics import build_metrics
from monitor.scheduler import ProbeScheduler, job_id
from tests.service.conftest import result

INTERVAL_S = 0.5
CONFIG = "models:\n  - id: m\n    name: M\n    endpoints:\n" + "".join(
    f"      - {{provider: P{i}, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: x, timeout: 1s}}\n"
    for i in range(6)
)


class RecordingRunner:
    """Records (provider, slot) of every probe; `probe_s` long."""

    def __init__(self, grids: dict[str, SlotGrid], probe_s: float = 0.01) -> None:
        self.grids = grids
        self.probe_s = probe_s
        self.probes: list[tuple[str, datetime]] = []

    async def probe_endpoint(self, model, endpoint, on_start=None):
        if on_start is not None:
            on_start()
        now = datetime.now(timezone.utc)
        self.probes.append((endpoint.provider, self.grids[endpoint.provider].slot_of(now)))
        await asyncio.sleep(self.probe_s)
        return result()


def grids(location_index: int = 0, locations: int = 1) -> dict[str, SlotGrid]:
    return {f"P{i}": SlotGrid.of(job_id("m", f"P{i}"), INTERVAL_S, location_index=location_index,
                                 locations=locations) for i in range(6)}


def claim_counts(registry: CollectorRegistry) -> dict[str, float]:
    return {outcome: registry.get_sample_value("llm_monitor_slot_claims_total", {"outcome": outcome}) or 0.0
            for outcome in ("won", "claimed_elsewhere", "taken_over", "unavailable")}


async def test_three_schedulers_of_one_location_probe_each_slot_once(pg_store):
    catalog = parse_catalog(CONFIG, source="test")
    parts = []
    for i in range(3):
        registry = CollectorRegistry()
        claims = PostgresClaims(pg_store.engine, owner=f"s{i}")
        runner = RecordingRunner(grids())
        scheduler = ProbeScheduler(runner, build_metrics(registry), interval_of=lambda e: INTERVAL_S,
                                   claims=claims, location="a")
        parts.append((scheduler, runner, claims, registry))
    for scheduler, *_ in parts:
        scheduler.start(catalog, {})
    await asyncio.sleep(INTERVAL_S * 12)
    for scheduler, _, claims, _ in parts:
        await scheduler.shutdown(2)
        await claims.close()
    probes = Counter(probe for _, runner, _, _ in parts for probe in runner.probes)
    assert probes and max(probes.values()) == 1, [k for k, n in probes.items() if n > 1]
    per_endpoint = Counter(provider for provider, _ in probes)
    assert set(per_endpoint) == {f"P{i}" for i in range(6)}
    # No slot missed between each endpoint's first and last probe.
    for provider in per_endpoint:
        slots = sorted(slot for p, slot in probes if p == provider)
        steps = {(b - a).total_seconds() for a, b in zip(slots, slots[1:])}
        assert steps == {INTERVAL_S}, (provider, slots)
    counts = [claim_counts(registry) for *_, registry in parts]
    assert sum(c["won"] for c in counts) == len(probes)
    assert sum(c["claimed_elsewhere"] for c in counts) >= len(probes)  # each slot lost by the two others


async def test_a_scheduler_probes_without_a_claim_when_the_database_cannot_answer():
    class Broken(LocalClaims):
        async def claim(self, *args, **kwargs):
            raise ConnectionError("database down")

    registry = CollectorRegistry()
    runner = RecordingRunner(grids())
    scheduler = ProbeScheduler(runner, build_metrics(registry), interval_of=lambda e: INTERVAL_S, claims=Broken())
    scheduler.start(parse_catalog(CONFIG, source="test"), {})
    await asyncio.sleep(INTERVAL_S * 3)
    await scheduler.shutdown(1)
    assert len(runner.probes) >= 6
    assert claim_counts(registry)["unavailable"] == len(runner.probes)


async def test_a_slot_whose_winner_died_mid_probe_is_taken_over_within_the_slot(pg_store):
    catalog = parse_catalog(CONFIG.split("      - {provider: P1")[0], source="test")  # P0 only
    interval = 4.0
    slot_grid = {"P0": SlotGrid.of(job_id("m", "P0"), interval)}
    dead_claims = PostgresClaims(pg_store.engine, owner="dead")
    # The dead winner: claims a slot just begun, with a short lease, and never finishes it.
    now = datetime.now(timezone.utc)
    slot = slot_grid["P0"].next_start(now)
    await asyncio.sleep((slot - now).total_seconds() + 0.05)
    assert await dead_claims.claim("m", "P0", "a", slot, interval_s=interval, lease_s=0.2)
    await dead_claims.close()
    registry = CollectorRegistry()
    claims = PostgresClaims(pg_store.engine, owner="alive")
    runner = RecordingRunner(slot_grid)
    scheduler = ProbeScheduler(runner, build_metrics(registry), interval_of=lambda e: interval,
                               claims=claims, location="a", lease_margin_s=0.2)
    scheduler.start(catalog, {})
    try:
        for _ in range(40):
            await asyncio.sleep(0.1)
            if runner.probes:
                break
    finally:
        await scheduler.shutdown(1)
        await claims.close()
    # Within the slot (lease 0.2 s + a sweep of at most 1 s, of a 4 s slot), not at the next one.
    assert runner.probes == [("P0", slot)]
    assert claim_counts(registry)["taken_over"] == 1
