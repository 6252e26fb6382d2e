"""Storage interface in domain verbs. Implementations: `SQLStore` (SQLite or PostgreSQL).

Callers (runner, live figures, API) depend only on the `Store` protocol below.

`SQLStore` (below the protocol) keeps every probe in `probe_result` (tables: `monitor.models`;
schema: alembic, `monitor/migrations`). How each read stays cheap at 1,000,000 rows / 6,000
endpoints:
- `recent_results`, `window_samples`: one range of the index (model_id, provider, started_at DESC,
  id DESC), never a table scan. SQLite reads it in index order; PostgreSQL may instead bitmap-read
  the same range and sort its few dozen rows when it estimates that cheaper.
  `tests/store/test_query_plans.py` checks the plans on both backends.
- `latest_results`, `latest_ok_results`: the small `endpoint_latest` table (one row per endpoint,
  updated in the insert's own transaction, only ever moved forward in time), then the probes it
  points to, looked up by primary key.
- `consecutive_failures`: per endpoint, a count over at most the newest `FAILURE_LOOKBACK` rows
  newer than its latest ok probe (an index range bounded at both ends).

Measured by `python -m bench.history` (README "Benchmarks"): the history page and the 24 h window
take about 1.2-1.8 ms at 1,000,000 rows on both backends, the same as at 10,000.

Errors: every verb raises `StoreUnavailableError` when the database cannot be reached or drops
the connection (retry later: the runner buffers), and `StoreError` for other database refusals
(retrying the same rows will not help). SQLAlchemy's own exceptions never escape a verb. Neither
the messages nor the logs carry a URL's password or row values.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import dataclasses
import enum
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from monitor.models import UTCDateTime, endpoint_latest_table, probe_table
from monitor.probes.base import NOT_PROVIDER_FAILURES, ErrorKind, ProbeResult, TokenCountSource
from monitor.stats import ProbeSample


class Store(Protocol):
    async def insert_results(self, rows: list[tuple[str, str, ProbeResult]]) -> None:
        """Persist (model_id, provider, result) rows in one transaction. Raises on DB failure."""

    async def recent_results(self, model_id: str, provider: str, limit: int) -> list[ProbeResult]:
        """Newest first."""

    async def window_samples(self, model_id: str, provider: str, since: datetime) -> list[ProbeSample]:
        """Probes with started_at >= since, newest first (index-backed, never a history scan)."""

    async def latest_results(self) -> dict[tuple[str, str], ProbeResult]:
        """Latest probe per (model_id, provider): used to restore metrics after a restart."""

    async def latest_ok_results(self) -> dict[tuple[str, str], ProbeResult]:
        """Latest ok probe per (model_id, provider)."""

    async def consecutive_failures(self) -> dict[tuple[str, str], int]:
        """Failed probes in a row per endpoint, newest backwards (NOT_PROVIDER_FAILURES skipped)."""

    async def samples_after(self, after_id: int, limit: int) -> list[tuple[int, str, str, ProbeSample]]:
        """(id, model_id, provider, sample) of probes stored after id `after_id`, in id order:
        how API replicas follow what the scheduler writes without re-reading history."""

    async def max_result_id(self) -> int:
        """The newest stored probe's id (0 when empty)."""

    async def ping(self) -> None:
        """Raises when the database is unreachable."""

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class StoreError(Exception):
    """The database refused the data of an operation. Retrying the same call will not help."""


class StoreUnavailableError(StoreError):
    """The database cannot serve the operation now, whatever its data: unreachable, connection
    dropped, read-only (a standby after a failover), database missing, permission denied, full.
    Retry later (rows are not lost by the store: nothing of a failed `insert_results` batch was
    written)."""


# PostgreSQL SQLSTATE classes that blame the data itself (data exception, integrity constraint
# violation): only then is one row refused while others could be written. Every other failure
# is about the database's state, and writing the same rows later may succeed.
_DATA_SQLSTATE_CLASSES = ("22", "23")


