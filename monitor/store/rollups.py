"""The SQL behind roll-ups and retention (tables in `tables.py`, migration 0006).

The roll-up job (`absorb`) follows `probe_result` by id: each batch, in ONE write transaction,
reads up to `batch` probes with id > the watermark (`rollup_state.absorbed_id`), adds them to
their hourly and daily buckets (read, merge, upsert: counts add and sketch bins add, so this is
exact and independent of order), and moves the watermark. A crash between the two never happens
half-way: the transaction commits both or neither, so no probe is counted twice or skipped.

Late probes (a buffered result written after a database outage, another location's scheduler
catching up) have new ids, whatever their `started_at`: they are absorbed into the bucket of
their own `started_at`, old or not. On PostgreSQL ids are taken when a row is inserted, not when
its transaction commits, so two schedulers' batches may become visible out of id order: an id
below the new watermark that is not visible yet is remembered as a gap (`rollup_state.gaps`) and
absorbed when it appears; a gap that never appears (a rolled-back insert) is forgotten after
`GAP_TTL_S`. Retention never deletes a gap id.

`rebuild` recomputes every bucket from the raw probes that retention has kept (all of them
before the first prune) and must give exactly what the job maintained (`tests/rollups`).
On PostgreSQL the job serializes on the state row (`SELECT ... FOR UPDATE`), so several
scheduler processes may run it; writers of probes are never blocked (other tables). On SQLite a
batch holds the write lock for its few milliseconds (BEGIN IMMEDIATE), as every write does.
"""

from __future__ import annotations

import asyncio
import json
import operator
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from monitor.rollups import (
    COUNT_FIELDS,
    DAY,
    HOUR,
    ROLLUP_PROBE_FIELDS,
    BucketAggregate,
    RollupProbe,
    RollupRules,
    aggregate_steps,
)
from monitor.store.database import writing
from monitor.store.tables import (
    endpoint_latest_table,
    probe_table,
    rollup_daily,
    rollup_hourly,
    rollup_series_table,
    rollup_state_table,
)

ABSORB_BATCH = 5000
# A gap id not visible after this long belonged to a rolled-back insert (no insert transaction of
# the runner stays open for minutes).
GAP_TTL_S = 3600.0
MAX_GAPS = 10_000
GAP_SPAN = 50_000
PRUNE_BATCH = 2000
_IDS_PER_LOOKUP = 5000
STEP_TABLES = {HOUR: rollup_hourly, DAY: rollup_daily}
SeriesKey = tuple[str, str, str, int]


@dataclass(frozen=True)
class RollupState:
    absorbed_id: int
    gaps: dict[int, float]  # id -> first seen (epoch seconds)
    raw_complete_since: datetime | None


def _insert(dialect: str, table: sa.Table) -> Any:
    return (pg_dialect.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)


# The job's reads and writes go through the driver (`exec_driver_sql`): for 20,000 probes and
# buckets an hour, SQLAlchemy's per-row result and parameter processing costs more than the
# database. Identifiers are quoted ("trigger" is an SQL keyword); times are bound and read in
# each backend's own form: aware datetimes on PostgreSQL, UTCDateTime's UTC text on SQLite.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_PROBE_SELECT = f"SELECT {_quoted(ROLLUP_PROBE_FIELDS)} FROM probe_result"
_STORED_COLUMNS = _quoted(("series_id", *COUNT_FIELDS, "ttft_sketch", "tps_sketch"))


def _marks(postgres: bool, count: int, first: int = 1) -> str:
    """`count` positional parameter marks, numbered from `first` on PostgreSQL."""
    return ", ".join(f"${first + index}" for index in range(count)) if postgres else ", ".join("?" * count)


def _time_param(postgres: bool, moment: datetime) -> datetime | str:
    return moment if postgres else moment.astimezone(UTC).strftime(_SQLITE_TIME)


