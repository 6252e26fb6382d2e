"""Stored roll-ups equal a direct computation from the raw rows, on every backend: generated
probes from several locations and two workload profiles, written in shuffled batches with the
roll-up job running between them (late and out-of-order arrivals), then rebuilt from scratch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.probes.base import ErrorKind
from monitor.rollups import DAY, HOUR, BucketAggregate, RollupRules
from monitor.store import SQLStore, Store
from monitor.store.rollups import read_state
from monitor.store.tables import probe_table
from monitor.store.sql import result_to_row
from tests.rollups.conftest import LOCATIONS, MODEL, PROVIDERS, T0, direct, generated_history, merged_by_bucket, probe

FAR = (T0 - timedelta(days=30), T0 + timedelta(days=30))


async def stored(store: Store, step_s: int, provider: str, **filters) -> dict[datetime, BucketAggregate]:
    return await store.rollup_buckets(MODEL, provider, step_s, *FAR, **filters)


async def assert_equal_to_direct(store: Store, rows, rules: RollupRules = RollupRules()) -> None:
    for step_s in (HOUR, DAY):
        reference = direct(rows, step_s, rules)
        for provider in PROVIDERS:
            assert await stored(store, step_s, provider) == merged_by_bucket(reference, MODEL, provider)
            for location in LOCATIONS:
                assert await stored(store, step_s, provider, location=location) == merged_by_bucket(
                    reference, MODEL, provider, location=location)
        assert await stored(store, step_s, "Groq", input_tokens=1000) == merged_by_bucket(
            reference, MODEL, "Groq", input_tokens=1000)
        assert await stored(store, step_s, "Groq", location="eu-west", input_tokens=100) == merged_by_bucket(
            reference, MODEL, "Groq", location="eu-west", input_tokens=100)


async def test_rollups_equal_the_raw_rows_with_late_and_out_of_order_arrivals(store: Store) -> None:
    rows = generated_history(seed=1)
    shuffled = list(rows)
    random.Random(2).shuffle(shuffled)  # locations catching up, buffered results after an outage
    for start in range(0, len(shuffled), 97):
        await store.insert_results(shuffled[start : start + 97])
        if start % 3 == 0:
            await store.rollup(RollupRules(), batch=50)  # several small batches per run
    assert await store.rollup(RollupRules()) >= 0
    assert await store.rollup(RollupRules()) == 0  # nothing new: absorbing again counts nothing
    await assert_equal_to_direct(store, rows)
    # Spot-check against numbers computed without the roll-up code at all.
    eu = [r for m, p, r in rows if p == "Cloudflare" and r.location == "eu-west"
          and r.trigger.value == "scheduled" and T0 <= r.started_at < T0 + timedelta(days=1)]
    day = (await stored(store, DAY, "Cloudflare", location="eu-west"))[T0]
    assert day.counts["ok"] == sum(r.ok for r in eu)
    assert day.counts["rate_limited"] == sum(r.error_kind == ErrorKind.RATE_LIMITED for r in eu)
    assert day.samples == len(eu)


async def test_rebuild_from_raw_rows_gives_the_same_values(store: Store) -> None:
    rows = generated_history(seed=3, hours=30)
    random.Random(4).shuffle(rows)
    for start in range(0, len(rows), 40):
        await store.insert_results(rows[start : start + 40])
        await store.rollup(RollupRules())
    before = {step: {p: await stored(store, step, p) for p in PROVIDERS} for step in (HOUR, DAY)}
    assert await store.rebuild_rollups(RollupRules()) == len(rows)
    after = {step: {p: await stored(store, step, p) for p in PROVIDERS} for step in (HOUR, DAY)}
    assert after == before
    assert await store.rebuild_rollups(RollupRules()) == len(rows)
    assert {step: {p: await stored(store, step, p) for p in PROVIDERS} for step in (HOUR, DAY)} == before
    assert await store.rollup(RollupRules()) == 0


async def test_days_are_their_hours_merged_and_all_locations_each_location_merged(store: Store) -> None:
    rows = generated_history(seed=5, hours=50)
    await store.insert_results(rows)
    await store.rollup(RollupRules())
    for provider in PROVIDERS:
        hours = await stored(store, HOUR, provider)
        days: dict[datetime, BucketAggregate] = {}
        for t, bucket in hours.items():
            days.setdefault(t.replace(hour=0), BucketAggregate()).merge(bucket)
        assert await stored(store, DAY, provider) == days
        per_location = BucketAggregate()
        for location in LOCATIONS:
            per_location.merge((await stored(store, DAY, provider, location=location))[T0])
        assert (await stored(store, DAY, provider))[T0] == per_location


async def test_maintenance_and_kept_cold_starts_follow_the_rules(store: Store) -> None:
    window = (T0 + timedelta(hours=3), T0 + timedelta(hours=5))
    rules = RollupRules(
        in_maintenance=lambda m, p, at, loc: p == "Groq" and window[0] <= at < window[1],
        keep_cold_starts=lambda m, p: p == "Groq",
    )
    rows = generated_history(seed=6, hours=8)
    await store.insert_results(rows)
    await store.rollup(rules)
    await assert_equal_to_direct(store, rows, rules)
    groq = await stored(store, HOUR, "Groq")
    assert groq[T0 + timedelta(hours=3)].counts["maintenance"] > 0
    assert groq[T0 + timedelta(hours=3)].counts["ok"] == 0


async def test_a_probe_from_long_ago_lands_in_its_own_bucket(store: Store) -> None:
    await store.insert_results([(MODEL, "Groq", probe(T0 + timedelta(hours=1)))])
    await store.rollup(RollupRules())
    late = T0 - timedelta(days=20, minutes=1)
    await store.insert_results([(MODEL, "Groq", probe(late, ok=False, error_kind=ErrorKind.TIMEOUT))])
    await store.rollup(RollupRules())
    hours = await stored(store, HOUR, "Groq")
    assert sorted(hours) == [datetime(2026, 8, 11, 23, tzinfo=UTC), T0 + timedelta(hours=1)]
    assert hours[datetime(2026, 8, 11, 23, tzinfo=UTC)].counts["timeout"] == 1


async def test_a_transaction_committing_below_the_watermark_is_absorbed_later(sql_store: SQLStore) -> None:
    """PostgreSQL hands out ids at insert time: a batch committed after a later id was absorbed
    must still be counted (SQLite serializes writers, so there the gap is a rolled-back id)."""
    store = sql_store
    late_row = result_to_row(MODEL, "Groq", probe(T0, location="eu-west"))
    if store.dialect_name == "postgresql":
        async with store.engine.connect() as slow:
            transaction = await slow.begin()
            await slow.execute(sa.insert(probe_table()), [late_row])  # id taken, not committed
            await store.insert_results([(MODEL, "Groq", probe(T0 + timedelta(minutes=5)))])
            assert await store.rollup(RollupRules()) == 1
            state = await read_state(store.engine)
            assert len(state.gaps) == 1 and min(state.gaps) < state.absorbed_id
            await transaction.commit()
    else:  # the same hole, made by hand: ids 1-2 missing below an absorbed id 3
        newer = result_to_row(MODEL, "Groq", probe(T0 + timedelta(minutes=5)))
        async with store.engine.begin() as connection:
            await connection.execute(sa.insert(probe_table()), [{**newer, "id": 3}])
        assert await store.rollup(RollupRules()) == 1
        assert sorted((await read_state(store.engine)).gaps) == [1, 2]
        async with store.engine.begin() as connection:
            await connection.execute(sa.insert(probe_table()), [{**late_row, "id": 2}])
    assert await store.rollup(RollupRules()) == 1
    assert len((await read_state(store.engine)).gaps) == (0 if store.dialect_name == "postgresql" else 1)
    bucket = (await stored(store, HOUR, "Groq"))[T0]
    assert bucket.counts["ok"] == 2
    assert (await stored(store, HOUR, "Groq", location="eu-west"))[T0].counts["ok"] == 1


async def test_a_batch_failing_half_way_changes_nothing(sql_store: SQLStore, monkeypatch) -> None:
    """The hourly upsert is already in the database when the daily rows are computed: a failure
    then rolls the whole batch back (watermark and buckets), and the next run absorbs it all."""
    store = sql_store
    rows = generated_history(seed=5, hours=6)
    await store.insert_results(rows)
    real = BucketAggregate.row_values
    calls = 0

    def failing_on_the_daily_step(self: BucketAggregate) -> dict:
        nonlocal calls
        calls += 1
        hourly = len({(p, r.location, r.input_tokens, r.started_at.replace(minute=0, second=0, microsecond=0))
                      for _, p, r in rows})
        if calls > hourly:  # every hourly row is computed; the first daily one fails
            raise RuntimeError("injected failure")
        return real(self)

    monkeypatch.setattr(BucketAggregate, "row_values", failing_on_the_daily_step)
    with pytest.raises(Exception, match="injected failure"):
        await store.rollup(RollupRules())
    assert calls > 1
    assert (await read_state(store.engine)).absorbed_id == 0
    async with store.engine.connect() as connection:
        for table in ("rollup_hourly", "rollup_daily"):
            assert (await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar() == 0
    monkeypatch.setattr(BucketAggregate, "row_values", real)
    assert await store.rollup(RollupRules()) == len(rows)
    await assert_equal_to_direct(store, rows)