def _is_data_refusal(error: sa_exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return False
    if isinstance(error, (sa_exc.IntegrityError, sa_exc.DataError)):
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _DATA_SQLSTATE_CLASSES


def _describe(error: BaseException) -> str:
    """Short text for an exception: class and first line, without SQL or parameters."""
    orig = getattr(error, "orig", None) or error
    first_line = (str(orig).strip().splitlines() or [""])[0][:240]
    return f"{type(orig).__name__}: {first_line}" if first_line else type(orig).__name__


@contextlib.contextmanager
def _database_errors(verb: str) -> Iterator[None]:
    try:
        yield
    except sa_exc.DBAPIError as error:
        kind = StoreError if _is_data_refusal(error) else StoreUnavailableError
        raise kind(f"database error in {verb}: {_describe(error)}") from error
    except (sa_exc.TimeoutError, sa_exc.DisconnectionError, OSError, TimeoutError) as error:
        raise StoreUnavailableError(f"database unavailable in {verb}: {_describe(error)}") from error


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

_SCHEME_ALIASES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgres+asyncpg": "postgresql+asyncpg",
}
_URL_HELP = "use sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def normalize_database_url(url: str) -> str:
    """The async-driver form of a database URL; ValueError for anything unsupported.

    `sqlite:///./data/monitor.db` -> `sqlite+aiosqlite:///./data/monitor.db`;
    `postgresql://` and `postgres://` -> `postgresql+asyncpg://`; async URLs pass through.
    libpq's `sslmode=` query option becomes asyncpg's `ssl=`. Only the scheme is rewritten, so the
    rest (including a password with special characters) is kept byte for byte. Error messages
    name the scheme only, never the URL (it may hold a password).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"database URL has no scheme: {_URL_HELP}")
    scheme, rest = url.strip().split("://", 1)
    normalized = _SCHEME_ALIASES.get(scheme.lower())
    if normalized is None:
        base = scheme.lower().split("+", 1)[0]
        if base in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"database driver {scheme!r} is not supported (the monitor is async): {_URL_HELP}"
            )
        raise ValueError(f"unsupported database URL scheme {scheme!r}: {_URL_HELP}")
    if normalized.startswith("postgresql") and "?" in rest:
        rest = _libpq_options_to_asyncpg(rest)
    return f"{normalized}://{rest}"


def _libpq_options_to_asyncpg(rest: str) -> str:
    location, query = rest.split("?", 1)
    options = parse_qsl(query, keep_blank_values=True)
    if not any(key == "sslmode" for key, _ in options):
        return rest
    has_ssl = any(key == "ssl" for key, _ in options)
    translated = [
        ("ssl", value) if key == "sslmode" else (key, value)
        for key, value in options
        if not (key == "sslmode" and has_ssl)
    ]
    return f"{location}?{urlencode(translated)}"


def redact_database_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is shown by scheme only
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


# ---------------------------------------------------------------------------------------------
# Engine and migrations
# ---------------------------------------------------------------------------------------------

_LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Serializes concurrent `open_store(migrate=True)` calls on one PostgreSQL database
# (pg_advisory_xact_lock key: any constant unique to this application).
_MIGRATION_LOCK_KEY = 0x6C6C6D6D6F6E  # "llmmon"
SQLITE_BUSY_TIMEOUT_MS = 5000
_SQLITE_BEGIN = "monitor_sqlite_begin"
POSTGRES_CONNECT_TIMEOUT_S = 10


def _sqlite_is_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or "mode=memory" in database


def _create_engine(url: str) -> AsyncEngine:
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if _sqlite_is_memory(database):
            # Each connection to ":memory:" would be its own empty database: share one.
            engine = create_async_engine(url, poolclass=StaticPool, hide_parameters=True)
        else:
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=POSTGRES_CONNECT_TIMEOUT_S,
        connect_args={
            "timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "server_settings": {"application_name": "llm-monitor"},
        },
    )


def _ensure_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so only its first opener really does it). Switching
    needs an exclusive lock and SQLite may answer "database is locked" at once, without waiting
    out busy_timeout, while another connection is switching the same new file: retry briefly.
    Runs on aiosqlite's own thread, so sleeping here does not block the event loop."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which never BEGINs before DDL
        # or SELECT) and BEGIN ourselves below: migrations become atomic, reads consistent.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # WAL: readers (API) never block the writer (runner) and vice versa.
            _ensure_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE), so a second writer waits out
        # busy_timeout instead of failing when both try to upgrade a read lock.
        connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade_on_connection(connection: sa.Connection) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextlib.asynccontextmanager
async def _writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a write transaction (committed on success, rolled back on error)."""
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection = await connection.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        async with connection.begin():
            yield connection