# Items of a batch's Python work done between two returns to the event loop (a few ms): the
# probes and API requests sharing the loop never wait for a whole batch (tens of ms).
_SLICE = 250
_UPSERT_SLICE = 500  # rows of one PostgreSQL upsert statement
T = TypeVar("T")


async def _slices(items: Sequence[T], size: int = _SLICE) -> AsyncIterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
        await asyncio.sleep(0)


def _sqlite_probes(rows: Iterable[Any]) -> list[RollupProbe]:
    parse = datetime.fromisoformat
    return [
        RollupProbe(id_, model_id, provider, location, tokens, parse(at).replace(tzinfo=UTC), bool(ok), kind, ttft, tps,
                    trigger, bool(cold), bool(suspect))
        for id_, model_id, provider, location, tokens, at, ok, kind, ttft, tps, trigger, cold, suspect in rows
    ]


async def _read_probes(connection: AsyncConnection, condition: str, params: tuple[Any, ...]) -> list[RollupProbe]:
    """The roll-up columns of the probes matching `condition` (driver SQL, marks from 1)."""
    rows = (await connection.exec_driver_sql(f"{_PROBE_SELECT} WHERE {condition}", params)).all()
    # asyncpg returns typed values; SQLite, text times and integer booleans
    convert = _sqlite_probes if connection.dialect.name == "sqlite" else (lambda chunk: map(RollupProbe._make, chunk))
    probes: list[RollupProbe] = []
    async for chunk in _slices(rows):
        probes.extend(convert(chunk))
    return probes


# ------------------------------------------------------------------------------ state


async def _lock_state(connection: AsyncConnection) -> RollupState:
    state = rollup_state_table()
    statement = sa.select(state).where(state.c.id == 1)
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().first()
    if row is None:
        insert = _insert(connection.dialect.name, state).values(id=1, absorbed_id=0, gaps="[]")
        await connection.execute(insert.on_conflict_do_nothing(index_elements=[state.c.id]))
        row = (await connection.execute(statement)).mappings().one()
    gaps = {int(probe_id): float(seen) for probe_id, seen in json.loads(row["gaps"])}
    return RollupState(int(row["absorbed_id"]), gaps, row["raw_complete_since"])


async def _save_state(connection: AsyncConnection, state: RollupState) -> None:
    table = rollup_state_table()
    gaps = sorted(state.gaps.items())[-MAX_GAPS:]
    await connection.execute(
        sa.update(table).where(table.c.id == 1).values(
            absorbed_id=state.absorbed_id,
            gaps=json.dumps([[probe_id, seen] for probe_id, seen in gaps]),
            raw_complete_since=state.raw_complete_since,
            updated_at=datetime.now(UTC),
        )
    )


async def read_state(engine: AsyncEngine) -> RollupState:
    async with writing(engine) as connection:
        return await _lock_state(connection)


# ------------------------------------------------------------------------------ series and buckets


async def _series_ids(
    connection: AsyncConnection, keys: Iterable[SeriesKey], cache: dict[SeriesKey, int] | None = None
) -> dict[SeriesKey, int]:
    """Ids of the series, created when missing. `cache`: ids known from earlier calls (series
    rows are never deleted, so a known id stays right)."""
    series = rollup_series_table()
    cache = {} if cache is None else cache
    wanted = sorted(set(keys))
    missing = [key for key in wanted if key not in cache]
    if missing:
        insert = _insert(connection.dialect.name, series).on_conflict_do_nothing(
            index_elements=[series.c.model_id, series.c.provider, series.c.location, series.c.input_tokens]
        )
        await connection.execute(
            insert, [dict(model_id=m, provider=p, location=loc, input_tokens=tokens) for m, p, loc, tokens in missing]
        )
        # Read back by model id (the unique index's first column; a row-value IN list is not
        # always served from the index by SQLite), 1,000 models per query.
        models = sorted({key[0] for key in missing})
        for start in range(0, len(models), 1000):
            rows = await connection.execute(
                sa.select(series.c.id, series.c.model_id, series.c.provider, series.c.location, series.c.input_tokens)
                .where(series.c.model_id.in_(models[start : start + 1000]))
            )
            for row in rows:
                cache[(row.model_id, row.provider, row.location, row.input_tokens)] = int(row.id)
    return {key: cache[key] for key in wanted}


