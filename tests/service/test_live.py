"""LiveFigures: figures follow probes at once, lapse with time, and follow the database by id."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from monitor.catalog import parse_catalog
from monitor.live import LiveFigures
from monitor.probes.base import ErrorKind
from monitor.store import InMemoryStore
from tests.service.conftest import result

T = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
CONFIG = """
models:
  - id: m1
    name: M1
    endpoints:
      - {provider: A, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
      - {provider: B, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
  - id: m2
    name: M2
    endpoints:
      - {provider: A, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(seconds: float, *, ok: bool = True, rate_limited: bool = False):
    r = result(ok=ok and not rate_limited)
    if rate_limited:
        r.error_kind = ErrorKind.RATE_LIMITED
    r.started_at = T + timedelta(seconds=seconds)
    return r


def figures(clock: Clock, interval_s: float = 60, window_s: float = 3600) -> LiveFigures:
    return LiveFigures(parse_catalog(CONFIG, source="t"), window_s=window_s,
                       interval_of=lambda e: interval_s, clock=clock)


def test_a_probe_updates_its_model_at_once():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock)
    assert live.model("m1").active_endpoints == 0 and live.model("m1").best_ttft_ms is None
    updated = live.add("m1", "A", at(0))
    assert updated is live.model("m1")
    assert (updated.active_endpoints, updated.total_endpoints, updated.best_ttft_ms) == (1, 2, 100.0)
    assert live.model("m2").active_endpoints == 0
    assert live.add("m9", "A", at(0)) is None  # not in the catalog: ignored
    assert [m.id for m, _ in live.models()] == ["m1", "m2"]
    assert live.providers("m1") == ("A", "B") and live.providers("nope") is None


def test_activity_lapses_after_two_intervals_and_only_due_models_are_recomputed():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock, interval_s=60)
    live.add("m1", "A", at(0))
    clock.now = T + timedelta(seconds=30)
    assert live.recompute() == []  # nothing can have changed yet: no work
    clock.now = T + timedelta(seconds=121)
    changed = live.recompute()
    assert [m.model for m in changed] == ["m1"]
    assert changed[0].active_endpoints == 0
    assert changed[0].best_ttft_ms == 100.0  # still shown: data in the window, none active


def test_samples_leave_the_window():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock, interval_s=60, window_s=600)
    live.add("m1", "A", at(0))
    live.add("m1", "A", at(500, ok=False))
    clock.now = T + timedelta(seconds=601)
    (m1,) = live.recompute()
    endpoint = m1.endpoints[0]
    assert endpoint.samples == 1 and endpoint.uptime == 0.0 and endpoint.ttft_ms_p50 is None


async def test_follow_loads_once_then_applies_only_new_rows():
    clock = Clock(T + timedelta(seconds=100))
    store = InMemoryStore()
    await store.insert_results([("m1", "A", at(0))])
    live = figures(clock)
    await live.follow(store)
    assert live.model("m1").endpoints[0].samples == 1
    await store.insert_results([("m1", "A", at(10))])
    await store.insert_results([("m1", "B", at(11, ok=False))])
    await store.insert_results([("m2", "A", at(12))])
    await live.follow(store, page=2)  # two pages
    m1 = live.model("m1")
    assert [e.samples for e in m1.endpoints] == [2, 1]
    assert m1.endpoints[1].last_error_kind == "http_error"
    assert live.model("m2").active_endpoints == 1
    await live.follow(store)  # nothing new: nothing changes, no duplicates
    assert [e.samples for e in live.model("m1").endpoints] == [2, 1]


def test_a_probe_finishing_out_of_order_is_kept_and_a_repeat_is_not():
    clock = Clock(T + timedelta(seconds=100))
    live = figures(clock)
    live.add("m1", "A", at(20))
    live.add("m1", "A", at(10, ok=False))  # started earlier, finished later
    live.add("m1", "A", at(20))  # the same probe again
    endpoint = live.model("m1").endpoints[0]
    assert endpoint.samples == 2 and endpoint.uptime == 0.5
    assert endpoint.last_error_kind is None  # the newest by start time is the ok one