async def _migrate(engine: AsyncEngine) -> None:
    async with _writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Two processes starting at once: the second waits, then finds the schema at head.
            await connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade_on_connection)


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def open_store(database_url: str, *, migrate: bool = True) -> SQLStore:
    """Open the database at `database_url` (plain or async form) and, by default, migrate it to
    the newest schema. Raises ValueError for an unsupported URL and StoreUnavailableError when
    migrating an unreachable database. With migrate=False nothing connects until the first call."""
    url = normalize_database_url(database_url)
    with _database_errors("open_store"):  # e.g. the SQLite directory cannot be created
        engine = _create_engine(url)
    try:
        if migrate:
            with _database_errors("migrations"):
                await _migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    _LOG.info("store opened: %s", redact_database_url(url))
    return SQLStore(engine)


async def upgrade_async(database_url: str) -> str:
    """Migrate the database to head; returns the revision it is now at."""
    store = await open_store(database_url, migrate=True)
    try:
        return await store.schema_revision() or ""
    finally:
        await store.close()


def upgrade(database_url: str) -> str:
    """Blocking `upgrade_async` for `llm-monitor db upgrade` (not callable inside a running loop)."""
    return asyncio.run(upgrade_async(database_url))


# ---------------------------------------------------------------------------------------------
# Rows <-> ProbeResult
# ---------------------------------------------------------------------------------------------

_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeResult))
# How many of an endpoint's newest probes `consecutive_failures` looks at.
FAILURE_LOOKBACK = 50
# Bound parameters per primary-key lookup (both drivers cap a statement at 32,767).
_IDS_PER_LOOKUP = 5000


def _result_to_row(model_id: str, provider: str, result: ProbeResult) -> dict[str, Any]:
    started_at = result.started_at
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError(f"{model_id}/{provider}: started_at must be timezone-aware (UTC)")
    row: dict[str, Any] = {"model_id": model_id, "provider": provider}
    for name in _RESULT_FIELDS:
        value = getattr(result, name)
        row[name] = value.value if isinstance(value, enum.Enum) else value
    return row


def _row_to_result(row: sa.RowMapping) -> ProbeResult:
    values = {name: row[name] for name in _RESULT_FIELDS}
    if values["error_kind"] is not None:
        values["error_kind"] = ErrorKind(values["error_kind"])
    if values["token_count_source"] is not None:
        values["token_count_source"] = TokenCountSource(values["token_count_source"])
    return ProbeResult(**values)


def _row_to_sample(row: Any) -> ProbeSample:
    return ProbeSample(
        started_at=row.started_at, ok=row.ok, error_kind=row.error_kind,
        ttft_s=row.ttft_s, tokens_per_second=row.tokens_per_second,
    )


def _newest_first(table: sa.Table) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    return table.c.started_at.desc(), table.c.id.desc()


def _same_endpoint(table: sa.Table, model_id: Any, provider: Any) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.model_id == model_id, table.c.provider == provider)


# Statement builders are module functions so tests can EXPLAIN exactly what the store runs.


def recent_results_statement(model_id: str, provider: str, limit: int) -> sa.Select:
    probe = probe_table()
    return (
        sa.select(probe)
        .where(_same_endpoint(probe, model_id, provider))
        .order_by(*_newest_first(probe))
        .limit(limit)
    )


def window_samples_statement(model_id: str, provider: str, since: datetime) -> sa.Select:
    probe = probe_table()
    return (
        sa.select(
            probe.c.started_at, probe.c.ok, probe.c.error_kind, probe.c.ttft_s,
            probe.c.tokens_per_second,
        )
        .where(_same_endpoint(probe, model_id, provider), probe.c.started_at >= since)
        .order_by(*_newest_first(probe))
    )


def samples_after_statement(after_id: int, limit: int) -> sa.Select:
    probe = probe_table()
    return (
        sa.select(
            probe.c.id, probe.c.model_id, probe.c.provider, probe.c.started_at, probe.c.ok,
            probe.c.error_kind, probe.c.ttft_s, probe.c.tokens_per_second,
        )
        .where(probe.c.id > after_id)
        .order_by(probe.c.id)
        .limit(limit)
    )


