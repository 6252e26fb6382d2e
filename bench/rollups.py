"""Roll-up benchmark: a year of history for 1,000 endpoints at the 30-minute cadence, in the state
retention leaves it, on SQLite and PostgreSQL.

    flock /tmp/llm-monitor-bench.lock python -m bench.rollups                  # both backends, full size
    python -m bench.rollups --scale 0.1 --backends sqlite --repeat 20          # a quick run

State (per backend, `--scale` multiplies the endpoint count; per-endpoint depth stays the same,
so the history queries read the same rows whatever the scale):
  - 90 days of raw probes, one per endpoint per 30 min (1,000 endpoints: 4.32 M rows), written by
    `bench.dataset.fill_history` (INSERT ... SELECT, the project's migrations);
  - their hourly and daily roll-ups, built by the real roll-up job (`Store.rollup`), timed;
  - the 275 older days of hourly and daily roll-ups written straight in with one INSERT ... SELECT
    per table (generate_series on PostgreSQL, a recursive CTE on SQLite), their counts and
    sketches taken from 16 variants computed by the real code (`BucketAggregate`).
Measured (median and p95 of `--repeat` calls on random endpoints, after a warm-up, through the
real app in process: route, store, JSON, ETag):
  - `GET .../history?step=1d` over 90 days (target <= 50 ms) and over 365 days (<= 100 ms);
  - one hour's roll-up of 10,000 endpoints (20,000 new probes; the series already exist from the
    previous hour, as in steady state; the median of STEADY_HOURS hours, with the collector
    settled as the service does once loaded: `llm_monitor.service.settle_collector`): target
    <= 1 s; also the first hour (series created), the CPU time of this process during it (on a
    loaded machine wall time includes waiting), and, in one more hour, the longest time the job
    held the event loop without yielding;
  - the database size on disk (SQLite file; PostgreSQL `pg_database_size`, per table too).
Results: bench/results/rollups.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dataset import PROVIDERS, HistoryShape, fill_history, model_id_of
from bench.postgres import scratch_postgres
from bench.results import log, machine_info, markdown_table, publish
from bench.stats import percentile
from llm_monitor.service import settle_collector

ENDPOINTS = 1000
PROVIDER_COUNT = 5
RAW_DAYS = 90
YEAR_DAYS = 365
INTERVAL_S = 1800
TARGETS_MS = {"history 90d step=1d": 50.0, "history 365d step=1d": 100.0, "roll-up of 1 hour, 10,000 endpoints": 1000.0}
VARIANTS = 16
# Hours of 10,000 endpoints rolled up after the first (whose series are new): the median is reported.
STEADY_HOURS = 5
# The backfill of the raw part runs the job with larger batches than the service's 5,000, so that
# each daily bucket is rewritten a few times rather than once per 5,000 probes.
RAW_BATCH = 50_000
_SKETCH_COLUMNS = ("ttft_sketch", "tps_sketch", "ttft_ms_p5", "ttft_ms_p50", "ttft_ms_p95", "tps_p5", "tps_p50", "tps_p95")


def _variants(probes_per_bucket: int, seed: int) -> list[dict[str, Any]]:
    """Row values of VARIANTS buckets holding `probes_per_bucket` probes each (about 5 %
    failures), computed by the real roll-up code."""
    from monitor.rollups import BucketAggregate, RollupProbe

    rng = random.Random(seed)
    variants = []
    for index in range(VARIANTS):
        bucket = BucketAggregate()
        for k in range(probes_per_bucket):
            failed = rng.random() < 0.05
            bucket.add(RollupProbe(
                id=k, model_id="m", provider="p", location="local", input_tokens=100,
                started_at=datetime(2026, 1, 1, tzinfo=UTC), ok=not failed,
                error_kind="timeout" if failed else None,
                ttft_s=0.15 + rng.random() / 2, tokens_per_second=30 + rng.random() * 90,
            ), in_maintenance=False, keep_cold_starts=False)
        variants.append({"i": index, **bucket.row_values()})
    return variants


async def _write_old_buckets(store: Any, start: datetime, hourly_end: datetime, daily_end: datetime) -> dict[str, float]:
    """INSERT ... SELECT the buckets before the raw part, for every series, from the variants."""
    import sqlalchemy as sa

    from monitor.store.tables import ROLLUP_COUNT_COLUMNS

    columns = [*ROLLUP_COUNT_COLUMNS, *_SKETCH_COLUMNS]
    timings = {}
    dialect = store.dialect_name
    for table, step_s, end, per_bucket in (("rollup_hourly", 3600, hourly_end, 2), ("rollup_daily", 86400, daily_end, 48)):
        started = time.perf_counter()
        variants = _variants(per_bucket, seed=step_s)
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE IF EXISTS bench_variant")
            blob = "BYTEA" if dialect == "postgresql" else "BLOB"
            definitions = ", ".join(
                f"{c} {blob if c.endswith('sketch') else ('DOUBLE PRECISION' if '_p' in c else 'INTEGER')}"
                for c in columns)
            await connection.exec_driver_sql(f"CREATE TABLE bench_variant (i INTEGER PRIMARY KEY, {definitions})")
            await connection.execute(
                sa.text(f"INSERT INTO bench_variant (i, {', '.join(columns)}) VALUES (:i, {', '.join(':' + c for c in columns)})"),
                variants,
            )
            count = int((end - start).total_seconds() // step_s)
            first = int(start.timestamp())
            picked = ", ".join(f"v.{c}" for c in columns)
            if dialect == "postgresql":
                sql = f"""
