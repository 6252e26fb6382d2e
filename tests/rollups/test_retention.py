"""Retention on every backend: it removes exactly the raw probes past the cutoff that the roll-ups
absorbed (never an endpoint's latest or latest-ok probe), hourly roll-ups past theirs, no daily
roll-up; it keeps working while probes are written; and history reads the same before and after."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry

from api.app import create_app
from monitor.catalog import parse_catalog
from monitor.probes.base import ErrorKind
from monitor.retention import LIVE_WINDOW_MAX_S, hourly_cutoff, prune, raw_cutoff
from monitor.rollups import DAY, HOUR, RollupRules
from monitor.settings import Settings
from monitor.store import Store
from tests.rollups.conftest import MODEL, direct, merged_by_bucket, probe

NOW = datetime(2026, 12, 1, 13, 17, tzinfo=UTC)
CONFIG = f"""
defaults: {{interval: 30m, retention: {{raw: 30d, hourly: 100d}}}}
models:
  - id: {MODEL}
    name: Llama
    endpoints:
      - {{provider: Cloudflare, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: a}}
      - {{provider: Groq, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: b}}
      - {{provider: Gone, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: c}}
"""
CATALOG = parse_catalog(CONFIG, source="test")
RAW_CUTOFF = datetime(2026, 9, 2, tzinfo=UTC)  # midnight at or before NOW - 90 d (the live window wins over 30 d)
HOURLY_CUTOFF = datetime(2026, 8, 23, tzinfo=UTC)  # midnight at or before NOW - 100 d


def history(days: int = 130, every_h: int = 5, seed: int = 0):
    rng = random.Random(seed)
    rows = []
    for provider, location in (("Cloudflare", "eu-west"), ("Cloudflare", "us-east"), ("Groq", "eu-west")):
        moment = NOW - timedelta(days=days, minutes=rng.randrange(300))
        while moment < NOW:
            failed = rng.random() < 0.2
            rows.append((MODEL, provider, probe(
                moment, ok=not failed, error_kind=ErrorKind.TIMEOUT if failed else None, location=location,
                ttft_s=rng.uniform(0.1, 0.9), tps=rng.uniform(10, 90))))
            moment += timedelta(hours=every_h, minutes=rng.randrange(-30, 30))
    # An endpoint probed last 120 days ago: ok, then failing. Its latest and latest-ok probes stay.
    rows.append((MODEL, "Gone", probe(NOW - timedelta(days=121))))
    rows.append((MODEL, "Gone", probe(NOW - timedelta(days=120), ok=False, error_kind=ErrorKind.TIMEOUT)))
    rows.append((MODEL, "Gone", probe(NOW - timedelta(days=119, hours=1), ok=False, error_kind=ErrorKind.TIMEOUT)))
    return rows


def test_cutoffs() -> None:
    assert raw_cutoff(CATALOG, NOW) == RAW_CUTOFF
    assert NOW - RAW_CUTOFF >= timedelta(seconds=LIVE_WINDOW_MAX_S)
    assert hourly_cutoff(CATALOG, NOW) == HOURLY_CUTOFF
    # An open incident older than the cutoff keeps everything since its day.
    assert raw_cutoff(CATALOG, NOW, keep_since=datetime(2026, 8, 1, 7, tzinfo=UTC)) == datetime(2026, 8, 1, tzinfo=UTC)
    longer = parse_catalog(CONFIG.replace("raw: 30d", "raw: 200d").replace("hourly: 100d", "hourly: 400d"), source="t")
    assert raw_cutoff(longer, NOW) == datetime(2026, 5, 15, tzinfo=UTC)


async def remaining_starts(store: Store) -> dict[str, list[datetime]]:
    return {p: sorted(r.started_at for r in await store.recent_results(MODEL, p, 100_000))
            for p in ("Cloudflare", "Groq", "Gone")}


async def test_prune_removes_exactly_what_it_should(store: Store) -> None:
    rows = history()
    await store.insert_results(rows)
    report = await prune(store, CATALOG, now=NOW, batch=37, pause_s=0)
    assert report.absorbed == len(rows)
    assert (report.raw_cutoff, report.hourly_cutoff) == (RAW_CUTOFF, HOURLY_CUTOFF)
    expected = {p: sorted(r.started_at for _, q, r in rows if q == p and r.started_at >= RAW_CUTOFF)
                for p in ("Cloudflare", "Groq")}
    expected["Gone"] = [NOW - timedelta(days=121), NOW - timedelta(days=119, hours=1)]  # latest ok, latest
    assert await remaining_starts(store) == expected
    assert report.raw_removed == len(rows) - sum(len(v) for v in expected.values())
    far = (NOW - timedelta(days=400), NOW + timedelta(days=1))
    for provider in ("Cloudflare", "Groq", "Gone"):
        hours = await store.rollup_buckets(MODEL, provider, HOUR, *far)
        assert hours and min(hours) >= HOURLY_CUTOFF or provider == "Gone" and not hours
        days = await store.rollup_buckets(MODEL, provider, DAY, *far)
        assert days == merged_by_bucket(direct(rows, DAY), MODEL, provider)  # every day kept, unchanged
    again = await prune(store, CATALOG, now=NOW, batch=37, pause_s=0)
    assert (again.absorbed, again.raw_removed, again.hourly_removed) == (0, 0, 0)


async def test_a_probe_the_rollups_have_not_absorbed_is_never_removed(store: Store) -> None:
    old = [(MODEL, "Groq", probe(NOW - timedelta(days=100, hours=h))) for h in range(5)]
    old.append((MODEL, "Groq", probe(NOW)))
    await store.insert_results(old)
    assert await store.prune_raw(RAW_CUTOFF, batch=100) == 0
    await store.rollup(RollupRules())
    late = (MODEL, "Groq", probe(NOW - timedelta(days=99)))
    await store.insert_results([late])  # after the roll-up ran: not absorbed yet
    assert await store.prune_raw(RAW_CUTOFF, batch=100) == 5
    # While the late probe is the newest row it stays even once absorbed: SQLite would give its
    # id to the next row (max(id) + 1), which the watermark has passed already.
    await store.rollup(RollupRules())
    assert await store.prune_raw(RAW_CUTOFF, batch=100) == 0
    await store.insert_results([(MODEL, "Groq", probe(NOW + timedelta(minutes=1)))])
    assert NOW - timedelta(days=99) in (await remaining_starts(store))["Groq"]
    await store.rollup(RollupRules())
    assert await store.prune_raw(RAW_CUTOFF, batch=100) == 1
    # The late probe landed in its bucket, though the others of that day are gone by now.
    days = await store.rollup_buckets(MODEL, "Groq", DAY, NOW - timedelta(days=200), NOW + timedelta(days=1))
    assert sum(b.counts["ok"] for b in days.values()) == 8


async def test_retention_under_concurrent_writes(store: Store) -> None:
    rows = history(days=110, every_h=7, seed=1)
    await store.insert_results(rows)
    written = list(rows)
    rng = random.Random(9)

    async def writer() -> None:
        for round_ in range(30):
            # a buffered result from before the cutoff, written while pruning runs, and a new one
            batch = [(MODEL, "Groq", probe(NOW - timedelta(days=95, minutes=round_), location="eu-west")),
                     (MODEL, "Cloudflare", probe(NOW - timedelta(minutes=rng.randrange(600)), location="eu-west"))]
            await store.insert_results(batch)
            written.extend(batch)
            await asyncio.sleep(0)

    results = await asyncio.gather(writer(), prune(store, CATALOG, now=NOW, batch=5, pause_s=0))
    assert results[1].raw_removed > 0
    await prune(store, CATALOG, now=NOW, batch=5, pause_s=0)  # absorbs and prunes the late ones
    expected = {p: sorted(r.started_at for _, q, r in written if q == p and r.started_at >= RAW_CUTOFF)
                for p in ("Cloudflare", "Groq")}
    expected["Gone"] = [NOW - timedelta(days=121), NOW - timedelta(days=119, hours=1)]
    assert await remaining_starts(store) == expected
    # Every probe ever written is counted once in the roll-ups, pruned or not.
    far = (NOW - timedelta(days=400), NOW + timedelta(days=1))
    for provider in ("Cloudflare", "Groq", "Gone"):
        assert await store.rollup_buckets(MODEL, provider, DAY, *far) == merged_by_bucket(
            direct(written, DAY), MODEL, provider)


class _Live:
    def providers(self, model_id: str):
        return ("Cloudflare", "Groq", "Gone") if model_id == MODEL else None


async def _get(store: Store, query: str) -> httpx.Response:
    async def ready() -> dict:
        return {}

    app = create_app(settings=Settings(), store=store, live=_Live(), registry=CollectorRegistry(), readiness=ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get(f"/v1/models/{MODEL}/endpoints/Cloudflare/{query}")


async def test_history_is_continuous_across_the_retention_boundary(store: Store) -> None:
    await store.insert_results(history(days=125, every_h=3, seed=2))
    await store.rollup(RollupRules())
    queries = (
        "history?step=1d&from=2026-07-01T00:00:00Z&to=2026-12-02T00:00:00Z",
        "history?step=1h&from=2026-08-25T00:00:00Z&to=2026-09-10T00:00:00Z",  # across the raw cutoff
        "history?step=1h&from=2026-08-25T00:00:00Z&to=2026-09-10T00:00:00Z&location=us-east",
    )
    before = [(await _get(store, q)).json() for q in queries]
    assert sum(b["samples"] for b in before[1]["data"]) > 0
    report = await prune(store, CATALOG, now=NOW, batch=100, pause_s=0)
    assert report.raw_removed > 0
    assert [(await _get(store, q)).json() for q in queries] == before
    await store.rebuild_rollups(RollupRules())  # rebuilds what raw probes remain, keeps the rest
    assert [(await _get(store, q)).json() for q in queries] == before
