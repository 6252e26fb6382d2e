"""Shared pieces of the incident tests: their own PostgreSQL databases (prefix `inc_`, dropped
afterwards), store fixtures on every backend, and sample/probe builders.

Under CI=true an unreachable PostgreSQL FAILS (never skips), as in the store suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.stats import ProbeSample
from monitor.store import InMemoryStore, Store, open_store
from tests.store.conftest import create_postgres_database, drop_postgres_database, postgres_url

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def create_inc_database() -> str:
    return create_postgres_database("inc")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (plain URL), dropped afterwards."""
    name = create_inc_database()
    yield postgres_url(name)
    drop_postgres_database(name)


@pytest.fixture(params=("memory", "sqlite", "postgresql"))
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (the in-memory store), a SQLite file, or a fresh PostgreSQL database of its own."""
    if request.param == "memory":
        yield None
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
    else:
        name = create_inc_database()
        yield postgres_url(name)
        drop_postgres_database(name)


@pytest.fixture
async def any_store(any_store_url: str | None) -> AsyncIterator[Store]:
    if any_store_url is None:
        yield InMemoryStore()
        return
    opened = await open_store(any_store_url)
    try:
        yield opened
    finally:
        await opened.close()


def sample(
    minute: float, ok: bool = True, *, kind: str | None = None, location: str = "local",
    trigger: str = "scheduled", ttft: float | None = 0.2, answer_ok: bool | None = None,
) -> ProbeSample:
    return ProbeSample(
        started_at=T0 + timedelta(minutes=minute),
        ok=ok,
        error_kind=None if ok else (kind or "connect_error"),
        ttft_s=ttft if ok else None,
        tokens_per_second=50.0 if ok else None,
        location=location,
        trigger=trigger,
        answer_ok=answer_ok if ok else None,
    )


def result(at: datetime, ok: bool = True, *, kind: ErrorKind = ErrorKind.CONNECT_ERROR,
           location: str = "local", trigger: Trigger = Trigger.SCHEDULED) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        error_kind=None if ok else kind,
        error=None if ok else f"{kind} (test)",
        http_status=200 if ok else None,
        started_at=at,
        ttft_s=0.1 if ok else None,
        connect_s=0.01 if ok else None,
        total_s=0.3,
        output_tokens=10 if ok else None,
        token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=40.0 if ok else None,
        location=location,
        trigger=trigger,
    )
