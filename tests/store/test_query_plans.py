"""The statements the store actually runs are served by indexes on both backends: no full scan
of `probe_result`, no sort step. Statements are captured as sent to the driver (same SQL, same
parameters), then EXPLAINed by the database on a table with enough rows and fresh statistics
that a planner would prefer a scan if the index could not serve the query."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.store import SQLStore, open_store
from tests.store.conftest import (
    BACKENDS,
    create_postgres_database,
    drop_postgres_database,
    postgres_url,
)

ENDPOINTS = 200
PROBES_PER_ENDPOINT = 60
T0 = datetime(2026, 3, 1, tzinfo=UTC)
RECENT_INDEX = "ix_probe_result_endpoint_recent"


def _probe(started_at: datetime, ok: bool) -> ProbeResult:
    return ProbeResult(
        ok=ok, error_kind=None if ok else ErrorKind.TIMEOUT, error=None if ok else "timed out",
        http_status=200 if ok else None, started_at=started_at, ttft_s=0.2 if ok else None,
        connect_s=0.05, total_s=1.0, output_tokens=64 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=50.0 if ok else None, protocol="openai", model="m",
    )


async def _seed(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        rows = [
            (f"model-{e // 4}", f"provider-{e % 4}", _probe(T0 + timedelta(minutes=30 * i), ok=i % 7 != 0))
            for i in range(PROBES_PER_ENDPOINT)
            for e in range(ENDPOINTS)
        ]
        for start in range(0, len(rows), 4000):
            await store.insert_results(rows[start : start + 4000])
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")
    finally:
        await store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def seeded_database_url(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    """One seeded database per backend for this module (seeding is the slow part)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'monitor.db'}"
        asyncio.run(_seed(url))
        yield url
        return
    name = create_postgres_database()
    try:
        url = postgres_url(name)
        asyncio.run(_seed(url))
        yield url
    finally:
        drop_postgres_database(name)


@pytest.fixture
async def seeded_store(seeded_database_url: str) -> AsyncIterator[SQLStore]:
    store = await open_store(seeded_database_url, migrate=False)
    try:
        yield store
    finally:
        await store.close()


class StatementRecorder:
    """Records (sql, parameters) exactly as handed to the driver cursor."""

    def __init__(self, engine) -> None:
        self.statements: list[tuple[str, object]] = []
        self._engine = engine.sync_engine

    def __enter__(self) -> StatementRecorder:
        sa.event.listen(self._engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "probe_result" in statement:
            self.statements.append((statement, parameters))


async def _plan(store: SQLStore, statement: str, parameters) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if store.dialect_name == "sqlite" else "EXPLAIN "
    async with store.engine.connect() as connection:
        result = await connection.exec_driver_sql(prefix + statement, parameters)
        rows = result.all()
    # SQLite: (id, parent, notused, detail); PostgreSQL: one text column per plan line.
    return [row[-1] for row in rows]


def _assert_index_only_plan(dialect: str, plan: list[str], *, sorted_by_index: bool = True) -> None:
    """The plan reads `probe_result` only through the endpoint index (never a full scan).
    `sorted_by_index`: also no sort step. Asserted where the planner has no cheaper choice: on
    SQLite always; on PostgreSQL a bitmap scan plus a sort of a few dozen rows can honestly be
    cheaper than an ordered index scan, and is still bounded by the index range."""
    text = "\n".join(plan)
    if dialect == "sqlite":
        assert not re.search(r"\bSCAN (probe_result|recent_probe)\b", text), text
        assert re.search(rf"SEARCH \w+ USING (COVERING )?INDEX {RECENT_INDEX}", text), text
        if sorted_by_index:
            assert "TEMP B-TREE" not in text, text
    else:
        assert "Seq Scan on probe_result" not in text, text
        index_read = rf"(Bitmap Index|Index|Index Only) Scan (Backward )?(using|on) {RECENT_INDEX}"
        assert re.search(index_read, text), text
        if sorted_by_index:
            assert not re.search(r"\bSort\b", text), text


async def _captured(store: SQLStore, call) -> list[tuple[str, object]]:
    with StatementRecorder(store.engine) as recorder:
        await call()
    assert recorder.statements, "the verb ran no SELECT on probe_result"
    return recorder.statements


async def test_recent_results_plan_uses_the_index(seeded_store: SQLStore) -> None:
    # A page of history (the API's default page size is small next to an endpoint's history).
    [(sql, params)] = await _captured(
        seeded_store, lambda: seeded_store.recent_results("model-3", "provider-1", 10)
    )
    _assert_index_only_plan(seeded_store.dialect_name, await _plan(seeded_store, sql, params))


async def test_window_samples_plan_uses_the_index(seeded_store: SQLStore) -> None:
    since = T0 + timedelta(hours=6)
    [(sql, params)] = await _captured(
        seeded_store, lambda: seeded_store.window_samples("model-3", "provider-1", since)
    )
    _assert_index_only_plan(
        seeded_store.dialect_name,
        await _plan(seeded_store, sql, params),
        sorted_by_index=seeded_store.dialect_name == "sqlite",
    )
    assert len(await seeded_store.window_samples("model-3", "provider-1", since)) == PROBES_PER_ENDPOINT - 12


async def test_consecutive_failures_plan_reads_index_ranges_only(seeded_store: SQLStore) -> None:
    [(sql, params)] = await _captured(seeded_store, seeded_store.consecutive_failures)
    _assert_index_only_plan(
        seeded_store.dialect_name, await _plan(seeded_store, sql, params), sorted_by_index=False
    )
    failures = await seeded_store.consecutive_failures()
    assert len(failures) == ENDPOINTS and set(failures.values()) == {0}  # newest probe is ok


async def test_latest_results_plan_reads_probes_by_primary_key(seeded_store: SQLStore) -> None:
    for verb in (seeded_store.latest_results, seeded_store.latest_ok_results):
        # (the pointer read itself does not touch probe_result and is not recorded)
        [(sql, params)] = await _captured(seeded_store, verb)
        plan = "\n".join(await _plan(seeded_store, sql, params))
        if seeded_store.dialect_name == "sqlite":
            assert "SCAN probe_result" not in plan, plan
            assert re.search(r"SEARCH probe_result USING INTEGER PRIMARY KEY", plan), plan
        else:
            assert "Seq Scan on probe_result" not in plan, plan
            assert re.search(r"Index Scan using probe_result_pkey", plan), plan
        assert len(await verb()) == ENDPOINTS