INSERT INTO {table} (series_id, bucket_start, {', '.join(columns)})
SELECT s.id, to_timestamp({first} + g.k * {step_s}), {picked}
FROM rollup_series s CROSS JOIN generate_series(0, {count - 1}) AS g(k)
JOIN bench_variant v ON v.i = ((s.id * 7 + g.k) % {VARIANTS})
ORDER BY s.id, g.k"""
            else:
                sql = f"""
INSERT INTO {table} (series_id, bucket_start, {', '.join(columns)})
WITH RECURSIVE g(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM g WHERE k < {count - 1})
SELECT s.id, strftime('%Y-%m-%d %H:%M:%S', {first} + g.k * {step_s}, 'unixepoch') || '.000000', {picked}
FROM rollup_series s CROSS JOIN g
JOIN bench_variant v ON v.i = ((s.id * 7 + g.k) % {VARIANTS})
ORDER BY s.id, g.k"""
            await connection.exec_driver_sql(sql)
            await connection.exec_driver_sql("DROP TABLE bench_variant")
        timings[table] = time.perf_counter() - started
    return timings


def _bench_probe(started_at: datetime, rng: random.Random) -> Any:
    from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource

    failed = rng.random() < 0.05
    return ProbeResult(
        ok=not failed, error_kind=ErrorKind.TIMEOUT if failed else None, error="synthetic" if failed else None,
        http_status=None if failed else 200, started_at=started_at,
        ttft_s=None if failed else 0.15 + rng.random() / 2, connect_s=None, total_s=1.0,
        output_tokens=None if failed else 64, token_count_source=None if failed else TokenCountSource.USAGE,
        tokens_per_second=None if failed else 30 + rng.random() * 90, protocol="openai", model="m",
    )


async def _longest_stall_ms(during: Any) -> tuple[Any, float]:
    """Await `during` while a ticker wakes every millisecond: the longest gap between two of its
    wake-ups beyond that millisecond is the longest time the job kept the event loop to itself
    (what a probe timing a stream, or an API request, in the same process would wait)."""
    done = asyncio.Event()
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest, last = max(longest, now - last - 0.001), now

    ticker = asyncio.create_task(tick())
    try:
        return await during, longest * 1000
    finally:
        done.set()
        await ticker


async def _hour_of_10k(store: Any, hour: datetime, rng: random.Random, *, watch_stalls: bool = False) -> tuple:
    from monitor.rollups import RollupRules

    rows = [
        (f"tenk-{e // 5}", PROVIDERS[e % 5], _bench_probe(hour + timedelta(seconds=(e * 37) % 1800 + half * 1800), rng))
        for e in range(10_000) for half in (0, 1)
    ]
    for start in range(0, len(rows), 5000):
        await store.insert_results(rows[start : start + 5000])
    if watch_stalls:
        return await _longest_stall_ms(store.rollup(RollupRules()))
    started, cpu = time.perf_counter(), time.process_time()
    absorbed = await store.rollup(RollupRules())
    return time.perf_counter() - started, absorbed, time.process_time() - cpu


async def _size(store: Any, path: Path | None) -> dict[str, float]:
    if path is not None:
        import sqlite3

        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        return {"database_mb": total / 1e6}
    sizes = {}
    async with store.engine.connect() as connection:
        sizes["database_mb"] = (await connection.exec_driver_sql("SELECT pg_database_size(current_database())")).scalar() / 1e6
        for table in ("probe_result", "rollup_hourly", "rollup_daily"):
            value = (await connection.exec_driver_sql(f"SELECT pg_total_relation_size('{table}')")).scalar()
            sizes[f"{table}_mb"] = value / 1e6
    return sizes


async def run_backend(url: str, sqlite_path: Path | None, *, endpoints: int, repeat: int, seed: int) -> dict[str, Any]:
    import httpx
    from prometheus_client import CollectorRegistry

    from api.app import create_app
    from monitor.rollups import RollupRules
    from monitor.settings import Settings
    from monitor.store import open_store

    report: dict[str, Any] = {"endpoints": endpoints}
    models = max(1, endpoints // PROVIDER_COUNT)
    shape = HistoryShape(rows=models * PROVIDER_COUNT * RAW_DAYS * 48, models=models, providers=PROVIDER_COUNT,
                         interval_s=INTERVAL_S)
    newest = datetime.now(UTC).replace(microsecond=0)
    log(f"  generating {shape.rows:,} raw probes ({shape.endpoints:,} endpoints, {RAW_DAYS} days) ...")
    report["raw_probes"] = shape.rows
    report["generate_raw_s"] = await fill_history(url, shape, newest)
    store = await open_store(url)
    try:
        log("  rolling up the raw part with the real job ...")
        started = time.perf_counter()
        absorbed = await store.rollup(RollupRules(), batch=RAW_BATCH)
        report["rollup_raw_s"] = time.perf_counter() - started
        report["rollup_raw_probes_per_s"] = absorbed / report["rollup_raw_s"]
        raw_start = newest - timedelta(seconds=(shape.rounds - 1) * INTERVAL_S + INTERVAL_S)
        year_start = (newest - timedelta(days=YEAR_DAYS)).replace(minute=0, second=0)
        hourly_end = raw_start.replace(minute=0, second=0) - timedelta(hours=1)
        daily_end = raw_start.replace(hour=0, minute=0, second=0) - timedelta(days=1)
        year_start_day = year_start.replace(hour=0)
        log("  writing the older hourly and daily buckets straight in ...")
        report["write_old_buckets_s"] = await _write_old_buckets(store, year_start_day, hourly_end, daily_end)
        async with store.engine.connect() as connection:
            for table in ("rollup_hourly", "rollup_daily"):
                report[f"{table}_rows"] = (await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar()
        async with store.engine.connect() as connection:
            if store.dialect_name == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("VACUUM ANALYZE")
            else:
                await connection.exec_driver_sql("ANALYZE")
                await connection.commit()
        report["size"] = await _size(store, sqlite_path)
        log(f"  state: {report['rollup_hourly_rows']:,} hourly, {report['rollup_daily_rows']:,} daily roll-ups; {report['size']}")

        class AnyModel:
            def providers(self, model_id: str):
                return PROVIDERS[:PROVIDER_COUNT]

        async def ready() -> dict:
            return {}

        app = create_app(settings=Settings(), store=store, live=AnyModel(), registry=CollectorRegistry(), readiness=ready)
        rng = random.Random(seed)
        timings: dict[str, list[float]] = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for name, days in (("history 90d step=1d", 90), ("history 365d step=1d", 365)):
                samples = []
                for call in range(repeat + 5):
                    e = rng.randrange(shape.endpoints)
                    path = f"/v1/models/{model_id_of(e // PROVIDER_COUNT)}/endpoints/{PROVIDERS[e % PROVIDER_COUNT]}/history"
                    params = {"step": "1d", "from": (newest - timedelta(days=days)).isoformat(), "to": newest.isoformat()}
                    begun = time.perf_counter_ns()
                    response = await client.get(path, params=params)
                    elapsed = (time.perf_counter_ns() - begun) / 1e6
                    data = response.json()["data"]
                    if response.status_code != 200 or sum(item["samples"] for item in data) < days * 40:
                        raise RuntimeError(f"{name}: unexpected answer {response.status_code}, {len(data)} buckets")
                    if call >= 5:
                        samples.append(elapsed)
                timings[name] = samples
        log("  rolling up one hour of 10,000 endpoints ...")
        hour = newest.replace(minute=0, second=0) + timedelta(hours=1)
        settle_collector()  # as the service does once it has loaded
        first_s, first_n, _ = await _hour_of_10k(store, hour, rng)
        steady = [await _hour_of_10k(store, hour + timedelta(hours=h), rng) for h in range(1, 1 + STEADY_HOURS)]
        steady_s, steady_n, steady_cpu = sorted(steady)[len(steady) // 2]  # the median hour
        report["rollup_hour_10k_first_s"] = first_s
        report["rollup_hour_10k_process_cpu_s"] = steady_cpu
        report["rollup_hour_10k_s"] = steady_s
        report["rollup_hour_10k_all_s"] = [round(s, 3) for s, _, _ in steady]
        report["rollup_hour_10k_probes"] = steady_n
        # One more hour, untimed, with a ticker on the event loop (it would perturb the timing).
        _, report["rollup_hour_10k_longest_stall_ms"] = await _hour_of_10k(
            store, hour + timedelta(hours=1 + STEADY_HOURS), rng, watch_stalls=True)
        report["timings_ms"] = {
            name: {"median": statistics.median(values), "p95": percentile(values, 95), "n": len(values)}
            for name, values in timings.items()
        }
        report["timings_ms"]["roll-up of 1 hour, 10,000 endpoints"] = {"median": steady_s * 1000, "p95": steady_s * 1000, "n": 1}
        report["size_after"] = await _size(store, sqlite_path)
    finally:
        await store.close()
    return report


def render(results: dict[str, Any]) -> str:
    rows = []
    for backend, report in results["backends"].items():
        for name, timing in report["timings_ms"].items():
            target = TARGETS_MS[name]
            rows.append([backend, name, timing["median"], timing["p95"], f"<= {target:g} ms",
                         "met" if timing["median"] <= target else "MISSED"])
    state_rows = [
        [backend, f"{r['endpoints']:,}", f"{r['raw_probes']:,}", f"{r['rollup_hourly_rows']:,}", f"{r['rollup_daily_rows']:,}",
         f"{r['size']['database_mb']:,.0f} MB", f"{r['generate_raw_s']:.0f} s",
         f"{r['rollup_raw_s']:.0f} s ({r['rollup_raw_probes_per_s']:,.0f}/s)",
         f"{r['rollup_hour_10k_first_s'] * 1000:.0f} ms",
         f"{r['rollup_hour_10k_process_cpu_s'] * 1000:.0f} ms",
         f"{r['rollup_hour_10k_longest_stall_ms']:.1f} ms"]
        for backend, r in results["backends"].items()
    ]
    return "\n\n".join([
        f"Scale {results['scale']:g}, load average before {results['machine']['load_average_1_5_15']}, "
        f"after {results['machine']['load_average_after']}.",
        markdown_table(["backend", "query", "median ms", "p95 ms", "target", "result"], rows),
        markdown_table(["backend", "endpoints", "raw probes", "hourly roll-ups", "daily roll-ups", "size on disk",
                        "raw generation", "raw roll-up (real job)", "first hour of 10k (series created)",
                        "1 hour of 10k: this process's CPU", "1 hour of 10k: longest event-loop stall"], state_rows),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scale", type=float, default=1.0, help="endpoints = 1000 x scale (default 1)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default="rollups")
    args = parser.parse_args(argv)
    endpoints = max(PROVIDER_COUNT, int(ENDPOINTS * args.scale))
    results: dict[str, Any] = {"machine": machine_info(), "scale": args.scale, "backends": {}}
    for backend in args.backends.split(","):
        log(f"{backend}: {endpoints} endpoints")
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="ru-bench-", dir=os.environ.get("TMPDIR", "/tmp")) as directory:
                path = Path(directory) / "monitor.db"
                results["backends"][backend] = asyncio.run(run_backend(
                    f"sqlite:///{path}", path, endpoints=endpoints, repeat=args.repeat, seed=args.seed))
        elif backend == "postgresql":
            with scratch_postgres() as url:
                results["backends"][backend] = asyncio.run(run_backend(
                    url, None, endpoints=endpoints, repeat=args.repeat, seed=args.seed))
        else:
            parser.error(f"unknown backend {backend!r}")
    publish(results, render, args.name, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