def test_a_model_dropped_by_a_reload_is_no_longer_served():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock)
    live.add("m2", "A", at(0))
    live.add("m1", "A", at(0))
    live.set_catalog(parse_catalog(CONFIG.split("  - id: m2")[0], source="t"))
    assert live.model("m2") is None and live.providers("m2") is None
    assert [m.id for m, _ in live.models()] == ["m1"]
    assert live.model("m1").endpoints[0].samples == 1  # kept across the reload


def test_a_rate_limited_probe_does_not_extend_the_activity_of_the_ok_before_it():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock, interval_s=60)
    live.add("m1", "A", at(0))
    live.add("m1", "A", at(60, rate_limited=True))
    clock.now = T + timedelta(seconds=121)  # 2 intervals after the ok, 1 after the 429
    (m1,) = live.recompute()
    assert m1.active_endpoints == 0 and m1.endpoints[0].samples == 2


def test_activity_outlives_the_window_when_the_interval_is_longer_than_half_of_it():
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock, interval_s=3000, window_s=3600)  # 2 intervals = 6000 s > window
    live.add("m1", "A", at(0))
    clock.now = T + timedelta(seconds=3601)
    (m1,) = live.recompute()  # the probe left the window: samples and medians go, activity stays
    assert (m1.active_endpoints, m1.endpoints[0].samples, m1.best_ttft_ms) == (1, 0, None)
    clock.now = T + timedelta(seconds=6001)
    (m1,) = live.recompute()
    assert m1.active_endpoints == 0


async def test_restart_keeps_two_intervals_of_history_for_slow_endpoints():
    clock = Clock(T + timedelta(seconds=4000))
    store = InMemoryStore()
    await store.insert_results([("m1", "A", at(0))])  # outside the 3600 s window, within 2 x 3000 s
    live = figures(clock, interval_s=3000, window_s=3600)
    await live.load(store)
    assert live.model("m1").active_endpoints == 1


async def test_wait_until_due_wakes_when_activity_lapses():
    live = LiveFigures(parse_catalog(CONFIG, source="t"), window_s=3600, interval_of=lambda e: 0.15)
    probe = result()
    probe.started_at = datetime.now(timezone.utc)
    live.add("m1", "A", probe)
    assert live.model("m1").active_endpoints == 1
    started = time.monotonic()
    await live.wait_until_due(max_s=10)
    slept = time.monotonic() - started
    (m1,) = live.recompute()
    assert m1.active_endpoints == 0
    assert 0.25 <= slept < 5  # woke at the lapse (0.3 s after the probe), not at max_s


async def test_a_landing_probe_wakes_a_waiter_that_would_sleep_past_its_lapse():
    live = LiveFigures(parse_catalog(CONFIG, source="t"), window_s=3600, interval_of=lambda e: 0.15)
    waiter = asyncio.create_task(live.wait_until_due(max_s=10))  # nothing due: would sleep 10 s
    await asyncio.sleep(0.05)
    probe = result()
    probe.started_at = datetime.now(timezone.utc)
    live.add("m1", "A", probe)
    await asyncio.wait_for(waiter, timeout=5)  # woken: it returns at once, well before 10 s


def test_a_probe_stamped_ahead_of_this_clock_does_not_delay_the_lapse():
    # Split deployment with skewed clocks: the scheduler's newest probe is "in the future" here.
    clock = Clock(T + timedelta(seconds=1))
    live = figures(clock, interval_s=60)
    live.add("m1", "A", at(0))
    live.add("m1", "A", at(500, ok=False))
    assert live.model("m1").active_endpoints == 1  # the future probe does not count yet
    clock.now = T + timedelta(seconds=121)
    (m1,) = live.recompute()
    assert m1.active_endpoints == 0
