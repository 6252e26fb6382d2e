"""Storage interface in domain verbs. Implementations: `SQLStore` (SQLite or PostgreSQL).

Callers (runner, live figures, API) depend only on the `Store` protocol below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from monitor.probes.base import ProbeResult
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

    async def ping(self) -> None:
        """Raises when the database is unreachable."""

    async def close(self) -> None: ...
