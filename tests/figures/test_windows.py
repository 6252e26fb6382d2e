"""`WindowFigures` over every store backend: figures of longer windows (from the database) and of
other workload profiles (from memory) equal the pure figures computed directly from the same
probes; the cache follows the default figures and its age limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from monitor.catalog import parse_catalog
from monitor.live import LiveFigures
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.stats import WINDOW_FIELDS, endpoint_live
from monitor.windows import WINDOWS, WindowFigures

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
MODEL = "org/model"
STEP = timedelta(hours=2)
DAYS = 40
MAINTENANCE = (NOW - timedelta(days=12), NOW - timedelta(days=10))

CATALOG = f"""
defaults: {{interval: 2h, timeout: 10s, max_tokens: 16}}
maintenance:
  - {{start: {MAINTENANCE[0].isoformat()}, end: {MAINTENANCE[1].isoformat()}, model: {MODEL}, provider: Alpha, reason: "move"}}
models:
  - id: {MODEL}
    name: Model
    endpoints:
      - {{provider: Alpha, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: a}}
      - {{provider: Bravo, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: b, input_tokens: 1000, keep_cold_starts: true}}
"""


def result(i: int, provider: str) -> ProbeResult:
    """Probe i (0 = newest) of an endpoint: a deterministic mix of outcomes, triggers, profiles,
    cold starts and answer checks."""
    started = NOW - i * STEP - (timedelta(minutes=7) if provider == "Bravo" else timedelta(0))
    failed = i % 6 == 5
    limited = i % 13 == 12
    ok = not (failed or limited)
    kind = ErrorKind.RATE_LIMITED if limited else ErrorKind.TIMEOUT if failed else None
    ttft = 0.1 + (i * 37 % 100) / 250 + (3.0 if i % 11 == 3 else 0.0)
    return ProbeResult(
        ok=ok, error_kind=kind, error=None if ok else "synthetic", http_status=200 if ok else None,
        started_at=started, ttft_s=ttft if ok else None, connect_s=0.01, total_s=1.0,
        output_tokens=32 if ok else None, token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=(20.0 + i * 53 % 70) if ok and i % 17 != 4 else None, protocol="openai", model="x",
        token_chunks=8 if ok else 0, first_read_tokens=1 if ok else 0,
        trigger=Trigger.CONFIRM if i % 7 == 6 else Trigger.SCHEDULED,
        input_tokens=1000 if i % 5 == 2 else 100 if provider == "Alpha" else (100 if i % 5 == 0 else 1000),
        cold_start=i % 11 == 3,
        answer_ok=None if not ok or i % 4 == 0 else i % 9 != 1,
        location="eu" if i % 2 else "us",
    )


@pytest.fixture
async def loaded(store):
    catalog = parse_catalog(CATALOG, source="test")
    rows = [(MODEL, p, result(i, p)) for p in ("Alpha", "Bravo") for i in range(DAYS * 12)]
    await store.insert_results(rows)
    now = [NOW]
    live = LiveFigures(catalog, window_s=WINDOWS["24h"], interval_of=lambda e: e.interval_s, clock=lambda: now[0])
    await live.load(store)
    ticks = [0.0]
    windows = WindowFigures(live, store, cache_s=60.0, monotonic=lambda: ticks[0])
    return catalog, live, windows, rows, now, ticks


def expected(catalog, rows, provider, window_s, input_tokens=None, now=NOW):
    endpoint = catalog.find(MODEL).endpoint(provider)
    samples = [
        LiveFigures_sample(r) for m, p, r in rows if p == provider
    ]
    live = endpoint_live(
        provider, samples, now=now, interval_s=endpoint.interval_s, window_s=window_s,
        input_tokens=input_tokens or endpoint.input_tokens, keep_cold_starts=endpoint.keep_cold_starts,
        in_maintenance=lambda s: catalog.in_maintenance(MODEL, provider, s.started_at, s.location) is not None,
    )
    return {name: getattr(live, name) for name in WINDOW_FIELDS}


def LiveFigures_sample(r):  # noqa: N802 - the live module's own conversion
    from monitor.live import sample_of

    return sample_of(r)


def window_fields(figures, provider):
    endpoint = next(e for e in figures.endpoints if e.provider == provider)
    return {name: getattr(endpoint, name) for name in WINDOW_FIELDS}


@pytest.mark.parametrize("window", ["7d", "30d", "90d"])
async def test_longer_windows_equal_the_direct_computation(loaded, window):
    catalog, live, windows, rows, _, _ = loaded
    figures = await windows.model(MODEL, WINDOWS[window])
    assert figures.window_s == WINDOWS[window]
    for provider in ("Alpha", "Bravo"):
        assert window_fields(figures, provider) == expected(catalog, rows, provider, WINDOWS[window])
    base = live.model(MODEL)
    assert [e.active for e in figures.endpoints] == [e.active for e in base.endpoints]
    assert figures.endpoints[0].samples > base.endpoints[0].samples


async def test_the_figures_really_use_the_filters(loaded):
    """Guard against a vacuous comparison: the data exercises every rule."""
    catalog, _, windows, rows, _, _ = loaded
    thirty = await windows.model(MODEL, WINDOWS["30d"])
    alpha, bravo = thirty.endpoints
    scheduled_alpha_100 = [r for m, p, r in rows if p == "Alpha" and r.trigger == Trigger.SCHEDULED
                           and r.input_tokens == 100 and r.started_at >= NOW - timedelta(days=30)]
    assert alpha.samples == len(scheduled_alpha_100)
    assert alpha.ttft_ms_p50_ci is not None and alpha.uptime_ci is not None and alpha.answer_ok_ratio is not None
    assert alpha.ttft_ms_p50_ci[0] <= alpha.ttft_ms_p50 <= alpha.ttft_ms_p50_ci[1]
    no_maintenance = catalog.model_copy(update={"maintenance": ()})
    unplanned = expected(no_maintenance, rows, "Alpha", WINDOWS["30d"])
    assert unplanned["uptime"] != alpha.uptime  # the maintenance window changed uptime
    assert bravo.ttft_ms_p95 > 3000  # Bravo keeps its cold starts
    assert alpha.ttft_ms_p95 < 3000


@pytest.mark.parametrize("tokens", [100, 1000, 10000])
async def test_profiles_on_the_live_window_and_a_longer_one(loaded, tokens):
    catalog, _, windows, rows, _, _ = loaded
    for window in ("24h", "30d"):
        figures = await windows.model(MODEL, WINDOWS[window], tokens)
        for provider in ("Alpha", "Bravo"):
            assert window_fields(figures, provider) == expected(catalog, rows, provider, WINDOWS[window], tokens)
    if tokens == 10000:
        assert all(e.samples == 0 and e.uptime is None for e in figures.endpoints)


async def test_default_identity_is_the_live_figures_object(loaded):
    _, live, windows, _, _, _ = loaded
    assert await windows.model(MODEL) is live.model(MODEL)
    assert await windows.model(MODEL, WINDOWS["24h"]) is live.model(MODEL)
    assert windows.cached(MODEL, WINDOWS["30d"]) is None  # nothing computed yet
    assert await windows.model("unknown/model", WINDOWS["30d"]) is None


async def test_cache_follows_new_probes_and_its_age_limit(loaded, store):
    catalog, live, windows, rows, now, ticks = loaded
    first = await windows.model(MODEL, WINDOWS["30d"])
    assert windows.cached(MODEL, WINDOWS["30d"]) is first
    assert await windows.model(MODEL, WINDOWS["30d"]) is first
    ticks[0] = 61.0  # older than cache_s: recomputed
    assert windows.cached(MODEL, WINDOWS["30d"]) is None
    second = await windows.model(MODEL, WINDOWS["30d"])
    assert second is not first and second == first
    # A probe lands: the default figures change, so does the cached window's.
    newer = replace(result(0, "Alpha"), started_at=NOW + timedelta(minutes=1), ttft_s=9.0)
    now[0] = NOW + timedelta(minutes=2)
    await store.insert_results([(MODEL, "Alpha", newer)])
    live.add(MODEL, "Alpha", newer)
    assert windows.cached(MODEL, WINDOWS["30d"]) is None
    third = await windows.model(MODEL, WINDOWS["30d"])
    assert third != second
    assert window_fields(third, "Alpha") == expected(
        catalog, [*rows, (MODEL, "Alpha", newer)], "Alpha", WINDOWS["30d"], now=now[0]
    )
    assert third.endpoints[0].last_probe_at == newer.started_at


async def test_models_lists_the_catalog(loaded):
    _, _, windows, _, _, _ = loaded
    listed = await windows.models(WINDOWS["7d"])
    assert [(m.id, f.window_s) for m, f in listed] == [(MODEL, WINDOWS["7d"])]
