"""The SQL behind the incident verbs of `SQLStore` (table `incident`, migration 0005).

Every statement is safe with any number of evaluating processes on one database:
- opening is `INSERT ... ON CONFLICT DO NOTHING` against the partial unique index
  `ux_incident_open` (model_id, provider) WHERE resolved_at IS NULL, then a read of whichever
  open row won, so two processes declaring the same outage leave one open incident;
- refreshing writes values recounted from the stored probes (not increments), only while open;
- resolving is `UPDATE ... WHERE id = :id AND resolved_at IS NULL`: a second resolver changes
  nothing, and a resolved incident never reopens (the next outage is a new row).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from monitor.endpoint_state import Incident
from monitor.probes.base import NOT_PROVIDER_FAILURES
from monitor.store.tables import incident_table, probe_table

# `list_incidents` returns at most this many rows (newest first).
MAX_LISTED = 1000
_SKIPPED = sorted(kind.value for kind in NOT_PROVIDER_FAILURES)


def encode_kinds(error_kinds: Mapping[str, int]) -> str:
    return json.dumps({str(k): int(v) for k, v in sorted(error_kinds.items())}, separators=(",", ":"))


def encode_locations(locations: Sequence[str]) -> str:
    return json.dumps(sorted(set(locations)), separators=(",", ":"))


def _decode_kinds(text: str) -> dict[str, int]:
    value = json.loads(text)
    return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _decode_locations(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def row_to_incident(row: Any) -> Incident:
    return Incident(
        id=int(row.id),
        model=row.model_id,
        provider=row.provider,
        started_at=row.started_at,
        detected_at=row.detected_at,
        resolved_at=row.resolved_at,
        error_kinds=_decode_kinds(row.error_kinds),
        locations=_decode_locations(row.locations),
    )


def open_statement(dialect_name: str, values: dict[str, Any]) -> Any:
    table = incident_table()
    insert = (pg_dialect.insert if dialect_name == "postgresql" else sqlite_dialect.insert)(table)
    return (
        insert.values(**values)
        .on_conflict_do_nothing(
            index_elements=[table.c.model_id, table.c.provider],
            index_where=table.c.resolved_at.is_(None),
        )
        .returning(*table.c)
    )


async def open_incident(
    connection: AsyncConnection,
    model_id: str,
    provider: str,
    *,
    started_at: datetime,
    detected_at: datetime,
    error_kinds: Mapping[str, int],
    locations: Sequence[str],
) -> tuple[Incident, bool]:
    """(the endpoint's open incident, whether this call created it)."""
    values = dict(
        model_id=model_id, provider=provider, started_at=started_at, detected_at=detected_at,
        resolved_at=None, error_kinds=encode_kinds(error_kinds), locations=encode_locations(locations),
    )
    created = (await connection.execute(open_statement(connection.dialect.name, values))).first()
    if created is not None:
        return row_to_incident(created), True
    table = incident_table()
    existing = (
        await connection.execute(
            sa.select(table).where(
                table.c.model_id == model_id, table.c.provider == provider, table.c.resolved_at.is_(None)
            )
        )
    ).one()
    return row_to_incident(existing), False


async def update_incident(
    connection: AsyncConnection, incident_id: int, *, error_kinds: Mapping[str, int], locations: Sequence[str]
) -> None:
    table = incident_table()
    await connection.execute(
        sa.update(table)
        .where(table.c.id == incident_id, table.c.resolved_at.is_(None))
        .values(error_kinds=encode_kinds(error_kinds), locations=encode_locations(locations))
    )


async def resolve_incident(connection: AsyncConnection, incident_id: int, resolved_at: datetime) -> bool:
    table = incident_table()
    result = await connection.execute(
        sa.update(table)
        .where(table.c.id == incident_id, table.c.resolved_at.is_(None))
        .values(resolved_at=resolved_at)
    )
    return bool(result.rowcount)


def list_statement(
    *, model_id: str | None, provider: str | None, open: bool | None, since: datetime | None, limit: int
) -> sa.Select:
    table = incident_table()
    statement = sa.select(table)
    if model_id is not None:
        statement = statement.where(table.c.model_id == model_id)
    if provider is not None:
        statement = statement.where(table.c.provider == provider)
    if open is True:
        statement = statement.where(table.c.resolved_at.is_(None))
    elif open is False:
        statement = statement.where(table.c.resolved_at.is_not(None))
    if since is not None:  # open at some moment at or after `since`
        statement = statement.where(sa.or_(table.c.resolved_at.is_(None), table.c.resolved_at >= since))
    return statement.order_by(table.c.started_at.desc(), table.c.id.desc()).limit(limit)


async def list_incidents(connection: AsyncConnection, **filters: Any) -> list[Incident]:
    return [row_to_incident(row) for row in await connection.execute(list_statement(**filters))]


async def failure_summary(
    connection: AsyncConnection, model_id: str, provider: str, since: datetime
) -> tuple[dict[str, int], tuple[str, ...]]:
    """Provider failures (rate_limited and config_error left out) of one endpoint since `since`:
    counts per error kind, and the locations that saw them. One range of the endpoint index."""
    probe = probe_table()
    rows = await connection.execute(
        sa.select(probe.c.error_kind, probe.c.location, sa.func.count())
        .where(
            probe.c.model_id == model_id,
            probe.c.provider == provider,
            probe.c.started_at >= since,
            sa.not_(probe.c.ok),
            sa.or_(probe.c.error_kind.is_(None), probe.c.error_kind.not_in(_SKIPPED)),
        )
        .group_by(probe.c.error_kind, probe.c.location)
    )
    kinds: dict[str, int] = {}
    locations: set[str] = set()
    for kind, location, count in rows:
        key = kind or "stream_error"
        kinds[key] = kinds.get(key, 0) + int(count)
        locations.add(location)
    return kinds, tuple(sorted(locations))
