"""The Store contract, run on InMemoryStore, SQLite and PostgreSQL (see conftest.py): every verb,
every ProbeResult field, refused values and failure behaviour. Migrations, schema, pragmas, URL
handling and driver errors are about SQL and run on the two SQL backends only (`sql_store`,
`database_url`, `fresh_database_url`)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from monitor.store.tables import WINDOW_INDEX_CARRIED, probe_table
from monitor.probes.base import METHODOLOGY_VERSION, ErrorKind, ProbeResult, TokenCountSource
from monitor.stats import ProbeSample
from monitor.store import (
    FAILURE_LOOKBACK,
    InMemoryStore,
    SQLStore,
    Store,
    StoreError,
    StoreUnavailableError,
    head_revision,
    normalize_database_url,
    open_store,
    redact_database_url,
    upgrade,
)
from tests.store.conftest import POSTGRES_PORT, empty_tables, postgres_url

T0 = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
MODEL = "meta-llama/llama-3.2-1b-instruct"
OTHER_MODEL = "qwen/qwen3-32b"


def make_result(
    started_at: datetime, *, ok: bool = True, error_kind: ErrorKind | None = None, **overrides
) -> ProbeResult:
    values = dict(
        ok=ok,
        error_kind=error_kind,
        error=None if ok else f"failed: {error_kind}",
        http_status=200 if ok else 503,
        started_at=started_at,
        ttft_s=0.25 if ok else None,
        connect_s=None,
        total_s=1.5,
        output_tokens=64 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=57.0 if ok else None,
        protocol="openai",
        model="llama-3.2-1b",
    )
    values.update(overrides)
    return ProbeResult(**values)


def failed(started_at: datetime, kind: ErrorKind = ErrorKind.TIMEOUT) -> ProbeResult:
    return make_result(started_at, ok=False, error_kind=kind)


def fully_populated_result() -> ProbeResult:
    """Every field set to a distinctive non-default value (floats exactly representable or not)."""
    return ProbeResult(
        ok=True,
        error_kind=None,
        error=None,
        http_status=200,
        # A non-UTC offset: must come back as the same instant, labelled UTC.
        started_at=datetime(2026, 3, 1, 14, 30, 15, 123_456, tzinfo=timezone(timedelta(hours=2))),
        ttft_s=0.123456789,
        connect_s=0.0421,
        total_s=2.718281828459045,
        output_tokens=128,
        token_count_source=TokenCountSource.USAGE,
        tokens_per_second=57.33333333333333,
        protocol="anthropic",
        model="claude-3-5-haiku-latest",
        first_answer_s=0.3,
        first_reasoning_s=0.1234,
        last_token_s=2.5,
        headers_s=0.0999,
        dns_s=0.001,
        tcp_s=0.002,
        tls_s=0.0301,
        token_chunks=97,
        usage_tokens=128,
        first_read_tokens=2,
        finish_reason="max_tokens",
        http_version="HTTP/2",
        connection_reused=True,
        loop_lag_s=0.0005,
        cpu_s=0.0123,
        stream_bytes=5_000_000_000,  # beyond 32 bits
        retry_after_s=None,
        methodology="2026.11-1",
    )


def failed_result_with_enums() -> ProbeResult:
    return ProbeResult(
        ok=False,
        error_kind=ErrorKind.RATE_LIMITED,
        error="HTTP 429: slow down",
        http_status=429,
        started_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        ttft_s=None,
        connect_s=None,
        total_s=0.2,
        output_tokens=None,
        token_count_source=None,
        tokens_per_second=None,
        protocol="gemini",
        model="gemini-2.0-flash",
        connection_reused=False,
        retry_after_s=12.5,
        finish_reason=None,
        http_version="HTTP/1.1",
        methodology="older-methodology",
    )


# --- round trip ---------------------------------------------------------------------------


def test_every_probe_result_field_has_a_column() -> None:
    columns = set(probe_table().c.keys())
    fields = {f.name for f in dataclasses.fields(ProbeResult)}
    assert fields - columns == set(), "ProbeResult fields without a column: add a migration"
    assert columns - fields == {"id", "model_id", "provider"}


async def test_round_trip_of_every_field(store: Store) -> None:
    full = fully_populated_result()
    rate_limited = failed_result_with_enums()
    await store.insert_results([(MODEL, "Anthropic", full), (MODEL, "Google", rate_limited)])

    [got_full] = await store.recent_results(MODEL, "Anthropic", 10)
    [got_limited] = await store.recent_results(MODEL, "Google", 10)

    assert got_full == full  # dataclass equality: every field, datetimes compared as instants
    assert got_limited == rate_limited
    for got in (got_full, got_limited):
        assert got.started_at.tzinfo is not None and got.started_at.utcoffset() == timedelta(0)
    assert got_full.started_at == datetime(2026, 3, 1, 12, 30, 15, 123_456, tzinfo=UTC)
    assert type(got_limited.error_kind) is ErrorKind and got_limited.error_kind == "rate_limited"
    assert type(got_full.token_count_source) is TokenCountSource
    assert got_full.connection_reused is True and got_limited.connection_reused is False
    assert got_full.to_dict() == full.to_dict() | {"started_at": "2026-03-01T12:30:15.123456Z"}


async def test_minimal_result_keeps_defaults_and_nulls(store: Store) -> None:
    minimal = ProbeResult(
        ok=False, error_kind=ErrorKind.CONFIG_ERROR, error="CLOUDFLARE_API_TOKEN is not set",
        http_status=None, started_at=T0, ttft_s=None, connect_s=None, total_s=None,
        output_tokens=None, token_count_source=None, tokens_per_second=None,
    )
    await store.insert_results([(MODEL, "Cloudflare", minimal)])
    [got] = await store.recent_results(MODEL, "Cloudflare", 1)
    assert got == minimal
    assert got.methodology == METHODOLOGY_VERSION and got.protocol == "" and got.total_s is None


async def test_error_kind_is_stored_as_its_string_value(sql_store: SQLStore) -> None:
    await sql_store.insert_results([(MODEL, "P", failed(T0, ErrorKind.STREAM_ERROR))])
    async with sql_store.engine.connect() as connection:
        stored = (await connection.execute(sa.text("SELECT error_kind FROM probe_result"))).scalar_one()
    assert stored == "stream_error"


async def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.insert_results([(MODEL, "P", make_result(datetime(2026, 3, 1, 12, 0)))])
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.window_samples(MODEL, "P", datetime(2026, 3, 1, 12, 0))
    assert await store.count_results() == 0


# --- ordering, limits, windows --------------------------------------------------------------


async def test_recent_results_newest_first_with_limit(store: Store) -> None:
    times = [T0 + timedelta(minutes=m) for m in (3, 0, 4, 1, 2)]  # inserted out of order
    await store.insert_results([(MODEL, "A", make_result(t, ttft_s=t.minute / 100)) for t in times[:3]])
    await store.insert_results([(MODEL, "A", make_result(t, ttft_s=t.minute / 100)) for t in times[3:]])
    # Neighbours that must not leak in: same model other provider, same provider other model.
    await store.insert_results([
        (MODEL, "B", make_result(T0 + timedelta(hours=1))),
        (OTHER_MODEL, "A", make_result(T0 + timedelta(hours=1))),
    ])

    newest = await store.recent_results(MODEL, "A", 3)
    assert [r.started_at for r in newest] == [T0 + timedelta(minutes=m) for m in (4, 3, 2)]
    everything = await store.recent_results(MODEL, "A", 100)
    assert [r.started_at.minute for r in everything] == [4, 3, 2, 1, 0]
    assert [r.ttft_s for r in everything] == [0.04, 0.03, 0.02, 0.01, 0.0]
    assert await store.recent_results(MODEL, "A", 0) == []
    assert await store.recent_results(MODEL, "nobody", 10) == []
    with pytest.raises(ValueError):
        await store.recent_results(MODEL, "A", -1)


async def test_same_start_time_orders_by_insertion(store: Store) -> None:
    await store.insert_results([(MODEL, "A", make_result(T0, http_status=200))])
    await store.insert_results([(MODEL, "A", failed(T0))])
    first, second = await store.recent_results(MODEL, "A", 2)
    assert (first.ok, second.ok) == (False, True)
    assert (await store.latest_results())[(MODEL, "A")].ok is False


async def test_window_samples_filters_by_since_and_endpoint(store: Store) -> None:
    rows = [
        (MODEL, "A", make_result(T0 - timedelta(hours=25), ttft_s=9.0)),  # outside the window
        (MODEL, "A", make_result(T0, ttft_s=0.5, tokens_per_second=40.0)),  # exactly at since
        (MODEL, "A", failed(T0 + timedelta(minutes=30), ErrorKind.RATE_LIMITED)),
        (MODEL, "A", make_result(T0 + timedelta(hours=1), ttft_s=0.3, tokens_per_second=60.0)),
        (MODEL, "B", make_result(T0 + timedelta(hours=1), ttft_s=0.1)),
        (OTHER_MODEL, "A", make_result(T0 + timedelta(hours=1), ttft_s=0.1)),
    ]
    await store.insert_results(rows)

    samples = await store.window_samples(MODEL, "A", T0)
    assert samples == [
        ProbeSample(T0 + timedelta(hours=1), True, None, 0.3, 60.0),
        ProbeSample(T0 + timedelta(minutes=30), False, "rate_limited", None, None),
        ProbeSample(T0, True, None, 0.5, 40.0),
    ]
    assert all(s.started_at.tzinfo is not None for s in samples)
    # `since` in another offset means the same instant.
    since_in_paris = (T0 + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=1)))
    assert len(await store.window_samples(MODEL, "A", since_in_paris)) == 2
    assert await store.window_samples(MODEL, "A", T0 + timedelta(days=1)) == []


# --- latest per endpoint ----------------------------------------------------------------------


async def test_latest_and_latest_ok_per_endpoint(store: Store) -> None:
    await store.insert_results([
        (MODEL, "A", make_result(T0, ttft_s=0.1)),
        (MODEL, "A", failed(T0 + timedelta(minutes=1))),
        (MODEL, "B", failed(T0)),
        (OTHER_MODEL, "A", make_result(T0 + timedelta(minutes=5), ttft_s=0.7)),
        (OTHER_MODEL, "A", make_result(T0 + timedelta(minutes=2), ttft_s=0.2)),
    ])

    latest = await store.latest_results()
    assert set(latest) == {(MODEL, "A"), (MODEL, "B"), (OTHER_MODEL, "A")}
    assert latest[(MODEL, "A")].started_at == T0 + timedelta(minutes=1)
    assert latest[(MODEL, "A")].ok is False
    assert latest[(OTHER_MODEL, "A")].ttft_s == 0.7

    latest_ok = await store.latest_ok_results()
    assert set(latest_ok) == {(MODEL, "A"), (OTHER_MODEL, "A")}  # B never succeeded
    assert latest_ok[(MODEL, "A")].ttft_s == 0.1
    assert latest_ok[(OTHER_MODEL, "A")].ttft_s == 0.7


async def test_late_insert_of_older_results_never_moves_latest_back(store: Store) -> None:
    await store.insert_results([(MODEL, "A", make_result(T0, ttft_s=0.1))])
    await store.insert_results([(MODEL, "A", failed(T0 + timedelta(minutes=10)))])
    # A buffered batch replayed after the database came back: older than what is stored.
    await store.insert_results([
        (MODEL, "A", failed(T0 - timedelta(minutes=5))),
        (MODEL, "A", make_result(T0 + timedelta(minutes=5), ttft_s=0.5)),
        (MODEL, "A", make_result(T0 - timedelta(minutes=1), ttft_s=0.9)),
    ])
    assert (await store.latest_results())[(MODEL, "A")].started_at == T0 + timedelta(minutes=10)
    # The replayed ok probe is newer than the stored latest ok: it becomes the latest ok.
    assert (await store.latest_ok_results())[(MODEL, "A")].ttft_s == 0.5
    assert await store.count_results(MODEL, "A") == 5


# --- consecutive failures ---------------------------------------------------------------------

OK, FAIL, LIMITED, KEYLESS = "ok", "fail", "limited", "keyless"

CONSECUTIVE_FAILURE_CASES = {
    # endpoint: (outcomes oldest -> newest, expected count)
    "fails after ok, rate limits between": ([OK, FAIL, LIMITED, FAIL, LIMITED], 2),
    "recovered": ([FAIL, FAIL, OK], 0),
    "all ok": ([OK, OK], 0),
    "never ok": ([FAIL, FAIL, FAIL], 3),
    "only rate limited": ([LIMITED, LIMITED], 0),
    "rate limit does not break the run": ([FAIL, LIMITED, FAIL, LIMITED, LIMITED, FAIL], 3),
    "ok in the middle stops the run": ([FAIL, FAIL, OK, LIMITED, FAIL], 1),
    "config errors neither count nor break the run": ([FAIL, KEYLESS, KEYLESS, FAIL], 2),
    "only config errors": ([KEYLESS, KEYLESS], 0),
    "bounded look-back": ([FAIL] * (FAILURE_LOOKBACK + 10), FAILURE_LOOKBACK),
}


def _outcome(started_at: datetime, outcome: str) -> ProbeResult:
    if outcome == OK:
        return make_result(started_at)
    kind = {LIMITED: ErrorKind.RATE_LIMITED, KEYLESS: ErrorKind.CONFIG_ERROR}.get(outcome, ErrorKind.HTTP_ERROR)
    return failed(started_at, kind)


async def test_consecutive_failures(store: Store) -> None:
    rows = [
        (MODEL, provider, _outcome(T0 + timedelta(minutes=i), outcome))
        for provider, (outcomes, _) in CONSECUTIVE_FAILURE_CASES.items()
        for i, outcome in enumerate(outcomes)
    ]
    await store.insert_results(rows[::-1])  # insertion order must not matter
    expected = {(MODEL, p): count for p, (_, count) in CONSECUTIVE_FAILURE_CASES.items()}
    assert await store.consecutive_failures() == expected


async def test_consecutive_failures_empty_store(store: Store) -> None:
    assert await store.consecutive_failures() == {}
    assert await store.latest_results() == {}
    assert await store.latest_ok_results() == {}


# --- transactions -------------------------------------------------------------------------------


async def test_a_refused_batch_writes_nothing(store: Store) -> None:
    good = make_result(T0)
    broken = make_result(T0 + timedelta(minutes=1), protocol=None)  # violates NOT NULL
    with pytest.raises(StoreError) as caught:
        await store.insert_results([(MODEL, "A", good), (MODEL, "A", broken)])
    assert not isinstance(caught.value, StoreUnavailableError)  # retrying would not help
    assert await store.count_results() == 0
    assert await store.latest_results() == {}


UNBINDABLE = {
    "an int beyond 64 bits": {"stream_bytes": 2**70},
    "a lone surrogate": {"finish_reason": "stop\udc80"},
}


@pytest.mark.parametrize("value", list(UNBINDABLE), ids=list(UNBINDABLE))
async def test_a_value_no_driver_takes_is_a_refusal_that_writes_nothing(store: Store, value: str) -> None:
    good = make_result(T0)
    poisoned = make_result(T0 + timedelta(minutes=1), **UNBINDABLE[value])
    with pytest.raises(StoreError) as caught:
        await store.insert_results([(MODEL, "A", good), (MODEL, "A", poisoned)])
    assert not isinstance(caught.value, StoreUnavailableError)  # the data, not the database
    assert "1180591620717411303424" not in str(caught.value) and "stop" not in str(caught.value)
    assert await store.count_results() == 0
    await store.insert_results([(MODEL, "A", good)])  # the store is fine for the next rows
    assert await store.recent_results(MODEL, "A", 5) == [good]


async def test_a_database_that_refuses_every_write_is_unavailable_not_a_refusal(
    sql_backend: str, fresh_database_url: str
) -> None:
    # A standby after a failover (PostgreSQL) or a read-only file (SQLite): the rows are fine and
    # must be kept for later, not dropped as if the database had refused their data.
    store = await open_store(fresh_database_url)
    try:
        if sql_backend == "postgresql":
            name = fresh_database_url.rsplit("/", 1)[1]
            async with store.engine.begin() as connection:
                await connection.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
            await store.engine.dispose()  # new sessions pick the setting up
        else:  # file modes do not stop root: make every new connection read-only instead
            def read_only(dbapi_connection, _record) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA query_only = ON")
                cursor.close()

            sa.event.listen(store.engine.sync_engine, "connect", read_only)
            await store.engine.dispose()
        with pytest.raises(StoreUnavailableError):
            await store.insert_results([(MODEL, "A", make_result(T0))])
    finally:
        await store.close()


async def _refuse_writes(store: Store, backend: str, store_url: str | None, refuse: bool) -> None:
    """Make the database refuse (or take again) every write, whatever the rows: a read-only
    database for PostgreSQL, `query_only` connections for SQLite (file modes do not stop root)."""
    if backend == "memory":
        assert isinstance(store, InMemoryStore)
        store.fail_writes = StoreUnavailableError("read-only database") if refuse else None
        return
    assert isinstance(store, SQLStore) and store_url is not None
    if backend == "postgresql":
        name = store_url.rsplit("/", 1)[1]
        setting = "SET default_transaction_read_only = on" if refuse else "RESET default_transaction_read_only"
        async with store.engine.begin() as connection:
            await connection.execute(sa.text("SET TRANSACTION READ WRITE"))  # to lift it, too
            await connection.execute(sa.text(f'ALTER DATABASE "{name}" {setting}'))
    elif refuse:
        sa.event.listen(store.engine.sync_engine, "connect", _query_only)
    else:
        sa.event.remove(store.engine.sync_engine, "connect", _query_only)
    await store.engine.dispose()  # new connections pick the setting up


def _query_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


async def test_history_is_unavailable_while_writes_fail_and_returns_with_them(
    store: Store, backend: str, store_url: str | None
) -> None:
    # The stored rows lack whatever waits in the runner's buffer: answering from them would
    # serve a stale history as if it were current.
    await store.insert_results([(MODEL, "A", make_result(T0))])
    await _refuse_writes(store, backend, store_url, True)
    try:
        with pytest.raises(StoreUnavailableError):
            await store.insert_results([(MODEL, "A", make_result(T0 + timedelta(minutes=1)))])
        with pytest.raises(StoreUnavailableError, match="writes are failing"):
            await store.recent_results(MODEL, "A", 10)
        with pytest.raises(StoreUnavailableError):
            await store.window_samples(MODEL, "A", T0)
        await store.ping()  # reachable: readiness tells "unwritable" from "unreachable"
    finally:
        await _refuse_writes(store, backend, store_url, False)
    await store.insert_results([(MODEL, "A", make_result(T0 + timedelta(minutes=2)))])
    assert [r.started_at.minute for r in await store.recent_results(MODEL, "A", 10)] == [2, 0]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_sqlite_file_deleted_or_replaced_while_open_makes_the_store_unavailable(
    tmp_path, how: str
) -> None:
    # SQLite keeps writing to the open inode, which nobody reads again: the store must say so.
    path = tmp_path / "monitor.db"
    opened = await open_store(f"sqlite:///{path}")
    try:
        await opened.insert_results([(MODEL, "A", make_result(T0))])
        if how == "deleted":
            path.unlink()
        else:
            other = tmp_path / "other.db"
            other.write_bytes(b"")
            other.replace(path)
        with pytest.raises(StoreUnavailableError, match=f"was {how}"):
            await opened.ping()
        with pytest.raises(StoreUnavailableError, match=f"was {how}"):
            await opened.insert_results([(MODEL, "A", make_result(T0 + timedelta(minutes=1)))])
        with pytest.raises(StoreUnavailableError):
            await opened.recent_results(MODEL, "A", 10)
    finally:
        await opened.close()


# --- migrations and schema ----------------------------------------------------------------------


async def test_migrations_are_idempotent(fresh_database_url: str) -> None:
    first = await open_store(fresh_database_url)
    try:
        assert await first.schema_revision() == head_revision()
        await first.insert_results([(MODEL, "A", make_result(T0))])
    finally:
        await first.close()
    second = await open_store(fresh_database_url)  # migrating again changes nothing
    try:
        assert await second.schema_revision() == head_revision()
        assert await second.count_results() == 1
    finally:
        await second.close()


async def test_token_chunks_migration_keeps_the_data_up_and_down(fresh_database_url: str) -> None:
    from alembic import command

    from monitor.store.database import alembic_config, create_engine, normalize_database_url

    def migrate(connection: sa.Connection, revision: str, down: bool = False) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    def columns(connection: sa.Connection) -> set[str]:
        return {column["name"] for column in sa.inspect(connection).get_columns("probe_result")}

    engine = create_engine(normalize_database_url(fresh_database_url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate, "0001")
        store = SQLStore(engine)
        async with engine.begin() as connection:  # a row written under the old name
            await connection.run_sync(lambda c: c.execute(
                sa.text("INSERT INTO probe_result (model_id, provider, protocol, model, ok, started_at, "
                        "content_chunks, first_read_tokens, stream_bytes, methodology) VALUES "
                        "('m', 'p', 'openai', 'x', true, :at, 42, 1, 10, 'v')"),
                {"at": T0},
            ))
            await connection.run_sync(migrate, "head")
            assert "token_chunks" in await connection.run_sync(columns)
        [row] = await store.recent_results("m", "p", 1)
        assert row.token_chunks == 42
        async with engine.begin() as connection:
            await connection.run_sync(migrate, "0001", True)
            assert {"content_chunks"} <= await connection.run_sync(columns)
            assert "token_chunks" not in await connection.run_sync(columns)
            value = await connection.scalar(sa.text("SELECT content_chunks FROM probe_result"))
        assert value == 42
    finally:
        await engine.dispose()


async def test_concurrent_first_starts_migrate_once(fresh_database_url: str) -> None:
    opened = await asyncio.gather(*(open_store(fresh_database_url) for _ in range(3)), return_exceptions=True)
    stores = [s for s in opened if isinstance(s, SQLStore)]
    try:
        assert len(stores) == 3, [repr(e) for e in opened if not isinstance(e, SQLStore)]
        await asyncio.gather(
            *(s.insert_results([(MODEL, f"P{i}", make_result(T0))]) for i, s in enumerate(stores))
        )
        assert [await s.schema_revision() for s in stores] == [head_revision()] * 3
        assert await stores[0].count_results() == 3
    finally:
        for store in stores:
            await store.close()


async def test_in_memory_sqlite_store() -> None:
    memory = await open_store("sqlite://")
    try:
        await memory.insert_results(
            [(MODEL, "A", make_result(T0)), (MODEL, "A", failed(T0 + timedelta(minutes=1)))]
        )
        assert [r.ok for r in await memory.recent_results(MODEL, "A", 5)] == [False, True]
        assert await memory.consecutive_failures() == {(MODEL, "A"): 1}
    finally:
        await memory.close()


async def test_open_without_migrate_leaves_schema_alone(fresh_database_url: str) -> None:
    unmigrated = await open_store(fresh_database_url, migrate=False)
    try:
        await unmigrated.ping()
        assert await unmigrated.schema_revision() is None
        with pytest.raises(StoreError):
            await unmigrated.count_results()
    finally:
        await unmigrated.close()


def test_upgrade_wrapper_for_the_cli(fresh_database_url: str) -> None:
    assert upgrade(fresh_database_url) == head_revision()
    assert upgrade(fresh_database_url) == head_revision()


RECENT_INDEX = "ix_probe_result_endpoint_recent"


async def test_migrated_schema_matches_the_models(sql_store: SQLStore) -> None:
    def differences(connection: sa.Connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    async with sql_store.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    # Alembic cannot compare an index with DESC columns (it reports remove+add of the same
    # index); that index is checked by reflection below instead.
    assert [d for d in diff if not _is_recent_index_diff(d)] == []


def _is_recent_index_diff(diff) -> bool:
    return diff[0] in ("add_index", "remove_index") and diff[1].name == RECENT_INDEX


async def test_recent_index_is_newest_first(sql_store: SQLStore) -> None:
    async with sql_store.engine.connect() as connection:
        if sql_store.dialect_name == "sqlite":
            rows = (await connection.exec_driver_sql(f"PRAGMA index_xinfo({RECENT_INDEX})")).all()
            keys = [(row[2], bool(row[3])) for row in rows if row[5]]  # (name, desc) of key columns
            # SQLite has no INCLUDE: the window figures' columns trail the key, ascending.
            assert keys[4:] == [(name, False) for name in WINDOW_INDEX_CARRIED]
            keys = keys[:4]
        else:
            indexes = await connection.run_sync(lambda c: sa.inspect(c).get_indexes("probe_result"))
            [index] = [i for i in indexes if i["name"] == RECENT_INDEX]
            sorting = index.get("column_sorting", {})
            keys = [(name, "desc" in sorting.get(name, ())) for name in index["column_names"]]
            included = index["dialect_options"]["postgresql_include"]
            assert included == list(WINDOW_INDEX_CARRIED)
    assert keys == [("model_id", False), ("provider", False), ("started_at", True), ("id", True)]


async def test_sqlite_settings(tmp_path) -> None:
    database = tmp_path / "not" / "yet" / "monitor.db"
    opened = await open_store(f"sqlite:///{database}")  # creates the missing directories
    try:
        assert database.is_file()
        async with opened.engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}")  # noqa: E731
            assert (await pragma("journal_mode")).scalar_one() == "wal"
            assert (await pragma("foreign_keys")).scalar_one() == 1
            assert (await pragma("busy_timeout")).scalar_one() >= 1000
    finally:
        await opened.close()


# --- URLs -------------------------------------------------------------------------------------

URL_CASES = [
    ("sqlite:///./data/monitor.db", "sqlite+aiosqlite:///./data/monitor.db"),
    ("sqlite:////var/lib/monitor.db", "sqlite+aiosqlite:////var/lib/monitor.db"),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("sqlite://", "sqlite+aiosqlite://"),
    ("postgresql://u:p@db:5432/monitor", "postgresql+asyncpg://u:p@db:5432/monitor"),
    ("postgres://u:p@db/monitor", "postgresql+asyncpg://u:p@db/monitor"),
    ("POSTGRESQL://u@db/monitor", "postgresql+asyncpg://u@db/monitor"),
    ("postgresql+asyncpg://u@db/monitor", "postgresql+asyncpg://u@db/monitor"),
    ("postgresql://u:p%40ss%3Aw@db/m", "postgresql+asyncpg://u:p%40ss%3Aw@db/m"),
    ("postgresql://u@db/m?sslmode=require", "postgresql+asyncpg://u@db/m?ssl=require"),
    ("postgresql://u@db/m?ssl=verify-full&sslmode=require", "postgresql+asyncpg://u@db/m?ssl=verify-full"),
]


@pytest.mark.parametrize(("given", "expected"), URL_CASES)
def test_normalize_database_url(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert normalize_database_url(expected) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://root:hunter2@db/monitor", "unsupported database URL scheme 'mysql'"),
        ("postgresql+psycopg2://u:hunter2@db/m", "not supported"),
        ("sqlite+pysqlite:///x.db", "not supported"),
        ("./data/monitor.db", "no scheme"),
        ("", "no scheme"),
    ],
)
def test_unsupported_urls_are_refused_without_echoing_secrets(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        normalize_database_url(given)
    assert "hunter2" not in str(caught.value)


def test_redacted_url_hides_the_password() -> None:
    redacted = redact_database_url("postgresql+asyncpg://monitor:hunter2@db:5432/monitor")
    assert redacted == "postgresql+asyncpg://monitor:***@db:5432/monitor"


# --- failures ------------------------------------------------------------------------------------


async def test_unreachable_database_raises_store_unavailable(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"  # nothing listens on port 1
    lazy = await open_store(url, migrate=False)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            await lazy.ping()
        assert "hunter2" not in str(caught.value)
        with pytest.raises(StoreUnavailableError):
            await lazy.insert_results([(MODEL, "A", make_result(T0))])
    finally:
        await lazy.close()
    with pytest.raises(StoreUnavailableError) as caught:
        await open_store(url)  # migrating needs the database
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caplog.text


class TcpRelay:
    """A loopback TCP relay to PostgreSQL that the test can cut and restore (a database outage)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, client_reader, client_writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {client_writer, upstream_writer}

        async def pump(reader, writer) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pump(client_reader, upstream_writer), pump(upstream_reader, client_writer))
        self._writers -= {client_writer, upstream_writer}