def consecutive_failures_statement(lookback: int = FAILURE_LOOKBACK) -> sa.Select:
    """(model_id, provider, failures) per endpoint: of the endpoint's newest `lookback` probes
    newer than its latest ok probe, those that failed for the provider's sake (not rate_limited
    or config_error: `NOT_PROVIDER_FAILURES`). One index
    range per endpoint, bounded below by the latest ok probe and in length by `lookback`."""
    probe = probe_table().alias("recent_probe")
    latest = endpoint_latest_table()
    epoch = sa.literal(datetime(1970, 1, 1, tzinfo=UTC), UTCDateTime())
    since_latest_ok = (
        sa.select(probe.c.ok, probe.c.error_kind)
        .where(
            _same_endpoint(probe, latest.c.model_id, latest.c.provider),
            probe.c.started_at > sa.func.coalesce(latest.c.latest_ok_started_at, epoch),
        )
        .order_by(*_newest_first(probe))
        .limit(lookback)
        .correlate(latest)  # to the outer query: the endpoint being counted
        .subquery("since_latest_ok")
    )
    failures = (
        sa.select(sa.func.count())
        .select_from(since_latest_ok)
        .where(
            sa.not_(since_latest_ok.c.ok),
            sa.or_(
                since_latest_ok.c.error_kind.is_(None),
                since_latest_ok.c.error_kind.not_in(sorted(kind.value for kind in NOT_PROVIDER_FAILURES)),
            ),
        )
        .correlate(latest)
        .scalar_subquery()
    )
    return sa.select(latest.c.model_id, latest.c.provider, failures.label("failures"))


def _upsert_latest_statement(dialect_name: str) -> Any:
    """INSERT into endpoint_latest, or move an existing row's pointers forward (never back)."""
    latest = endpoint_latest_table()
    insert = (pg_dialect.insert if dialect_name == "postgresql" else sqlite_dialect.insert)(latest)
    new = insert.excluded
    newer = new.latest_started_at >= latest.c.latest_started_at
    newer_ok = sa.and_(
        new.latest_ok_started_at.is_not(None),
        sa.or_(
            latest.c.latest_ok_started_at.is_(None),
            new.latest_ok_started_at >= latest.c.latest_ok_started_at,
        ),
    )
    return insert.on_conflict_do_update(
        index_elements=[latest.c.model_id, latest.c.provider],
        set_={
            "latest_probe_id": sa.case((newer, new.latest_probe_id), else_=latest.c.latest_probe_id),
            "latest_started_at": sa.case((newer, new.latest_started_at), else_=latest.c.latest_started_at),
            "latest_ok_probe_id": sa.case(
                (newer_ok, new.latest_ok_probe_id), else_=latest.c.latest_ok_probe_id
            ),
            "latest_ok_started_at": sa.case(
                (newer_ok, new.latest_ok_started_at), else_=latest.c.latest_ok_started_at
            ),
        },
    )


