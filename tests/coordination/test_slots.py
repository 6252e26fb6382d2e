"""Slot arithmetic: the wall-clock grid every process computes identically, phases spread by
hash and staggered by location."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from monitor.coordination import (
    SlotGrid,
    endpoint_phase_us,
    from_us,
    phase_grain_us,
    slot_start_us,
    to_us,
)
from monitor.scheduler import job_id

T = datetime(2026, 12, 1, 13, 0, 7, 123456, tzinfo=timezone.utc)


def test_slot_start_is_floor_of_time_minus_phase_over_interval():
    interval, phase = 60_000_000, 7_000_000
    assert slot_start_us(7_000_000, interval, phase) == 7_000_000
    assert slot_start_us(66_999_999, interval, phase) == 7_000_000
    assert slot_start_us(67_000_000, interval, phase) == 67_000_000
    assert slot_start_us(6_999_999, interval, phase) == -53_000_000  # before the first phase


def test_microsecond_round_trip_is_exact():
    assert from_us(to_us(T)) == T
    with pytest.raises(ValueError):
        to_us(T.replace(tzinfo=None))


def test_grid_slot_of_and_next_start():
    grid = SlotGrid.of(job_id("m", "P"), 1800)
    slot = grid.slot_of(T)
    assert slot <= T < slot + timedelta(seconds=1800)
    assert grid.slot_of(slot) == slot
    assert grid.slot_of(slot - timedelta(microseconds=1)) == slot - timedelta(seconds=1800)
    assert grid.next_start(slot) == slot
    assert grid.next_start(slot + timedelta(microseconds=1)) == slot + timedelta(seconds=1800)
    # The anchor is a slot start: APScheduler's IntervalTrigger fires on the same grid.
    assert grid.slot_of(grid.anchor) == grid.anchor
    assert (slot - grid.anchor) % timedelta(seconds=1800) == timedelta(0)


def test_phase_is_stable_within_the_interval_and_on_the_grain():
    for interval in (1.0, 2.5, 60.0, 1800.0, 7 * 24 * 3600.0):
        grain = phase_grain_us(interval)
        assert grain == round(min(1.0, interval / 100) * 1e6)
        for i in range(50):
            key = job_id(f"model-{i}", "P")
            phase = endpoint_phase_us(key, interval)
            assert phase == endpoint_phase_us(key, interval)
            assert 0 <= phase < round(interval * 1e6)
            assert phase % grain == 0


def test_phases_spread_over_the_interval():
    phases = [endpoint_phase_us(job_id(f"model-{i}", "P"), 60.0) for i in range(1000)]
    buckets = [0] * 10
    for phase in phases:
        buckets[phase // 6_000_000] += 1
    assert max(buckets) < 150 and min(buckets) > 50


@pytest.mark.parametrize("locations", [2, 3, 4])
def test_locations_are_staggered_by_an_even_share_of_the_interval(locations):
    interval_s = 1800.0
    interval_us = round(interval_s * 1e6)
    grain = phase_grain_us(interval_s)
    for i in range(20):
        key = job_id(f"model-{i}", "P")
        phases = sorted(endpoint_phase_us(key, interval_s, location_index=k, locations=locations)
                        for k in range(locations))
        gaps = [b - a for a, b in zip(phases, phases[1:])] + [phases[0] + interval_us - phases[-1]]
        # Every interval / L some location probes the endpoint (up to the grain's rounding).
        assert all(abs(gap - interval_us / locations) <= grain for gap in gaps), gaps


def test_one_location_keeps_the_plain_hash_phase():
    key = job_id("m", "P")
    assert endpoint_phase_us(key, 60.0) == endpoint_phase_us(key, 60.0, location_index=0, locations=1)
    with pytest.raises(ValueError):
        endpoint_phase_us(key, 60.0, location_index=2, locations=2)
