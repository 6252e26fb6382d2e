"""Fakes for runner/scheduler tests: a store whose database can be switched off, probe results."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import build_metrics
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.store import StoreError, StoreUnavailableError

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def result(i: int = 0, *, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        error_kind=None if ok else ErrorKind.HTTP_ERROR,
        error=None if ok else "HTTP 500",
        http_status=200 if ok else 500,
        started_at=T0 + timedelta(seconds=i),
        ttft_s=0.1 if ok else None,
        connect_s=0.001,
        total_s=0.5,
        output_tokens=10 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=50.0 if ok else None,
    )


class SwitchableStore:
    """Implements the write verb of Store; raises like a dead database while `down` is True."""

    def __init__(self) -> None:
        self.down = False
        self.rows: list[tuple[str, str, ProbeResult]] = []
        self.attempts = 0

    async def insert_results(self, rows):
        self.attempts += 1
        if self.down:
            raise StoreUnavailableError("connection refused (database is down)")
        refused = [r for r in rows if r[1] == "refused"]
        if refused:
            raise StoreError("value out of range")
        self.rows.extend(rows)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return build_metrics(registry)
