"""Backends for the roll-up tests: the in-memory store, a fresh SQLite file and a PostgreSQL
database of this session named `ru_<random>` (dropped at the end), emptied per test.
Under CI=true an unreachable PostgreSQL FAILS these tests; elsewhere they skip with the reason.
Also: generated probe histories (several locations, both profiles, every outcome) and the direct
computation of roll-ups from raw rows that the stored ones must equal.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.rollups import BucketAggregate, RollupProbe, RollupRules, aggregate
from monitor.store import InMemoryStore, SQLStore, Store, open_store
from tests.store.conftest import create_postgres_database, drop_postgres_database, postgres_url

BACKENDS = ("memory", "sqlite", "postgresql")
SQL_BACKENDS = ("sqlite", "postgresql")
T0 = datetime(2026, 9, 1, tzinfo=UTC)
MODEL = "meta-llama/llama-3.2-1b-instruct"
PROVIDERS = ("Cloudflare", "Groq")
LOCATIONS = ("eu-west", "us-east", "ap-south")


def create_ru_database() -> str:
    return create_postgres_database("ru")


@pytest.fixture(scope="session")
def ru_postgres_database() -> Iterator[str]:
    name = create_ru_database()
    yield name
    drop_postgres_database(name)


ROLLUP_TABLES = ("rollup_hourly", "rollup_daily", "rollup_series", "rollup_state", "endpoint_latest", "probe_result")


async def empty_all(store: SQLStore) -> None:
    async with store.engine.begin() as connection:
        if store.dialect_name == "postgresql":
            await connection.execute(sa.text(f"TRUNCATE {', '.join(ROLLUP_TABLES)} RESTART IDENTITY"))
        else:
            for table in ROLLUP_TABLES:
                await connection.execute(sa.text(f"DELETE FROM {table}"))


def url_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    if backend == "memory":
        return None
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'monitor.db'}"
    return postgres_url(request.getfixturevalue("ru_postgres_database"))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The database behind `store` (None: the in-memory store)."""
    return url_for(request.param, tmp_path, request)


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = url_for(request.param, tmp_path, request)
    assert url is not None
    return url


@pytest.fixture
async def store(store_url: str | None) -> AsyncIterator[Store]:
    if store_url is None:
        yield InMemoryStore()
        return
    opened = await open_store(store_url)
    await empty_all(opened)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sql_store(sql_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(sql_url)
    await empty_all(opened)
    try:
        yield opened
    finally:
        await opened.close()


# ------------------------------------------------------------------------------ generated probes

_FAILURES = (ErrorKind.TIMEOUT, ErrorKind.HTTP_ERROR, ErrorKind.RATE_LIMITED, ErrorKind.CONFIG_ERROR,
             ErrorKind.STREAM_ERROR, ErrorKind.CONNECT_ERROR)


def probe(
    started_at: datetime, *, ok: bool = True, error_kind: ErrorKind | None = None, location: str = "local",
    trigger: Trigger = Trigger.SCHEDULED, ttft_s: float | None = 0.25, tps: float | None = 57.0,
    input_tokens: int = 100, cold_start: bool = False, suspect: bool = False,
) -> ProbeResult:
    return ProbeResult(
        ok=ok, error_kind=error_kind, error=None if ok else f"failed: {error_kind}",
        http_status=200 if ok else 503, started_at=started_at,
        ttft_s=ttft_s if ok else None, connect_s=None, total_s=1.5,
        output_tokens=64 if ok else None, token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=tps if ok else None, protocol="openai", model="m",
        location=location, trigger=trigger, input_tokens=input_tokens, cold_start=cold_start, suspect=suspect,
    )


def generated_history(seed: int, *, hours: int = 60, start: datetime = T0) -> list[tuple[str, str, ProbeResult]]:
    """Every 10 minutes per (provider, location), for `hours`: mostly ok with random timings,
    failures of several kinds, some confirm/manual probes, cold starts, suspect probes, two
    workload profiles on one provider."""
    rng = random.Random(seed)
    rows = []
    for provider in PROVIDERS:
        for location in LOCATIONS:
            moment = start + timedelta(seconds=rng.randrange(600))
            while moment < start + timedelta(hours=hours):
                roll = rng.random()
                kwargs: dict = dict(
                    location=location,
                    ttft_s=rng.lognormvariate(-1.2, 0.5),
                    tps=rng.uniform(20, 200),
                    input_tokens=1000 if provider == "Groq" and rng.random() < 0.3 else 100,
                    cold_start=rng.random() < 0.05,
                    suspect=rng.random() < 0.03,
                )
                if roll < 0.15:
                    kwargs.update(ok=False, error_kind=rng.choice(_FAILURES))
                if rng.random() < 0.1:
                    kwargs["trigger"] = rng.choice((Trigger.CONFIRM, Trigger.MANUAL))
                rows.append((MODEL, provider, probe(moment, **kwargs)))
                moment += timedelta(seconds=600 + rng.randrange(-60, 60))
    return rows


def direct(rows: list[tuple[str, str, ProbeResult]], step_s: int, rules: RollupRules = RollupRules()
           ) -> dict[tuple[tuple[str, str, str, int], datetime], BucketAggregate]:
    """Roll-ups computed straight from raw rows (the reference)."""
    probes = [
        RollupProbe(
            id=index, model_id=model_id, provider=provider, location=result.location,
            input_tokens=result.input_tokens, started_at=result.started_at, ok=result.ok,
            error_kind=None if result.error_kind is None else result.error_kind.value,
            ttft_s=result.ttft_s, tokens_per_second=result.tokens_per_second, trigger=result.trigger.value,
            cold_start=result.cold_start, suspect=result.suspect,
        )
        for index, (model_id, provider, result) in enumerate(rows)
    ]
    return aggregate(probes, step_s, in_maintenance=rules.in_maintenance, keep_cold_starts=rules.keep_cold_starts)


def merged_by_bucket(buckets, model_id: str, provider: str, *, location: str | None = None,
                     input_tokens: int | None = None) -> dict[datetime, BucketAggregate]:
    merged: dict[datetime, BucketAggregate] = {}
    for (series, bucket), value in buckets.items():
        m, p, loc, tokens = series
        if (m, p) != (model_id, provider) or location not in (None, loc) or input_tokens not in (None, tokens):
            continue
        merged.setdefault(bucket, BucketAggregate()).merge(value)
    return merged