async def _add_stored(
    connection: AsyncConnection,
    table: sa.Table,
    increments: dict[tuple[int, datetime], BucketAggregate],
) -> None:
    """Add the stored buckets to the increments, so that each holds what its bucket will."""
    by_start: dict[datetime, list[int]] = {}
    for series_id, bucket in increments:
        by_start.setdefault(bucket, []).append(series_id)
    # Per bucket start, the primary key's point lookups (series_id IN (...), bucket_start = t).
    postgres = connection.dialect.name == "postgresql"
    for bucket, series_ids in by_start.items():
        series_ids.sort()
        at = _time_param(postgres, bucket)
        for start in range(0, len(series_ids), _IDS_PER_LOOKUP):
            chunk = series_ids[start : start + _IDS_PER_LOOKUP]
            rows = await connection.exec_driver_sql(
                f"SELECT {_STORED_COLUMNS} FROM {table.name} "
                f"WHERE bucket_start = {_marks(postgres, 1)} AND series_id IN ({_marks(postgres, len(chunk), 2)})",
                (at, *chunk),
            )
            async for stored in _slices(rows.all()):
                for row in stored:
                    increments[(int(row[0]), bucket)].add_stored(row[1:-2], row[-2], row[-1])


async def _upsert_rows(
    connection: AsyncConnection, table: sa.Table, rows: list[tuple[int, datetime, dict[str, Any]]]
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE of whole rows (series id, bucket start, the other
    columns by name): on PostgreSQL statements of `_UPSERT_SLICE` rows over arrays (`unnest`; row
    by row, the server's per-statement work dominates), on SQLite the driver's executemany."""
    if not rows:
        return
    names = [column.name for column in table.columns if column.name not in ("series_id", "bucket_start")]
    postgres = connection.dialect.name == "postgresql"
    pick = operator.itemgetter(*names)
    times: dict[datetime, datetime | str] = {}  # a batch holds few distinct bucket starts
    values = []
    async for chunk in _slices(rows):
        for series_id, bucket, columns in chunk:
            at = times.get(bucket)
            if at is None:
                at = times[bucket] = _time_param(postgres, bucket)
            values.append((series_id, at, *pick(columns)))
    updates = ", ".join(f"{name} = excluded.{name}" for name in names)
    head = f"INSERT INTO {table.name} (series_id, bucket_start, {', '.join(names)}) "
    tail = f" ON CONFLICT (series_id, bucket_start) DO UPDATE SET {updates}"
    if postgres:
        types = [table.c[name].type.compile(dialect=connection.dialect) for name in ("series_id", "bucket_start", *names)]
        arrays = ", ".join(f"${index + 1}::{kind}[]" for index, kind in enumerate(types))
        sql = f"{head}SELECT * FROM unnest({arrays}){tail}"
        # a statement per slice: asyncpg encodes the arrays in this thread, a few ms per slice
        async for chunk in _slices(values, _UPSERT_SLICE):
            await connection.exec_driver_sql(sql, tuple(map(list, zip(*chunk))))
    else:
        await connection.exec_driver_sql(f"{head}VALUES ({_marks(False, len(names) + 2)}){tail}", values)


async def _absorb_rows(
    connection: AsyncConnection, probes: list[RollupProbe], rules: RollupRules, cache: dict[SeriesKey, int] | None
) -> int:
    """Add raw probes to their hourly and daily buckets. Returns how many buckets changed."""
    if not probes:
        return 0
    ids = await _series_ids(connection, (probe.series for probe in probes), cache)
    by_step: dict[int, dict[tuple[SeriesKey, datetime], BucketAggregate]] = {step_s: {} for step_s in STEP_TABLES}
    async for chunk in _slices(probes):
        aggregate_steps(chunk, STEP_TABLES, in_maintenance=rules.in_maintenance,
                        keep_cold_starts=rules.keep_cold_starts, into=by_step)
    steps = [
        (table, {(ids[series], bucket): value for (series, bucket), value in by_step[step_s].items()})
        for step_s, table in STEP_TABLES.items()
    ]
    for table, increments in steps:
        await _add_stored(connection, table, increments)
    # Read, merge, upsert. Each table's upsert runs in the database (another process, or
    # SQLite's thread, which releases the GIL) while the next table's rows are computed here: the
    # upsert task moves on each time this computation yields (every slice).
    upserting: asyncio.Task[None] | None = None
    try:
        for table, increments in steps:
            rows = []
            async for chunk in _slices(sorted(increments.items())):
                rows.extend((series_id, bucket, value.row_values()) for (series_id, bucket), value in chunk)
            if upserting is not None:
                await upserting
            upserting = asyncio.ensure_future(_upsert_rows(connection, table, rows))
        await upserting  # type: ignore[misc]
    except BaseException:
        if upserting is not None:  # never leave a statement running on the connection
            await asyncio.gather(upserting, return_exceptions=True)
        raise
    return sum(len(increments) for _, increments in steps)


async def _absorb_batch(
    connection: AsyncConnection,
    state: RollupState,
    rules: RollupRules,
    *,
    batch: int,
    skip_before: datetime | None = None,
    now_s: float | None = None,
    cache: dict[SeriesKey, int] | None = None,
) -> tuple[RollupState, int, int]:
    """One batch: the next probes by id (and any gap ids now visible). Returns the new state,
    probes absorbed and ids read (0: nothing new)."""
    postgres = connection.dialect.name == "postgresql"
    now_s = time.time() if now_s is None else now_s
    rows = await _read_probes(connection, f"id > {_marks(postgres, 1)} ORDER BY id LIMIT {_marks(postgres, 1, 2)}",
                              (state.absorbed_id, batch))
    gaps = dict(state.gaps)
    filled: list[RollupProbe] = []
    if gaps:
        gap_ids = sorted(gaps)
        for start in range(0, len(gap_ids), 5000):
            chunk = gap_ids[start : start + 5000]
            filled.extend(await _read_probes(connection, f"id IN ({_marks(postgres, len(chunk))})", tuple(chunk)))
        for item in filled:
            gaps.pop(item.id, None)
        gaps = {probe_id: seen for probe_id, seen in gaps.items() if now_s - seen < GAP_TTL_S}
    absorbed_id = state.absorbed_id
    if rows:
        new_max = rows[-1].id
        # Only ids close below the newest can still be in flight; an older hole is a pruned or
        # rolled-back id (a fresh watermark over a pruned table would otherwise list millions).
        lowest = max(absorbed_id + 1, new_max - GAP_SPAN)
        previous = absorbed_id
        for row in rows:
            for missing in range(max(previous + 1, lowest), row.id):
                gaps[missing] = now_s
            previous = row.id
        absorbed_id = new_max
    probes = [p for p in (*rows, *filled) if skip_before is None or p.started_at >= skip_before]
    await _absorb_rows(connection, probes, rules, cache)
    new_state = RollupState(absorbed_id, gaps, state.raw_complete_since)
    await _save_state(connection, new_state)
    return new_state, len(probes), len(rows) + len(filled)


async def absorb(engine: AsyncEngine, rules: RollupRules, *, batch: int = ABSORB_BATCH,
                 max_batches: int | None = None, cache: dict[SeriesKey, int] | None = None) -> int:
    """Run the roll-up job until no probe is left (or `max_batches`). Returns probes absorbed.
    Each batch is its own short transaction. `cache`: series ids known to the caller (kept
    across calls; only filled after a commit, so a rolled-back series is never remembered)."""
    total = batches = 0
    while max_batches is None or batches < max_batches:
        async with writing(engine) as connection:
            state = await _lock_state(connection)
            learned = dict(cache or {})
            _, absorbed, read = await _absorb_batch(connection, state, rules, batch=batch, cache=learned)
        if cache is not None:
            cache.update(learned)
        total += absorbed
        batches += 1
        if read < batch:
            break
    return total


async def rebuild(engine: AsyncEngine, rules: RollupRules, *, batch: int = ABSORB_BATCH) -> int:
    """Recompute every bucket the kept raw probes cover, in one transaction: buckets from
    `raw_complete_since` on (all buckets before any prune) are deleted and rebuilt from the raw
    probes; older buckets (their raw probes are gone) are kept as they are. Returns probes read."""
    async with writing(engine) as connection:
        state = await _lock_state(connection)
        horizon = state.raw_complete_since
        for table in STEP_TABLES.values():
            delete = sa.delete(table)
            if horizon is not None:
                delete = delete.where(table.c.bucket_start >= horizon)
            await connection.execute(delete)
        state = RollupState(0, {}, horizon)
        total = 0
        while True:
            state, absorbed, read = await _absorb_batch(connection, state, rules, batch=batch, skip_before=horizon)
            total += absorbed
            if read < batch:
                break
        return total


async def write_buckets(
    engine: AsyncEngine, step_s: int, buckets: dict[tuple[SeriesKey, datetime], BucketAggregate]
) -> None:
    """Write whole buckets as given (replacing stored ones): for importing roll-ups computed
    elsewhere, and for the benchmark's old buckets."""
    async with writing(engine) as connection:
        ids = await _series_ids(connection, (series for series, _ in buckets))
        table = STEP_TABLES[step_s]
        rows = [(ids[series], bucket, value.row_values()) for (series, bucket), value in buckets.items()]
        for start in range(0, len(rows), 5000):
            await _upsert_rows(connection, table, rows[start : start + 5000])


# ------------------------------------------------------------------------------ reads


async def read_buckets(
    engine: AsyncEngine,
    model_id: str,
    provider: str,
    step_s: int,
    start: datetime,
    end: datetime,
    *,
    location: str | None = None,
    input_tokens: int | None = None,
) -> dict[datetime, BucketAggregate]:
    """Buckets of one endpoint with start <= bucket_start < end, all matching series merged
    (every location unless `location`, every workload profile unless `input_tokens`)."""
    series, table = rollup_series_table(), STEP_TABLES[step_s]
    conditions = [series.c.model_id == model_id, series.c.provider == provider]
    if location is not None:
        conditions.append(series.c.location == location)
    if input_tokens is not None:
        conditions.append(series.c.input_tokens == input_tokens)
    async with engine.connect() as connection:
        ids = list((await connection.execute(sa.select(series.c.id).where(*conditions))).scalars())
        if not ids:
            return {}
        rows = await connection.execute(
            sa.select(table)
            .where(table.c.series_id.in_(ids), table.c.bucket_start >= start, table.c.bucket_start < end)
            .order_by(table.c.bucket_start)
        )
        merged: dict[datetime, BucketAggregate] = {}
        single: dict[datetime, Any] = {}
        for row in rows.mappings():
            bucket = row["bucket_start"]
            if bucket in merged:
                merged[bucket].merge(BucketAggregate.from_row(row))
            elif bucket in single:
                merged[bucket] = BucketAggregate.from_row(single.pop(bucket)).merge(BucketAggregate.from_row(row))
            else:
                single[bucket] = row
        for bucket, row in single.items():  # one series: no need to merge
            merged[bucket] = BucketAggregate.from_row(row)
        return merged


async def sum_counts(
    engine: AsyncEngine, model_id: str, provider: str, step_s: int, start: datetime, end: datetime
) -> dict[str, int]:
    """Summed counts of one endpoint's buckets (every location and profile) in [start, end)."""
    series, table = rollup_series_table(), STEP_TABLES[step_s]
    statement = (
        sa.select(*(sa.func.coalesce(sa.func.sum(table.c[name]), 0).label(name) for name in COUNT_FIELDS))
        .select_from(table.join(series, series.c.id == table.c.series_id))
        .where(
            series.c.model_id == model_id, series.c.provider == provider,
            table.c.bucket_start >= start, table.c.bucket_start < end,
        )
    )
    async with engine.connect() as connection:
        row = (await connection.execute(statement)).mappings().one()
        return {name: int(row[name]) for name in COUNT_FIELDS}


# ------------------------------------------------------------------------------ retention


async def prune_raw_batch(engine: AsyncEngine, cutoff: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Delete up to `batch` of the oldest probes started before `cutoff` that the roll-ups have
    absorbed (id <= watermark, not a gap), that no endpoint_latest row points to, and that are
    not the newest row. Moves
    `raw_complete_since` to `cutoff` first (in the same transaction), so a later rebuild leaves
    the buckets before it alone. Returns rows deleted."""
    probe, latest = probe_table(), endpoint_latest_table()
    async with writing(engine) as connection:
        state = await _lock_state(connection)
        if state.raw_complete_since is None or state.raw_complete_since < cutoff:
            state = RollupState(state.absorbed_id, state.gaps, cutoff)
            await _save_state(connection, state)
        pointed = sa.union_all(
            sa.select(latest.c.latest_probe_id.label("pid")),
            sa.select(latest.c.latest_ok_probe_id.label("pid")).where(latest.c.latest_ok_probe_id.is_not(None)),
        ).subquery()
        newest = sa.select(sa.func.max(probe.c.id)).scalar_subquery()
        conditions = [
            probe.c.started_at < cutoff,
            probe.c.id <= state.absorbed_id,
            probe.c.id.not_in(sa.select(pointed.c.pid)),
            # SQLite gives a new row max(id) + 1: deleting the newest id would hand it out again,
            # to a probe the watermark already passed. The newest row is never deleted.
            probe.c.id < newest,
        ]
        if state.gaps:
            conditions.append(probe.c.id.not_in(sorted(state.gaps)))
        victims = sa.select(probe.c.id).where(*conditions).order_by(probe.c.started_at).limit(batch)
        ids = list((await connection.execute(victims)).scalars())
        if not ids:
            return 0
        await connection.execute(sa.delete(probe).where(probe.c.id.in_(ids)))
        return len(ids)


async def prune_hourly_batch(engine: AsyncEngine, cutoff: datetime, *, batch: int = PRUNE_BATCH) -> int:
    """Delete up to `batch` hourly buckets that start before `cutoff` (daily ones stay): every
    bucket older than the `batch`-th oldest one's start, or, when the oldest start alone holds
    more, the first `batch` series of it (each lookup on an index)."""
    table = rollup_hourly
    async with writing(engine) as connection:
        old = table.c.bucket_start < cutoff
        oldest = (await connection.execute(sa.select(sa.func.min(table.c.bucket_start)).where(old))).scalar()
        if oldest is None:
            return 0
        upper = (await connection.execute(
            sa.select(table.c.bucket_start).where(old).order_by(table.c.bucket_start).offset(batch).limit(1)
        )).scalar()
        if upper is None or upper > oldest:
            bound = cutoff if upper is None else upper
            result = await connection.execute(sa.delete(table).where(table.c.bucket_start < bound))
            return int(result.rowcount)
        series_ids = list((await connection.execute(
            sa.select(table.c.series_id).where(table.c.bucket_start == oldest).order_by(table.c.series_id).limit(batch)
        )).scalars())
        await connection.execute(
            sa.delete(table).where(table.c.bucket_start == oldest, table.c.series_id.in_(series_ids))
        )
        return len(series_ids)
