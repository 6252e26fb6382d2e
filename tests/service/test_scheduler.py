"""Scheduler: stable spreading of first runs, resuming the cadence, reloads, bounded drain,
missed runs."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from monitor.catalog import parse_catalog
from monitor.coordination import SlotGrid
from monitor.scheduler import ProbeScheduler, first_run_at, job_id, spread_offset
from tests.service.conftest import T0, result


def test_spread_offset_is_stable_bounded_and_spreads_evenly():
    keys = [job_id(f"model-{i}", "P") for i in range(600)]
    offsets = [spread_offset(k, 60.0) for k in keys]
    assert offsets == [spread_offset(k, 60.0) for k in keys]
    assert all(0 <= o < 60 for o in offsets)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 6)] += 1
    assert max(buckets) < 600 / 10 * 1.5  # no burst: every 6 s slice gets roughly its share


GRID = SlotGrid.of("k", 1800)


def test_first_run_is_the_next_slot_start_on_the_wall_clock_grid():
    # Whatever the last probe: the grid (the same in every process) resumes the cadence.
    for last in (None, T0 - timedelta(seconds=100), T0 - timedelta(hours=5)):
        at = first_run_at(GRID, T0, last)
        assert at == GRID.next_start(T0)
        assert T0 <= at < T0 + timedelta(seconds=1800)
        assert GRID.slot_of(at) == at


def test_an_offline_endpoint_runs_at_once_unless_its_last_probe_is_recent():
    assert first_run_at(GRID, T0, None, offline=True) == T0
    assert first_run_at(GRID, T0, T0 - timedelta(hours=5), offline=True) == T0
    recent = T0 - timedelta(seconds=100)
    assert first_run_at(GRID, T0, recent, offline=True) == GRID.next_start(T0)


CONFIG = """
models:
  - id: m1
    name: M1
    endpoints:
      - {provider: A, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
      - {provider: B, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
"""


class FakeRunner:
    def __init__(self, probe_s: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.probe_s = probe_s
        self.finished = 0

    async def probe_endpoint(self, model, endpoint, on_start=None):
        if on_start is not None:
            on_start()
        self.calls.append((model.id, endpoint.provider))
        await asyncio.sleep(self.probe_s)
        self.finished += 1
        return result()


async def test_jobs_run_per_endpoint_and_follow_reloads(metrics):
    runner = FakeRunner()
    catalog = parse_catalog(CONFIG, source="test")
    scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: 0.2)
    scheduler.start(catalog, {})
    try:
        await asyncio.sleep(0.9)
        assert {("m1", "A"), ("m1", "B")} <= set(runner.calls)
        smaller = parse_catalog(CONFIG.split("      - {provider: B")[0], source="test")
        scheduler.apply(smaller, {})
        await asyncio.sleep(0.1)
        runner.calls.clear()
        await asyncio.sleep(0.6)
        assert runner.calls and set(runner.calls) == {("m1", "A")}
    finally:
        await scheduler.shutdown(1)


async def test_shutdown_waits_for_probes_in_flight_within_the_grace(metrics):
    runner = FakeRunner(probe_s=0.3)
    scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: 0.1)
    scheduler.start(parse_catalog(CONFIG, source="test"), {})
    await asyncio.sleep(0.15)  # both first runs (offsets < 0.1 s) are in flight
    assert len(runner.calls) >= 1
    cut = await scheduler.shutdown(grace_s=2)
    assert cut == 0 and runner.finished == len(runner.calls)


async def test_shutdown_abandons_probes_that_outlive_the_grace(metrics):
    runner = FakeRunner(probe_s=5)
    scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: 0.1)
    scheduler.start(parse_catalog(CONFIG, source="test"), {})
    await asyncio.sleep(0.15)
    cut = await scheduler.shutdown(grace_s=0.1)
    assert cut == len(runner.calls) >= 1 and runner.finished == 0


async def test_only_offline_endpoints_skip_the_spread(metrics):
    runner = FakeRunner()
    catalog = parse_catalog(CONFIG, source="test")
    scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: 1800.0,
                               is_offline=lambda endpoint: endpoint.provider == "B")
    scheduler.start(catalog, {})
    try:
        await asyncio.sleep(0.5)
        # A's first run is its next slot start on the 30-minute grid (seconds to minutes away).
        a_first = SlotGrid.of(job_id("m1", "A"), 1800.0).next_start(datetime.now(timezone.utc))
        assert (a_first - datetime.now(timezone.utc)).total_seconds() > 1.0
        assert runner.calls == [("m1", "B")]
    finally:
        await scheduler.shutdown(1)


async def test_a_run_missed_while_the_loop_was_blocked_is_counted_and_adds_an_interval_of_lag(
    metrics, registry, caplog
):
    interval_s = 2.0  # misfire grace: 1 s
    runner = FakeRunner()
    catalog = parse_catalog(CONFIG.split("      - {provider: B")[0], source="test")
    scheduler = ProbeScheduler(runner, metrics, interval_of=lambda e: interval_s)
    # Start 0.2 s before a slot starts, then block the loop past the grace.
    grid = SlotGrid.of(job_id("m1", "A"), interval_s)
    now = datetime.now(timezone.utc)
    due = grid.next_start(now + timedelta(seconds=0.3))
    await asyncio.sleep((due - now).total_seconds() - 0.2)
    scheduler.start(catalog, {})
    try:
        time.sleep(1.5)
        await asyncio.sleep(0.1)
        assert runner.calls == []
        assert registry.get_sample_value("llm_monitor_skipped_runs_total", {"reason": "misfire"}) == 1
        await asyncio.sleep(interval_s)  # the next slot's run probes
        assert runner.calls == [("m1", "A")]
        # Late from the missed run's slot, not from the run that finally probed.
        assert registry.get_sample_value("llm_monitor_scheduler_lag_seconds") >= interval_s - 0.2
    finally:
        await scheduler.shutdown(1)
    assert [r.getMessage() for r in caplog.records if "missed" in r.getMessage()] == []
    assert any("skipped 1 scheduled probe run " in r.getMessage() and "misfire 1" in r.getMessage()
               for r in caplog.records)