async def test_postgresql_outage_then_recovery(postgres_session_database: str) -> None:
    relay = TcpRelay(POSTGRES_PORT)
    await relay.start()
    store = await open_store(postgres_url(postgres_session_database, port=relay.port))
    try:
        await empty_tables(store)
        await store.insert_results([(MODEL, "A", make_result(T0))])
        await relay.cut()
        with pytest.raises(StoreUnavailableError):
            await store.ping()
        with pytest.raises(StoreUnavailableError):
            await store.insert_results([(MODEL, "A", make_result(T0 + timedelta(minutes=1)))])
        await relay.start()  # same port: the database is back
        await store.ping()
        await store.insert_results([(MODEL, "A", make_result(T0 + timedelta(minutes=2)))])
        assert [r.started_at.minute for r in await store.recent_results(MODEL, "A", 10)] == [2, 0]
    finally:
        await store.close()
        await relay.cut()


# --- interface ----------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", [SQLStore, InMemoryStore])
def test_each_store_implements_every_store_verb(implementation: type) -> None:
    verbs = [name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")]
    assert set(verbs) >= {"insert_results", "recent_results", "window_samples", "latest_results",
                          "latest_ok_results", "ping", "close"}
    for verb in verbs:
        ours = getattr(implementation, verb)
        assert inspect.iscoroutinefunction(ours), verb
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(getattr(Store, verb)).parameters
        ), verb


