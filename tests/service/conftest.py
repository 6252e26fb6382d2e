"""Shared parts of the runner/scheduler tests: probe results, what a store holds, metrics."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import build_metrics
from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource
from monitor.store import InMemoryStore

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


def refused(i: int = 0) -> ProbeResult:
    """A result carrying a value no database takes (an int beyond 64 bits)."""
    probe = result(i)
    probe.stream_bytes = 2**70
    return probe


async def stored(store: InMemoryStore) -> list[tuple[str, str, datetime]]:
    """(model_id, provider, started_at) of every stored probe, in the order they were written."""
    return [(m, p, s.started_at) for _, m, p, s in await store.samples_after(0, 1_000_000)]


async def stored_starts(store: InMemoryStore) -> list[datetime]:
    return [started_at for *_, started_at in await stored(store)]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return build_metrics(registry)
