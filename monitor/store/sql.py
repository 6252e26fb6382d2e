"""`SQLStore`: the `Store` on SQLite (aiosqlite) or PostgreSQL (asyncpg), and `open_store`.

Every probe is a row of `probe_result` (tables: `tables.py`; schema: alembic,
`monitor/migrations`). How each read stays cheap at 1,000,000 rows / 6,000
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

Availability beyond what the driver reports: a write that fails for the database's sake (disk
full, read-only file, a standby) makes the history verbs raise StoreUnavailableError until a
write succeeds again, since their answer would lack the results the runner buffers meanwhile;
and a SQLite file deleted or replaced while open (writes would go to an inode nobody reads
again) fails every verb (`database.SQLiteFileIdentity`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from monitor.probes.base import (
    NOT_PROVIDER_FAILURES,
    ErrorKind,
    ProbeResult,
    TokenCountSource,
    ToolCallError,
    Trigger,
)
from monitor.endpoint_state import Incident
from monitor.rollups import BucketAggregate, RollupRules
from monitor.stats import SAMPLE_FIELDS, ProbeSample
from monitor.store import StoreUnavailableError
from monitor.store import rollups as rollup_sql
from monitor.store.figures import MaintenanceSpan, window_figure_rows_statement
from monitor.store.database import (
    SQLiteFileIdentity,
    create_engine,
    database_errors,
    migrate_to_head,
    normalize_database_url,
    redact_database_url,
    schema_revision_on,
    sqlite_file_of,
    writing,
)
from monitor.store import incidents as incident_sql
from monitor.store.tables import UTCDateTime, endpoint_latest_table, probe_table

_LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Rows <-> ProbeResult
# ---------------------------------------------------------------------------------------------

_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeResult))
# How many of an endpoint's newest probes `consecutive_failures` looks at.
FAILURE_LOOKBACK = 50
# Bound parameters per primary-key lookup (both drivers cap a statement at 32,767).
_IDS_PER_LOOKUP = 5000


def result_to_row(model_id: str, provider: str, result: ProbeResult) -> dict[str, Any]:
    started_at = result.started_at
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError(f"{model_id}/{provider}: started_at must be timezone-aware (UTC)")
    row: dict[str, Any] = {"model_id": model_id, "provider": provider}
    for name in _RESULT_FIELDS:
        value = getattr(result, name)
        row[name] = value.value if isinstance(value, enum.Enum) else value
    return row


def row_to_result(row: sa.RowMapping) -> ProbeResult:
    values = {name: row[name] for name in _RESULT_FIELDS}
    if values["error_kind"] is not None:
        values["error_kind"] = ErrorKind(values["error_kind"])
    if values["token_count_source"] is not None:
        values["token_count_source"] = TokenCountSource(values["token_count_source"])
    values["trigger"] = Trigger(values["trigger"])
    if values["tool_call_error"] is not None:
        values["tool_call_error"] = ToolCallError(values["tool_call_error"])
    return ProbeResult(**values)


# The columns behind a ProbeSample (same names).
SAMPLE_COLUMNS = SAMPLE_FIELDS


def _row_to_sample(row: Any) -> ProbeSample:
    return ProbeSample(**{name: getattr(row, name) for name in SAMPLE_COLUMNS})


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
        sa.select(*(probe.c[name] for name in SAMPLE_COLUMNS))
        .where(_same_endpoint(probe, model_id, provider), probe.c.started_at >= since)
        .order_by(*_newest_first(probe))
    )


def samples_after_statement(after_id: int, limit: int) -> sa.Select:
    probe = probe_table()
    return (
        sa.select(probe.c.id, probe.c.model_id, probe.c.provider, *(probe.c[name] for name in SAMPLE_COLUMNS))
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
        self._sqlite_path = sqlite_file_of(engine)
        self._sqlite_file: SQLiteFileIdentity | None = None
        self._check_file("open_store")
        # Why the latest write failed for the database's sake (None: it succeeded).
        self._write_failure: StoreUnavailableError | None = None
        # Roll-up series ids seen so far (rows of rollup_series are never deleted).
        self._series_ids: dict[tuple[str, str, str, int], int] = {}

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    @property
    def concurrent_reads(self) -> bool:
        return self.dialect_name != "sqlite"

    async def insert_results(self, rows: list[tuple[str, str, ProbeResult]]) -> None:
        if not rows:
            return
        values = [result_to_row(model_id, provider, result) for model_id, provider, result in rows]
        probe = probe_table()
        try:
            self._check_file("insert_results")
            with database_errors("insert_results", binds_values=True):
                async with writing(self._engine) as connection:
                    inserted = await connection.execute(
                        sa.insert(probe).returning(probe.c.id, sort_by_parameter_order=True), values
                    )
                    ids = list(inserted.scalars())
                    await connection.execute(self._upsert_latest, _latest_pointers(values, ids))
        except StoreUnavailableError as error:
            self._write_failure = error
            raise
        self._write_failure = None

    async def recent_results(self, model_id: str, provider: str, limit: int) -> list[ProbeResult]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        async with self._reading("recent_results") as connection:
            result = await connection.execute(recent_results_statement(model_id, provider, limit))
            return [row_to_result(row) for row in result.mappings()]

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
            return await connection.run_sync(schema_revision_on)

    async def ping(self) -> None:
        async with self._reading("ping", history=False) as connection:
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
                    results[(row["model_id"], row["provider"])] = row_to_result(row)
        return results

    @contextlib.asynccontextmanager
    async def _reading(self, verb: str, *, history: bool = True) -> AsyncIterator[AsyncConnection]:
        """A connection for reading. `history`: the answer is stored probes, which lack the
        results the runner still buffers while writes fail, so it is refused meanwhile."""
        self._check_file(verb)
        if history and self._write_failure is not None:
            raise StoreUnavailableError(
                f"database unavailable in {verb}: writes are failing ({self._write_failure})"
            )
        with database_errors(verb):
            async with self._engine.connect() as connection:
                yield connection

    # --- roll-ups and retention (monitor/store/rollups.py) ---
    async def rollup(self, rules: RollupRules, *, batch: int = rollup_sql.ABSORB_BATCH) -> int:
        self._check_file("rollup")
        with database_errors("rollup"):
            return await rollup_sql.absorb(self._engine, rules, batch=batch, cache=self._series_ids)

    async def rebuild_rollups(self, rules: RollupRules) -> int:
        self._check_file("rebuild_rollups")
        with database_errors("rebuild_rollups"):
            return await rollup_sql.rebuild(self._engine, rules)

    async def rollup_buckets(
        self, model_id: str, provider: str, step_s: int, start: datetime, end: datetime,
        *, location: str | None = None, input_tokens: int | None = None,
    ) -> dict[datetime, BucketAggregate]:
        self._check_file("rollup_buckets")
        with database_errors("rollup_buckets"):
            return await rollup_sql.read_buckets(
                self._engine, model_id, provider, step_s, _require_aware(start, "start"),
                _require_aware(end, "end"), location=location, input_tokens=input_tokens,
            )

    async def rollup_counts(
        self, model_id: str, provider: str, step_s: int, start: datetime, end: datetime
    ) -> dict[str, int]:
        self._check_file("rollup_counts")
        with database_errors("rollup_counts"):
            return await rollup_sql.sum_counts(
                self._engine, model_id, provider, step_s, _require_aware(start, "start"), _require_aware(end, "end")
            )

    async def prune_raw(self, cutoff: datetime, *, batch: int = rollup_sql.PRUNE_BATCH) -> int:
        self._check_file("prune_raw")
        with database_errors("prune_raw"):
            return await rollup_sql.prune_raw_batch(self._engine, _require_aware(cutoff, "cutoff"), batch=batch)

    async def prune_hourly(self, cutoff: datetime, *, batch: int = rollup_sql.PRUNE_BATCH) -> int:
        self._check_file("prune_hourly")
        with database_errors("prune_hourly"):
            return await rollup_sql.prune_hourly_batch(self._engine, _require_aware(cutoff, "cutoff"), batch=batch)

    def _check_file(self, verb: str) -> None:
        """SQLite: raise StoreUnavailableError once the path no longer names the opened file.
        The identity is taken when the file first exists (with migrate=False, at first use)."""
        if self._sqlite_path is None:
            return
        if self._sqlite_file is None:
            if self._sqlite_path.exists():
                self._sqlite_file = SQLiteFileIdentity(self._sqlite_path)
            return
        self._sqlite_file.check(verb)

    # --- figures: long-window live figures (monitor/store/figures.py) ---
    async def window_figure_rows(
        self, model_id: str, provider: str, since: datetime, until: datetime, *,
        input_tokens: int, maintenance: Sequence[MaintenanceSpan] = (),
    ) -> list[tuple[Any, ...]]:
        statement = window_figure_rows_statement(
            model_id, provider, _require_aware(since, "since"), _require_aware(until, "until"),
            input_tokens, [(_require_aware(a, "maintenance"), _require_aware(b, "maintenance"), loc)
                           for a, b, loc in maintenance],
        )
        async with self._reading("window_figure_rows") as connection:
            return [tuple(row) for row in await connection.execute(statement)]


    # --- incidents (table `incident`; the SQL lives in monitor/store/incidents.py) ---
    async def open_incident(
        self, model_id: str, provider: str, *, started_at: datetime, detected_at: datetime,
        error_kinds: Mapping[str, int], locations: Sequence[str],
    ) -> tuple[Incident, bool]:
        with database_errors("open_incident"):
            async with writing(self._engine) as connection:
                return await incident_sql.open_incident(
                    connection, model_id, provider, started_at=_require_aware(started_at, "started_at"),
                    detected_at=_require_aware(detected_at, "detected_at"),
                    error_kinds=error_kinds, locations=locations,
                )

    async def update_incident(
        self, incident_id: int, *, error_kinds: Mapping[str, int], locations: Sequence[str]
    ) -> None:
        with database_errors("update_incident"):
            async with writing(self._engine) as connection:
                await incident_sql.update_incident(
                    connection, incident_id, error_kinds=error_kinds, locations=locations
                )

    async def resolve_incident(self, incident_id: int, resolved_at: datetime) -> bool:
        with database_errors("resolve_incident"):
            async with writing(self._engine) as connection:
                return await incident_sql.resolve_incident(
                    connection, incident_id, _require_aware(resolved_at, "resolved_at")
                )

    async def list_incidents(
        self, *, model_id: str | None = None, provider: str | None = None, open: bool | None = None,
        since: datetime | None = None, limit: int = incident_sql.MAX_LISTED,
    ) -> list[Incident]:
        if since is not None:
            _require_aware(since, "since")
        async with self._reading("list_incidents", history=False) as connection:
            return await incident_sql.list_incidents(
                connection, model_id=model_id, provider=provider, open=open, since=since,
                limit=max(0, min(limit, incident_sql.MAX_LISTED)),
            )

    async def failure_summary(
        self, model_id: str, provider: str, since: datetime
    ) -> tuple[dict[str, int], tuple[str, ...]]:
        async with self._reading("failure_summary", history=False) as connection:
            return await incident_sql.failure_summary(connection, model_id, provider, _require_aware(since, "since"))

async def open_store(database_url: str, *, migrate: bool = True) -> SQLStore:
    """Open the database at `database_url` (plain or async form) and, by default, migrate it to
    the newest schema. Raises ValueError for an unsupported URL and StoreUnavailableError when
    migrating an unreachable database. With migrate=False nothing connects until the first call."""
    url = normalize_database_url(database_url)
    with database_errors("open_store"):  # e.g. the SQLite directory cannot be created
        engine = create_engine(url)
    try:
        if migrate:
            with database_errors("migrations"):
                await migrate_to_head(engine)
    except BaseException:
        await engine.dispose()
        raise
    _LOG.info("store opened: %s", redact_database_url(url))
    return SQLStore(engine)
