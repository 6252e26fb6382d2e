"""Storage of probe results: the `Store` protocol in domain verbs, its errors, and the backends.

Callers (runner, live figures, API) depend only on `Store` and the two errors below; the
service builds a concrete store with `open_store(url)` and passes it in.

- `sql.py`: `SQLStore`, the implementation on SQLite (the embedded default) and PostgreSQL,
  and `open_store`.
- `database.py`: database URLs, driver choice, SQLite pragmas, driver-error translation and
  the alembic migrations (`monitor/migrations`).
- `tables.py`: the SQLModel table definitions the queries use.
- `memory.py`: `InMemoryStore`, the same contract in process memory (for tests), with
  an explicit switch that makes it unavailable.

Errors: every verb raises `StoreUnavailableError` when the database cannot serve it now
(retry later: the runner buffers), and `StoreError` when it refuses the data (retrying the same
rows will not help). While writes fail for the database's sake, the history verbs raise
StoreUnavailableError too (their answer would lack the buffered results). Driver exceptions never
escape a verb; messages never carry a URL's password or a row's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from monitor.endpoint_state import Incident
from monitor.probes.base import ProbeResult
from monitor.rollups import BucketAggregate, RollupRules
from monitor.stats import ProbeSample


class Store(Protocol):
    # Whether reads issued side by side (asyncio.gather) overlap: True where they wait on a
    # server; False where each read is CPU in this process (SQLite's driver threads then only
    # contend for the interpreter lock, and one read at a time is faster).
    concurrent_reads: bool

    async def insert_results(self, rows: list[tuple[str, str, ProbeResult]]) -> None:
        """Persist (model_id, provider, result) rows in one transaction: all or none."""

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
        """Raises StoreUnavailableError when the database is unreachable, or is no longer the
        one that was opened (a SQLite file deleted or replaced while open)."""

    async def close(self) -> None: ...

    # --- incidents (monitor/incidents.py evaluates; any number of processes may call these) ---
    async def open_incident(
        self, model_id: str, provider: str, *, started_at: datetime, detected_at: datetime,
        error_kinds: Mapping[str, int], locations: Sequence[str],
    ) -> tuple[Incident, bool]:
        """Open the endpoint's incident unless one is open: (the open incident, created by this call).
        At most one open incident per endpoint, whoever calls concurrently."""

    async def update_incident(
        self, incident_id: int, *, error_kinds: Mapping[str, int], locations: Sequence[str]
    ) -> None:
        """Replace an open incident's error kinds and locations (no effect once resolved)."""

    async def resolve_incident(self, incident_id: int, resolved_at: datetime) -> bool:
        """Resolve an open incident; False (and no change) when it was resolved already."""

    async def list_incidents(
        self, *, model_id: str | None = None, provider: str | None = None, open: bool | None = None,
        since: datetime | None = None, limit: int = 1000,
    ) -> list[Incident]:
        """Newest first (started_at, then id). `since`: open at some moment at or after it."""

    async def failure_summary(
        self, model_id: str, provider: str, since: datetime
    ) -> tuple[dict[str, int], tuple[str, ...]]:
        """Provider failures since `since`: counts per error kind, and the locations that saw them."""
    # --- figures ---
    async def window_figure_rows(
        self, model_id: str, provider: str, since: datetime, until: datetime, *,
        input_tokens: int, maintenance: Sequence[tuple[datetime, datetime, str | None]] = (),
    ) -> list[tuple[Any, ...]]:
        """Figure rows `(ok, error_kind, ttft_s, tokens_per_second, cold_start, answer_ok,
        in_maintenance)` of the endpoint's scheduled probes of profile `input_tokens` with
        since <= started_at <= until, any order; `in_maintenance` is whether one of the
        `(start, end, location or None)` spans covers the probe (start <= t < end)."""
    # --- roll-ups and retention (monitor/store/rollups.py; rules in monitor/rollups.py) ---
    async def rollup(self, rules: RollupRules, *, batch: int = 5000) -> int:
        """Absorb every probe not yet in the hourly/daily roll-ups (in batches, each its own
        transaction); returns how many were absorbed. Idempotent: a probe is counted once."""

    async def rebuild_rollups(self, rules: RollupRules) -> int:
        """Recompute the roll-ups from the raw probes retention kept; returns probes read."""

    async def rollup_buckets(
        self, model_id: str, provider: str, step_s: int, start: datetime, end: datetime,
        *, location: str | None = None, input_tokens: int | None = None,
    ) -> dict[datetime, BucketAggregate]:
        """Stored buckets with start <= bucket_start < end, matching series merged."""

    async def rollup_counts(
        self, model_id: str, provider: str, step_s: int, start: datetime, end: datetime
    ) -> dict[str, int]:
        """Summed roll-up counts (COUNT_FIELDS) of one endpoint over [start, end)."""

    async def prune_raw(self, cutoff: datetime, *, batch: int = 2000) -> int:
        """Delete up to `batch` absorbed probes started before `cutoff` (never one an
        endpoint_latest pointer needs); returns how many."""

    async def prune_hourly(self, cutoff: datetime, *, batch: int = 2000) -> int:
        """Delete up to `batch` hourly roll-ups starting before `cutoff`; returns how many (0 only
        when none is left; fewer than `batch` does not mean done)."""


class StoreError(Exception):
    """The database refused the data of an operation. Retrying the same call will not help."""


class StoreUnavailableError(StoreError):
    """The database cannot serve the operation now, whatever its data: unreachable, connection
    dropped, read-only (a standby after a failover), database missing, permission denied, full.
    Retry later (rows are not lost by the store: nothing of a failed `insert_results` batch was
    written)."""


# The implementations import the protocol and errors above.
from monitor.store.database import (  # noqa: E402
    head_revision,
    normalize_database_url,
    redact_database_url,
    upgrade,
    upgrade_async,
)
from monitor.store.memory import InMemoryStore  # noqa: E402
from monitor.store.sql import (  # noqa: E402
    FAILURE_LOOKBACK,
    SQLStore,
    consecutive_failures_statement,
    open_store,
    recent_results_statement,
    samples_after_statement,
    window_samples_statement,
)

__all__ = [
    "FAILURE_LOOKBACK",
    "InMemoryStore",
    "SQLStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "consecutive_failures_statement",
    "head_revision",
    "normalize_database_url",
    "open_store",
    "recent_results_statement",
    "redact_database_url",
    "samples_after_statement",
    "upgrade",
    "upgrade_async",
    "window_samples_statement",
]