def _latest_pointers(rows: list[dict[str, Any]], ids: list[int]) -> list[dict[str, Any]]:
    """The newest and newest-ok probe of each endpoint within one inserted batch."""
    pointers: dict[tuple[str, str], dict[str, Any]] = {}
    for row, probe_id in zip(rows, ids, strict=True):
        key = (row["model_id"], row["provider"])
        rank = (row["started_at"], probe_id)
        pointer = pointers.setdefault(
            key,
            {
                "model_id": key[0], "provider": key[1],
                "latest_probe_id": probe_id, "latest_started_at": row["started_at"],
                "latest_ok_probe_id": None, "latest_ok_started_at": None,
            },
        )
        if rank >= (pointer["latest_started_at"], pointer["latest_probe_id"]):
            pointer["latest_probe_id"], pointer["latest_started_at"] = probe_id, row["started_at"]
        if row["ok"] and (
            pointer["latest_ok_probe_id"] is None
            or rank >= (pointer["latest_ok_started_at"], pointer["latest_ok_probe_id"])
        ):
            pointer["latest_ok_probe_id"], pointer["latest_ok_started_at"] = probe_id, row["started_at"]
    return list(pointers.values())


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return moment


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class SQLStore:
    """`Store` on SQLite (aiosqlite) or PostgreSQL (asyncpg). Owns its engine: call close()."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._upsert_latest = _upsert_latest_statement(engine.dialect.name)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    async def insert_results(self, rows: list[tuple[str, str, ProbeResult]]) -> None:
        if not rows:
            return
        values = [_result_to_row(model_id, provider, result) for model_id, provider, result in rows]
        probe = probe_table()
        with _database_errors("insert_results"):
            async with _writing(self._engine) as connection:
                inserted = await connection.execute(
                    sa.insert(probe).returning(probe.c.id, sort_by_parameter_order=True), values
                )
                ids = list(inserted.scalars())
                await connection.execute(self._upsert_latest, _latest_pointers(values, ids))

    async def recent_results(self, model_id: str, provider: str, limit: int) -> list[ProbeResult]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        async with self._reading("recent_results") as connection:
            result = await connection.execute(recent_results_statement(model_id, provider, limit))
            return [_row_to_result(row) for row in result.mappings()]

    async def window_samples(self, model_id: str, provider: str, since: datetime) -> list[ProbeSample]:
        statement = window_samples_statement(model_id, provider, _require_aware(since, "since"))
        async with self._reading("window_samples") as connection:
            result = await connection.execute(statement)
            return [
                _row_to_sample(row)
                for row in result
            ]

    async def samples_after(self, after_id: int, limit: int) -> list[tuple[int, str, str, ProbeSample]]:
        # Ids grow in commit order here: one scheduler process writes, one batch at a time.
        async with self._reading("samples_after") as connection:
            result = await connection.execute(samples_after_statement(after_id, limit))
            return [
                (
                    row.id, row.model_id, row.provider,
                    _row_to_sample(row),
                )
                for row in result
            ]

    async def max_result_id(self) -> int:
        probe = probe_table()
        async with self._reading("max_result_id") as connection:
            return int(await connection.scalar(sa.select(sa.func.coalesce(sa.func.max(probe.c.id), 0))))

    async def latest_results(self) -> dict[tuple[str, str], ProbeResult]:
        return await self._results_by_pointer("latest_probe_id", "latest_results")

    async def latest_ok_results(self) -> dict[tuple[str, str], ProbeResult]:
        return await self._results_by_pointer("latest_ok_probe_id", "latest_ok_results")

    async def consecutive_failures(self) -> dict[tuple[str, str], int]:
        """Failed probes in a row, newest backwards, per endpoint that has any probe.

        `rate_limited` and `config_error` probes neither count nor break the run; the run stops
        at the newest ok probe; at most the newest FAILURE_LOOKBACK probes are looked at (so the
        answer is capped there). For restoring `llm_endpoint_consecutive_failures` after a restart."""
        async with self._reading("consecutive_failures") as connection:
            result = await connection.execute(consecutive_failures_statement())
            return {(row.model_id, row.provider): int(row.failures) for row in result}

    async def count_results(self, model_id: str | None = None, provider: str | None = None) -> int:
        """Number of stored probes, all or one endpoint's (a full count: tests and benchmarks)."""
        probe = probe_table()
        statement = sa.select(sa.func.count()).select_from(probe)
        if model_id is not None:
            statement = statement.where(probe.c.model_id == model_id)
        if provider is not None:
            statement = statement.where(probe.c.provider == provider)
        async with self._reading("count_results") as connection:
            return int((await connection.execute(statement)).scalar_one())

    async def schema_revision(self) -> str | None:
        """The alembic revision the database is at (None before the first migration)."""
        async with self._reading("schema_revision") as connection:
            inspector_has_table = await connection.run_sync(
                lambda sync: sa.inspect(sync).has_table("alembic_version")
            )
            if not inspector_has_table:
                return None
            result = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            return result.scalar_one_or_none()

    async def ping(self) -> None:
        async with self._reading("ping") as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()

    async def _results_by_pointer(self, pointer: str, verb: str) -> dict[tuple[str, str], ProbeResult]:
        # Two steps on purpose: joining the pointers to the probes lets PostgreSQL pick a hash
        # join over a full scan of the history; looking the ids up by primary key cannot.
        probe, latest = probe_table(), endpoint_latest_table()
        pointers = sa.select(latest.c[pointer]).where(latest.c[pointer].is_not(None))
        results: dict[tuple[str, str], ProbeResult] = {}
        async with self._reading(verb) as connection:
            ids = list((await connection.execute(pointers)).scalars())
            for start in range(0, len(ids), _IDS_PER_LOOKUP):
                chunk = ids[start : start + _IDS_PER_LOOKUP]
                rows = await connection.execute(sa.select(probe).where(probe.c.id.in_(chunk)))
                for row in rows.mappings():
                    results[(row["model_id"], row["provider"])] = _row_to_result(row)
        return results

    @contextlib.asynccontextmanager
    async def _reading(self, verb: str) -> AsyncIterator[AsyncConnection]:
        with _database_errors(verb):
            async with self._engine.connect() as connection:
                yield connection


__all__ = [
    "FAILURE_LOOKBACK",
    "SQLStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "consecutive_failures_statement",
    "head_revision",
    "normalize_database_url",
    "open_store",
    "recent_results_statement",
    "samples_after_statement",
    "redact_database_url",
    "upgrade",
    "upgrade_async",
    "window_samples_statement",
]
