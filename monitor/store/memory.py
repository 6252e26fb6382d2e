"""`InMemoryStore`: the `Store` contract in process memory, for tests that need a store but not a
database. It passes the same contract suite as SQLite and PostgreSQL
(`tests/store/test_store_contract.py`): rows are normalised and checked against the column
types of `tables.py` exactly as the SQL store maps them, so a value a database would refuse
(a missing NOT NULL value, an int beyond 64 bits, a string that is not UTF-8) is refused here too,
as a StoreError and with nothing of the batch written.

Failure injection is explicit: `fail_writes` / `fail_reads` hold the error every write / read
verb raises (None: working). `make_unavailable()` sets both, like a database that went away.
Nothing is persisted; a restart starts empty.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from monitor.endpoint_state import Incident
from monitor.probes.base import NOT_PROVIDER_FAILURES, ProbeResult
from monitor.rollups import (
    COUNT_FIELDS,
    DAY,
    HOUR,
    ROLLUP_PROBE_FIELDS,
    BucketAggregate,
    RollupProbe,
    RollupRules,
    aggregate,
)
from monitor.stats import SAMPLE_FIELDS, ProbeSample
from monitor.store import StoreError, StoreUnavailableError
from monitor.store.figures import FIGURE_ROW_COLUMNS
from monitor.store.sql import FAILURE_LOOKBACK, result_to_row, row_to_result
from monitor.store.tables import UTCDateTime, probe_table

_INT64 = range(-(2**63), 2**63)
_NOT_PROVIDER_FAILURES = frozenset(kind.value for kind in NOT_PROVIDER_FAILURES)


def _refusal(column: sa.Column, value: Any) -> str | None:
    """Why a database would refuse `value` in `column` (None: it takes it). Never the value."""
    if value is None:
        return None if column.nullable else "NOT NULL column without a value"
    kind = column.type
    if isinstance(kind, UTCDateTime):
        if not isinstance(value, dt.datetime):
            return "expected a datetime"
        return None
    if isinstance(kind, sa.Boolean):
        return None if isinstance(value, bool) else "expected a boolean"
    if isinstance(kind, sa.Integer):  # Integer and BigInteger
        if not isinstance(value, int):
            return "expected an integer"
        return None if value in _INT64 else "integer out of the 64-bit range"
    if isinstance(kind, sa.Float):  # Double
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "expected a number"
        try:
            float(value)
        except OverflowError:
            return "number out of range"
        return None
    if isinstance(kind, sa.String):  # String and Text
        if not isinstance(value, str):
            return "expected a string"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "string is not encodable as UTF-8"
        return None
    raise TypeError(f"no in-memory check for column type {kind!r}")  # a new column type: add one


class InMemoryStore:
    """`Store` over a list of rows in insertion (id) order."""

    concurrent_reads = False

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []  # column values, as the SQL store writes them
        self._columns = [column for column in probe_table().columns if column.name != "id"]
        self.fail_writes: StoreError | None = None
        self.fail_reads: StoreError | None = None
        self._write_failure: StoreUnavailableError | None = None
        self._incidents: list[Incident] = []  # id = position + 1
        self._next_id = 1  # ids are never reused, even after pruning
        self._rollups = _MemoryRollups()

    def make_unavailable(self, reason: str = "database unavailable (in-memory store switched off)") -> None:
        self.fail_writes = self.fail_reads = StoreUnavailableError(reason)

    def make_available(self) -> None:
        self.fail_writes = self.fail_reads = None

    async def insert_results(self, rows: list[tuple[str, str, ProbeResult]]) -> None:
        if not rows:
            return
        values = [result_to_row(model_id, provider, result) for model_id, provider, result in rows]
        if self.fail_writes is not None:
            if isinstance(self.fail_writes, StoreUnavailableError):
                self._write_failure = self.fail_writes
            raise self.fail_writes
        for row in values:
            for column in self._columns:
                problem = _refusal(column, row.get(column.name))
                if problem is not None:
                    raise StoreError(f"value refused in insert_results: {column.name}: {problem}")
        for row in values:
            row["id"] = self._next_id
            self._next_id += 1
            row["started_at"] = row["started_at"].astimezone(dt.UTC)
        self._rows.extend(values)
        self._write_failure = None

    async def recent_results(self, model_id: str, provider: str, limit: int) -> list[ProbeResult]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._reading("recent_results")
        return [row_to_result(row) for row in self._newest_first(model_id, provider)[:limit]]

    async def window_samples(self, model_id: str, provider: str, since: dt.datetime) -> list[ProbeSample]:
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since must be timezone-aware (UTC)")
        self._reading("window_samples")
        return [_sample(row) for row in self._newest_first(model_id, provider) if row["started_at"] >= since]

    async def samples_after(self, after_id: int, limit: int) -> list[tuple[int, str, str, ProbeSample]]:
        self._reading("samples_after")
        newer = [row for row in self._rows if row["id"] > after_id][:limit]  # rows are in id order
        return [(row["id"], row["model_id"], row["provider"], _sample(row)) for row in newer]

    async def max_result_id(self) -> int:
        self._reading("max_result_id")
        return self._rows[-1]["id"] if self._rows else 0

    async def latest_results(self) -> dict[tuple[str, str], ProbeResult]:
        self._reading("latest_results")
        return {key: row_to_result(rows[0]) for key, rows in self._by_endpoint().items()}

    async def latest_ok_results(self) -> dict[tuple[str, str], ProbeResult]:
        self._reading("latest_ok_results")
        latest: dict[tuple[str, str], ProbeResult] = {}
        for key, rows in self._by_endpoint().items():
            ok = next((row for row in rows if row["ok"]), None)
            if ok is not None:
                latest[key] = row_to_result(ok)
        return latest

    async def consecutive_failures(self) -> dict[tuple[str, str], int]:
        self._reading("consecutive_failures")
        counts: dict[tuple[str, str], int] = {}
        for key, rows in self._by_endpoint().items():
            latest_ok = next((row["started_at"] for row in rows if row["ok"]), None)
            since_ok = [row for row in rows if latest_ok is None or row["started_at"] > latest_ok]
            counts[key] = sum(
                1
                for row in since_ok[:FAILURE_LOOKBACK]
                if not row["ok"] and row["error_kind"] not in _NOT_PROVIDER_FAILURES
            )
        return counts

    async def count_results(self, model_id: str | None = None, provider: str | None = None) -> int:
        """Number of stored probes, all or one endpoint's (tests and benchmarks)."""
        self._reading("count_results")
        return sum(
            1 for row in self._rows
            if model_id in (None, row["model_id"]) and provider in (None, row["provider"])
        )

    async def ping(self) -> None:
        self._reading("ping", history=False)

    async def close(self) -> None:
        return None

    # --- incidents: the same rules as monitor/store/incidents.py ---
    async def open_incident(
        self, model_id: str, provider: str, *, started_at: dt.datetime, detected_at: dt.datetime,
        error_kinds: Mapping[str, int], locations: Sequence[str],
    ) -> tuple[Incident, bool]:
        self._writing_incidents()
        for aware in (started_at, detected_at):
            if aware.tzinfo is None or aware.utcoffset() is None:
                raise ValueError("incident timestamps must be timezone-aware (UTC)")
        for incident in self._incidents:
            if (incident.model, incident.provider) == (model_id, provider) and incident.open:
                return incident, False
        incident = Incident(
            id=len(self._incidents) + 1, model=model_id, provider=provider,
            started_at=started_at.astimezone(dt.UTC), detected_at=detected_at.astimezone(dt.UTC),
            resolved_at=None, error_kinds=dict(sorted(error_kinds.items())),
            locations=tuple(sorted(set(locations))),
        )
        self._incidents.append(incident)
        return incident, True

    async def update_incident(
        self, incident_id: int, *, error_kinds: Mapping[str, int], locations: Sequence[str]
    ) -> None:
        self._writing_incidents()
        index = incident_id - 1
        if 0 <= index < len(self._incidents) and self._incidents[index].open:
            self._incidents[index] = dataclasses.replace(
                self._incidents[index], error_kinds=dict(sorted(error_kinds.items())),
                locations=tuple(sorted(set(locations))),
            )

    async def resolve_incident(self, incident_id: int, resolved_at: dt.datetime) -> bool:
        self._writing_incidents()
        if resolved_at.tzinfo is None or resolved_at.utcoffset() is None:
            raise ValueError("resolved_at must be timezone-aware (UTC)")
        index = incident_id - 1
        if not (0 <= index < len(self._incidents)) or not self._incidents[index].open:
            return False
        self._incidents[index] = dataclasses.replace(self._incidents[index], resolved_at=resolved_at.astimezone(dt.UTC))
        return True

    async def list_incidents(
        self, *, model_id: str | None = None, provider: str | None = None, open: bool | None = None,
        since: dt.datetime | None = None, limit: int = 1000,
    ) -> list[Incident]:
        self._reading("list_incidents", history=False)
        if since is not None and (since.tzinfo is None or since.utcoffset() is None):
            raise ValueError("since must be timezone-aware (UTC)")
        chosen = [
            i for i in self._incidents
            if model_id in (None, i.model) and provider in (None, i.provider)
            and (open is None or i.open == open)
            and (since is None or i.resolved_at is None or i.resolved_at >= since)
        ]
        chosen.sort(key=lambda i: (i.started_at, i.id), reverse=True)
        return chosen[: max(0, min(limit, 1000))]

    async def failure_summary(
        self, model_id: str, provider: str, since: dt.datetime
    ) -> tuple[dict[str, int], tuple[str, ...]]:
        self._reading("failure_summary", history=False)
        kinds: dict[str, int] = {}
        locations: set[str] = set()
        for row in self._newest_first(model_id, provider):
            if row["started_at"] < since or row["ok"] or row["error_kind"] in _NOT_PROVIDER_FAILURES:
                continue
            kind = row["error_kind"] or "stream_error"
            kinds[kind] = kinds.get(kind, 0) + 1
            locations.add(row["location"])
        return kinds, tuple(sorted(locations))

    def _writing_incidents(self) -> None:
        if self.fail_writes is not None:
            raise self.fail_writes
    # --- roll-ups and retention (same rules as monitor/store/rollups.py) ---
    async def rollup(self, rules: RollupRules, *, batch: int = 5000) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        return self._rollups.absorb([row for row in self._rows if row["id"] > self._rollups.absorbed_id], rules)

    async def rebuild_rollups(self, rules: RollupRules) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        return self._rollups.rebuild(self._rows, rules)

    async def rollup_buckets(
        self, model_id: str, provider: str, step_s: int, start: dt.datetime, end: dt.datetime,
        *, location: str | None = None, input_tokens: int | None = None,
    ) -> dict[dt.datetime, BucketAggregate]:
        self._reading("rollup_buckets", history=False)
        merged: dict[dt.datetime, BucketAggregate] = {}
        for ((m, p, loc, tokens), bucket), value in sorted(self._rollups.steps[step_s].items()):
            if (m, p) != (model_id, provider) or not start <= bucket < end:
                continue
            if location not in (None, loc) or input_tokens not in (None, tokens):
                continue
            merged.setdefault(bucket, BucketAggregate()).merge(value)
        return merged

    async def rollup_counts(
        self, model_id: str, provider: str, step_s: int, start: dt.datetime, end: dt.datetime
    ) -> dict[str, int]:
        buckets = await self.rollup_buckets(model_id, provider, step_s, start, end)
        return {name: sum(b.counts[name] for b in buckets.values()) for name in COUNT_FIELDS}

    async def prune_raw(self, cutoff: dt.datetime, *, batch: int = 2000) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        pointed: set[int] = set()
        for rows in self._by_endpoint().values():
            pointed.add(rows[0]["id"])
            ok = next((row for row in rows if row["ok"]), None)
            if ok is not None:
                pointed.add(ok["id"])
        if self._rollups.raw_complete_since is None or self._rollups.raw_complete_since < cutoff:
            self._rollups.raw_complete_since = cutoff
        if self._rows:
            pointed.add(self._rows[-1]["id"])  # the newest row stays, as in the SQL store
        victims = sorted(
            (row for row in self._rows
             if row["started_at"] < cutoff and row["id"] <= self._rollups.absorbed_id and row["id"] not in pointed),
            key=lambda row: row["started_at"],
        )[:batch]
        gone = {row["id"] for row in victims}
        self._rows = [row for row in self._rows if row["id"] not in gone]
        return len(gone)

    async def prune_hourly(self, cutoff: dt.datetime, *, batch: int = 2000) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        hourly = self._rollups.steps[HOUR]
        victims = sorted((key for key in hourly if key[1] < cutoff), key=lambda key: key[1])[:batch]
        for key in victims:
            del hourly[key]
        return len(victims)

    def _reading(self, verb: str, *, history: bool = True) -> None:
        """Like the SQL store: `history` verbs are refused while writes fail for availability."""
        if self.fail_reads is not None:
            raise self.fail_reads
        if history and self._write_failure is not None:
            raise StoreUnavailableError(
                f"database unavailable in {verb}: writes are failing ({self._write_failure})"
            )

    def _newest_first(self, model_id: str, provider: str) -> list[dict[str, Any]]:
        rows = [row for row in self._rows if row["model_id"] == model_id and row["provider"] == provider]
        return sorted(rows, key=lambda row: (row["started_at"], row["id"]), reverse=True)

    def _by_endpoint(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Every endpoint's rows, newest first."""
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self._rows:
            grouped.setdefault((row["model_id"], row["provider"]), []).append(row)
        for rows in grouped.values():
            rows.sort(key=lambda row: (row["started_at"], row["id"]), reverse=True)
        return grouped

    # --- figures: long-window live figures (monitor/store/figures.py) ---
    async def window_figure_rows(
        self, model_id: str, provider: str, since: dt.datetime, until: dt.datetime, *,
        input_tokens: int, maintenance: Sequence[tuple[dt.datetime, dt.datetime, str | None]] = (),
    ) -> list[tuple[Any, ...]]:
        for moment in (since, until):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError("since, until must be timezone-aware (UTC)")
        self._reading("window_figure_rows")
        return [
            (
                *(row[name] for name in FIGURE_ROW_COLUMNS),
                any(a <= row["started_at"] < b and loc in (None, row["location"]) for a, b, loc in maintenance),
            )
            for row in self._newest_first(model_id, provider)
            if since <= row["started_at"] <= until and row["trigger"] == "scheduled"
            and row["input_tokens"] == input_tokens
        ]


def _sample(row: dict[str, Any]) -> ProbeSample:
    return ProbeSample(**{name: row[name] for name in SAMPLE_FIELDS})


class _MemoryRollups:
    """Hourly and daily buckets keyed by (series, bucket start), and the id watermark (ids are
    assigned in commit order in process memory, so there are no gaps to track)."""

    def __init__(self) -> None:
        self.absorbed_id = 0
        self.raw_complete_since: dt.datetime | None = None
        self.steps: dict[int, dict[tuple[tuple[str, str, str, int], dt.datetime], BucketAggregate]] = {
            HOUR: {}, DAY: {},
        }

    def absorb(self, rows: list[dict[str, Any]], rules: RollupRules, *, skip_before: dt.datetime | None = None) -> int:
        probes = [
            RollupProbe(**{name: row[name] for name in ROLLUP_PROBE_FIELDS})
            for row in rows
            if skip_before is None or row["started_at"] >= skip_before
        ]
        for step_s, buckets in self.steps.items():
            new = aggregate(probes, step_s, in_maintenance=rules.in_maintenance, keep_cold_starts=rules.keep_cold_starts)
            for key, value in new.items():
                buckets.setdefault(key, BucketAggregate()).merge(value)
        if rows:
            self.absorbed_id = max(self.absorbed_id, max(row["id"] for row in rows))
        return len(probes)

    def rebuild(self, rows: list[dict[str, Any]], rules: RollupRules) -> int:
        horizon = self.raw_complete_since
        for buckets in self.steps.values():
            for key in [key for key in buckets if horizon is None or key[1] >= horizon]:
                del buckets[key]
        self.absorbed_id = 0
        return self.absorb(rows, rules, skip_before=horizon)
