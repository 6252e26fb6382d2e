"""Slot claims on the real PostgreSQL: one winner per slot whatever the race (tasks of one
process, several processes' connections), finished marks, take-over of a dead winner's slot,
batching into one statement, the bounded table, and the SQLite probing lock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dataclasses import replace

import pytest
import sqlalchemy as sa

from monitor.coordination import (
    LocalClaims,
    PostgresClaims,
    ProbingLock,
    ProbingLockHeld,
    SlotKey,
    open_claims,
)
from monitor.probes.base import Trigger
from monitor.store import SQLStore, open_store
from tests.service.conftest import result


def now_slot() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


async def rows(store: SQLStore, where: str = "true") -> list[sa.Row]:
    async with store.engine.connect() as connection:
        return list(await connection.execute(sa.text(f"SELECT * FROM probe_slot WHERE {where} ORDER BY model_id")))


async def test_many_tasks_of_one_process_claiming_one_slot_yield_one_winner(pg_store):
    claims = PostgresClaims(pg_store.engine, owner="p1")
    try:
        slot = now_slot()
        results = await asyncio.gather(*(claims.claim("m", "P", "a", slot, interval_s=60) for _ in range(50)))
        assert results.count(True) == 1
        assert claims.statements == 1  # one batch
        # Later claims of the same slot lose; the next slot is free.
        assert await claims.claim("m", "P", "a", slot, interval_s=60) is False
        assert await claims.claim("m", "P", "a", slot + timedelta(seconds=60), interval_s=60) is True
    finally:
        await claims.close()


async def test_racing_processes_get_exactly_one_winner_per_slot(pg_store):
    # Eight "processes" (own connections, own batches) claim the same 300 slots at once.
    racers = [PostgresClaims(pg_store.engine, owner=f"p{i}", batch_window_s=0.001) for i in range(8)]
    slot = now_slot()
    keys = [(f"m{i % 30}", f"P{i // 30}", "a" if i % 2 else "b") for i in range(300)]
    try:
        async def race(claims: PostgresClaims) -> list[bool]:
            return list(await asyncio.gather(*(claims.claim(m, p, loc, slot, interval_s=60) for m, p, loc in keys)))

        outcomes = await asyncio.gather(*(race(claims) for claims in racers))
        for index in range(len(keys)):
            assert sum(outcome[index] for outcome in outcomes) == 1, keys[index]
        stored = await rows(pg_store)
        assert len(stored) == 300
        winners = {(r.model_id, r.provider, r.location): r.claimed_by for r in stored}
        for claims, outcome in zip(racers, outcomes):
            assert {k for k, won in zip(keys, outcome) if won} == {k for k, o in winners.items() if o == claims.owner}
    finally:
        for claims in racers:
            await claims.close()


async def test_locations_and_kinds_are_separate_claims(pg_store):
    claims = PostgresClaims(pg_store.engine)
    slot = now_slot()
    try:
        results = await asyncio.gather(
            claims.claim("m", "P", "a", slot), claims.claim("m", "P", "b", slot),
            claims.claim("m", "P", "a", slot, kind="confirm"), claims.claim("m", "P", "a", slot),
        )
        assert results == [True, True, True, False]
    finally:
        await claims.close()


async def test_an_unfinished_claim_is_taken_over_once_its_lease_expires(pg_store):
    dead = PostgresClaims(pg_store.engine, owner="dead")
    alive = [PostgresClaims(pg_store.engine, owner=f"alive{i}") for i in range(4)]
    slot = now_slot()
    try:
        assert await dead.claim("m", "P", "a", slot, interval_s=60, lease_s=1.0)
        assert await dead.claim("m", "Q", "a", slot, interval_s=60, lease_s=1.0)
        assert await dead.claim("m", "R", "b", slot, interval_s=60, lease_s=1.0)  # another location
        # Q's probe was done and stored; P's and R's were not.
        await pg_store.insert_results([("m", "Q", replace(
            result(), started_at=slot + timedelta(milliseconds=20), location="a", trigger=Trigger.SCHEDULED))])
        await dead.close()  # "dies"
        # Nothing yet: the lease runs.
        assert [await claims.take_over("a") for claims in alive] == [[], [], [], []]
        assert [r.claimed_by for r in await rows(pg_store)] == ["dead", "dead", "dead"]
        await asyncio.sleep(1.1)
        taken = await asyncio.gather(*(claims.take_over("a") for claims in alive))
        flat = [key for keys in taken for key in keys]
        assert flat == [SlotKey("m", "P", "a", "scheduled", slot)]  # one taker, only P, only "a"
        [p_row] = await rows(pg_store, "provider = 'P'")
        assert p_row.claimed_by != "dead" and p_row.attempts == 2 and p_row.finished_at is None
        [q_row] = await rows(pg_store, "provider = 'Q'")
        assert q_row.finished_at is not None and q_row.claimed_by == "dead" and q_row.attempts == 1
        # Each expired claim is looked at once: the next sweeps find nothing until P's new lease ends.
        assert [await claims.take_over("a") for claims in alive] == [[], [], [], []]
    finally:
        for claims in alive:
            await claims.close()


async def test_take_over_stops_after_the_attempt_cap_and_at_the_slot_end(pg_store):
    claims = PostgresClaims(pg_store.engine)
    try:
        slot = now_slot()
        assert await claims.claim("m", "P", "a", slot, interval_s=60, lease_s=0.05)
        # Slot already over: nobody takes it over (the next slot's probe is due anyway).
        over = slot - timedelta(seconds=120)
        assert await claims.claim("m", "Old", "a", over, interval_s=60, lease_s=0.05)
        taken = 0
        for _ in range(5):
            await asyncio.sleep(0.1)
            taken += len(await claims.take_over("a"))
        assert taken == 2  # attempts 1 -> 2 -> 3, then capped
        [row] = await rows(pg_store, "provider = 'P'")
        assert row.attempts == 3
    finally:
        await claims.close()


async def test_a_probe_of_another_location_or_trigger_does_not_count_as_done(pg_store):
    claims = PostgresClaims(pg_store.engine)
    try:
        slot = now_slot()
        assert await claims.claim("m", "P", "a", slot, interval_s=60, lease_s=0.2)
        at = slot + timedelta(milliseconds=10)
        await pg_store.insert_results([
            ("m", "P", replace(result(), started_at=at, location="b", trigger=Trigger.SCHEDULED)),
            ("m", "P", replace(result(), started_at=at, location="a", trigger=Trigger.MANUAL)),
            ("m", "P", replace(result(), started_at=slot - timedelta(seconds=1), location="a")),
        ])
        await asyncio.sleep(0.3)
        assert await claims.take_over("a") == [SlotKey("m", "P", "a", "scheduled", slot)]
    finally:
        await claims.close()


async def test_expired_claims_are_pruned_in_batches(pg_store):
    claims = PostgresClaims(pg_store.engine, prune_batch=7)
    try:
        old = now_slot() - timedelta(hours=1)
        await asyncio.gather(*(claims.claim(f"m{i}", "P", "a", old, interval_s=60) for i in range(30)))
        await claims.claim("keep", "P", "a", now_slot(), interval_s=60)
        statements = claims.statements
        assert await claims.prune() == 30
        assert claims.statements - statements == 5  # 7+7+7+7+2
        assert [r.model_id for r in await rows(pg_store)] == ["keep"]
    finally:
        await claims.close()


async def test_expiry_is_two_intervals_after_the_slot(pg_store):
    claims = PostgresClaims(pg_store.engine)
    try:
        slot = now_slot()
        await claims.claim("m", "P", "a", slot, interval_s=90, lease_s=12)
        [row] = await rows(pg_store)
        assert row.slot_end == slot + timedelta(seconds=90)
        assert row.expires_at == slot + timedelta(seconds=180)
        assert timedelta(seconds=11) < row.lease_until - row.claimed_at <= timedelta(seconds=12)
    finally:
        await claims.close()


async def test_an_unreachable_database_makes_claims_fail_not_hang():
    store = await open_store("postgresql://postgres@127.0.0.1:1/none", migrate=False)
    claims = PostgresClaims(store.engine)
    try:
        with pytest.raises(Exception):
            await asyncio.wait_for(claims.claim("m", "P", "a", now_slot()), timeout=30)
    finally:
        await claims.close()
        await store.close()


async def test_a_lost_connection_is_replaced(pg_store):
    claims = PostgresClaims(pg_store.engine)
    try:
        assert await claims.claim("m", "P", "a", now_slot())
        async with pg_store.engine.connect() as connection:
            await connection.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        with pytest.raises(Exception):
            await claims.claim("m", "P", "a", now_slot() + timedelta(seconds=5))
        assert await claims.claim("m", "P", "a", now_slot() + timedelta(seconds=10))
    finally:
        await claims.close()


# --- the choice at the entrypoint, and SQLite's one-prober rule ---


async def test_open_claims_shares_on_postgresql_and_locks_a_sqlite_file(pg_store, tmp_path: Path):
    shared, lock = open_claims(pg_store)
    assert isinstance(shared, PostgresClaims) and lock is None
    await shared.close()
    sqlite = await open_store(f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        local, lock = open_claims(sqlite)
        assert isinstance(local, LocalClaims) and lock is not None
        with pytest.raises(ProbingLockHeld, match="SQLite supports ONE probing process"):
            open_claims(sqlite)
        lock.release()
        _, again = open_claims(sqlite)  # released: the next prober may start
        assert again is not None
        again.release()
    finally:
        await sqlite.close()


def test_probing_lock_message_names_the_database_and_the_holder(tmp_path: Path):
    database = tmp_path / "monitor.db"
    first = ProbingLock(database)
    first.acquire()
    try:
        with pytest.raises(ProbingLockHeld) as refused:
            ProbingLock(database).acquire()
        message = str(refused.value)
        assert str(database) in message and "monitor.db.probing.lock" in message
        assert "llm-monitor api" in message and "PostgreSQL" in message
    finally:
        first.release()
