"""On-demand benchmark of the store verbs at scale (not collected by pytest).

    python -m tests.store.bench_store [sqlite|postgresql] [--rows-per-endpoint N] [--endpoints N]

Fills a fresh database (a temp SQLite file, or a throw-away PostgreSQL database next to `test`)
with N x E probes in time order (endpoints interleaved, as a live monitor writes them) directly in
SQL, then times each verb through `SQLStore`. Every 50th endpoint has never succeeded, so the
consecutive-failure look-back is exercised at its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.probes.base import ProbeResult, TokenCountSource
from monitor.store import SQLStore, open_store
from tests.store.conftest import create_postgres_database, drop_postgres_database, postgres_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INTERVAL_S = 1800

_FILL_SQL = """
INSERT INTO probe_result (model_id, provider, protocol, model, ok, error_kind, error, http_status,
    started_at, ttft_s, total_s, output_tokens, token_count_source, tokens_per_second,
    content_chunks, first_read_tokens, stream_bytes, methodology)
SELECT 'model-' || (e.n / 6), 'provider-' || (e.n % 6), 'openai', 'm',
    {ok}, CASE WHEN {failed} THEN 'timeout' END, CASE WHEN {failed} THEN 'timed out' END,
    CASE WHEN {failed} THEN NULL ELSE 200 END, {started_at},
    0.2 + (e.n % 7) * 0.01, 1.5, 64, 'usage', 50.0 + (i.n % 13), 60, 1, 4096, '2026.11-1'
FROM {series_i} CROSS JOIN {series_e}
ORDER BY i.n, e.n
"""
_FAILED = "(e.n % 50 = 0 OR i.n % 10 = 0)"
_POINTERS_SQL = """
WITH ranked AS (
    SELECT model_id, provider, id, started_at,
        ROW_NUMBER() OVER (PARTITION BY model_id, provider ORDER BY started_at DESC, id DESC) AS rn
    FROM probe_result),
ranked_ok AS (
    SELECT model_id, provider, id, started_at,
        ROW_NUMBER() OVER (PARTITION BY model_id, provider ORDER BY started_at DESC, id DESC) AS rn
    FROM probe_result WHERE {ok_true})
INSERT INTO endpoint_latest (model_id, provider, latest_probe_id, latest_started_at,
    latest_ok_probe_id, latest_ok_started_at)
SELECT r.model_id, r.provider, r.id, r.started_at, o.id, o.started_at
FROM ranked r LEFT JOIN ranked_ok o
    ON o.model_id = r.model_id AND o.provider = r.provider AND o.rn = 1
WHERE r.rn = 1
"""


def _fill_sql(dialect: str, rows_per_endpoint: int, endpoints: int) -> str:
    if dialect == "postgresql":
        return _FILL_SQL.format(
            ok=f"NOT {_FAILED}", failed=_FAILED,
            started_at=f"TIMESTAMPTZ '2026-01-01 00:00:00+00' + make_interval(secs => i.n * {INTERVAL_S} + e.n % {INTERVAL_S})",
            series_i=f"generate_series(0, {rows_per_endpoint - 1}) AS i(n)",
            series_e=f"generate_series(0, {endpoints - 1}) AS e(n)",
        )
    return (
        f"WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < {rows_per_endpoint - 1}), "
        f"e(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM e WHERE n < {endpoints - 1}) "
        + _FILL_SQL.format(
            ok=f"CASE WHEN {_FAILED} THEN 0 ELSE 1 END", failed=_FAILED,
            started_at=f"datetime('2026-01-01', '+' || (i.n * {INTERVAL_S} + e.n % {INTERVAL_S}) || ' seconds') || '.000000'",
            series_i="i", series_e="e",
        )
    )


async def _fill(store: SQLStore, rows_per_endpoint: int, endpoints: int) -> float:
    started = time.perf_counter()
    async with store.engine.begin() as connection:
        await connection.exec_driver_sql(_fill_sql(store.dialect_name, rows_per_endpoint, endpoints))
        ok_true = "ok" if store.dialect_name == "postgresql" else "ok = 1"
        await connection.exec_driver_sql(_POINTERS_SQL.format(ok_true=ok_true))
    async with store.engine.begin() as connection:
        await connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


async def _timed(call, repeat: int) -> tuple[float, float]:
    """(median ms, p95 ms) of `repeat` awaited calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def _probe(started_at: datetime) -> ProbeResult:
    return ProbeResult(
        ok=True, error_kind=None, error=None, http_status=200, started_at=started_at, ttft_s=0.2,
        connect_s=None, total_s=1.0, output_tokens=64, token_count_source=TokenCountSource.USAGE,
        tokens_per_second=55.0, protocol="openai", model="m",
    )


async def bench(url: str, rows_per_endpoint: int, endpoints: int) -> None:
    store = await open_store(url)
    try:
        fill_s = await _fill(store, rows_per_endpoint, endpoints)
        total = await store.count_results()
        print(f"backend={store.dialect_name} rows={total} endpoints={endpoints} fill={fill_s:.1f}s")
        rng = random.Random(7)
        pick = lambda: (f"model-{(e := rng.randrange(endpoints)) // 6}", f"provider-{e % 6}")  # noqa: E731
        newest = T0 + timedelta(seconds=INTERVAL_S * rows_per_endpoint)

        async def recent():
            await store.recent_results(*pick(), 50)

        async def window():
            assert await store.window_samples(*pick(), newest - timedelta(hours=24))

        batch_clock = iter(range(10**9))

        async def insert_batch():
            base = newest + timedelta(seconds=next(batch_clock))
            await store.insert_results([(*pick(), _probe(base)) for _ in range(100)])

        for name, call, repeat in [
            ("recent_results(limit=50)", recent, 200),
            ("window_samples(24h)", window, 200),
            ("insert_results(100 rows)", insert_batch, 20),
            ("latest_results()", store.latest_results, 5),
            ("latest_ok_results()", store.latest_ok_results, 5),
            ("consecutive_failures()", store.consecutive_failures, 5),
        ]:
            median_ms, p95_ms = await _timed(call, repeat)
            print(f"  {name:28s} median {median_ms:8.2f} ms   p95 {p95_ms:8.2f} ms")
        failures = await store.consecutive_failures()
        print(f"  endpoints at the look-back cap: {sum(v == 50 for v in failures.values())}")
        started = time.perf_counter()
        await (await open_store(url)).close()
        print(f"  open_store (schema at head)  {1000 * (time.perf_counter() - started):8.2f} ms")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["sqlite", "postgresql"])
    parser.add_argument("--rows-per-endpoint", type=int, default=167)
    parser.add_argument("--endpoints", type=int, default=6000)
    args = parser.parse_args()
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(bench(f"sqlite:///{Path(directory) / 'bench.db'}", args.rows_per_endpoint, args.endpoints))
        return
    name = create_postgres_database()
    try:
        asyncio.run(bench(postgres_url(name), args.rows_per_endpoint, args.endpoints))
    finally:
        drop_postgres_database(name)


if __name__ == "__main__":
    main()