# --- following new rows (API replicas) ------------------------------------------------------------


async def test_samples_after_pages_through_new_rows_in_id_order(store: Store) -> None:
    assert await store.max_result_id() == 0
    assert await store.samples_after(0, 10) == []
    start = T0
    await store.insert_results([(MODEL, "A", make_result(start))])
    cursor = await store.max_result_id()
    await store.insert_results([
        (MODEL, "B", make_result(start + timedelta(seconds=1))),
        (OTHER_MODEL, "A", failed(start + timedelta(seconds=2), ErrorKind.RATE_LIMITED)),
        (MODEL, "A", make_result(start + timedelta(seconds=3), ttft_s=0.5)),
    ])
    first = await store.samples_after(cursor, 2)
    rest = await store.samples_after(first[-1][0], 2)
    rows = first + rest
    assert [(m, p) for _, m, p, _ in rows] == [(MODEL, "B"), (OTHER_MODEL, "A"), (MODEL, "A")]
    assert [row_id for row_id, *_ in rows] == sorted(row_id for row_id, *_ in rows)
    assert rows[-1][0] == await store.max_result_id()
    assert rows[1][3].error_kind == "rate_limited" and rows[1][3].ok is False
    assert rows[2][3].ttft_s == 0.5 and rows[2][3].started_at == start + timedelta(seconds=3)
    assert await store.samples_after(rows[-1][0], 10) == []
