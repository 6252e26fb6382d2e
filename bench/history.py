"""History benchmark: do live-figure loads and probe-history queries stay flat from 10k to 1M probes?

    flock /tmp/llm-monitor-bench.lock python -m bench.history                 # SQLite + PostgreSQL
    python -m bench.history --backends sqlite --small 3000 --large 30000 ...  # tiny smoke configuration

Method. Two histories per backend, built by the same generator (`bench.dataset`) and the
project's own migrations: SMALL (10,000 probes) and LARGE (1,000,000 probes). Both give every
endpoint the same depth (probe every 30 min, ~167 probes, ~48 in the 24 h window): they differ
only in how many endpoints share the table (60 vs 6,000), so each query returns the same rows
and any slowdown comes from the table's size, i.e. from scanning instead of seeking an index.
On each database, after a warm-up, we time (through `SQLStore` / `LiveFigures`, as the service
calls them) for randomly picked endpoints / models:
  - `window_samples(model, provider, now - 24 h)`: one endpoint's live window;
  - `LiveFigures.load` for a one-model catalog (3 window reads + the figures recomputation);
  - `recent_results(model, provider, 50)`: the API's probe-history page.
The ratio is median(LARGE) / median(SMALL); target <= 1.5. The SQLite files are cached under
/tmp; PostgreSQL runs in a scratch database `bench_<random>` (127.0.0.1:5432) dropped afterwards.

Results: bench/results/history.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from bench.dataset import PROVIDERS, HistoryShape, cached_sqlite_history, catalog_yaml, fill_history, model_id_of
from bench.postgres import scratch_postgres
from bench.results import load_average, log, machine_info, markdown_table, publish
from bench.stats import all_finite, percentile

TARGET_RATIO = 1.5
WINDOW_S = 24 * 3600.0
QUERIES = ("window_samples(24h)", "LiveFigures.load(1 model)", "recent_results(limit=50)")


async def _timed(call: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


async def measure(database_url: str, shape: HistoryShape, newest: datetime, *, repeat: int,
                  warmup: int, seed: int) -> dict[str, Any]:
    """Timings (ms) of the three queries on one database."""
    from monitor.catalog import Catalog, parse_catalog
    from monitor.live import LiveFigures
    from monitor.store import open_store

    store = await open_store(database_url)
    try:
        catalog = parse_catalog(catalog_yaml(shape.models, shape.providers, base_url="http://127.0.0.1:9/v1"),
                                source="bench")
        one_model = [Catalog(defaults=catalog.defaults, models=(model,)) for model in catalog.models]
        rng = random.Random(seed)
        since = newest - timedelta(seconds=WINDOW_S)
        sizes: dict[str, list[int]] = {name: [] for name in QUERIES}

        def endpoint() -> tuple[str, str]:
            e = rng.randrange(shape.endpoints)
            return model_id_of(e // shape.providers), PROVIDERS[e % shape.providers]

        async def window() -> None:
            sizes[QUERIES[0]].append(len(await store.window_samples(*endpoint(), since)))

        async def live_load() -> None:
            live = LiveFigures(rng.choice(one_model), window_s=WINDOW_S, interval_of=lambda e: e.interval_s,
                               clock=lambda: newest)
            await live.load(store)
            sizes[QUERIES[1]].append(sum(e.samples for _, m in live.models() for e in m.endpoints))

        async def recent() -> None:
            sizes[QUERIES[2]].append(len(await store.recent_results(*endpoint(), 50)))

        calls = dict(zip(QUERIES, (window, live_load, recent)))
        for call in calls.values():  # warm caches (page cache, connection pool, statement cache)
            await _timed(call, warmup)
        for values in sizes.values():
            values.clear()
        out: dict[str, Any] = {"rows": await store.count_results(), "endpoints": shape.endpoints}
        for name, call in calls.items():
            samples = await _timed(call, repeat)
            out[name] = {
                "median_ms": round(statistics.median(samples), 3),
                "p95_ms": round(percentile(samples, 95), 3),
                "mean_rows": round(statistics.mean(sizes[name]), 1),
                "n": len(samples),
            }
        return out
    finally:
        await store.close()


def bench_sqlite(shapes: dict[str, HistoryShape], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, shape in shapes.items():
        path, newest, generated_s = cached_sqlite_history(shape, log=log)
        log(f"sqlite {label}: measuring ...")
        out[label] = asyncio.run(measure(f"sqlite:///{path}", shape, newest, repeat=args.repeat,
                                         warmup=args.warmup, seed=args.seed))
        out[label]["generated_s"] = generated_s
        out[label]["load_1m"] = round(load_average()[0], 2)
    return out


def bench_postgres(shapes: dict[str, HistoryShape], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, shape in shapes.items():
        with scratch_postgres() as url:
            newest = datetime.now().astimezone().replace(microsecond=0)
            log(f"postgresql {label}: generating {shape.rows:,} probes in {url.rsplit('/', 1)[1]} ...")
            generated_s = asyncio.run(fill_history(url, shape, newest))
            log(f"  generated in {generated_s:.1f} s; measuring ...")
            out[label] = asyncio.run(measure(url, shape, newest, repeat=args.repeat, warmup=args.warmup,
                                             seed=args.seed))
            out[label]["generated_s"] = round(generated_s, 1)
            out[label]["load_1m"] = round(load_average()[0], 2)
    return out


def summarize(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for backend, by_size in results.items():
        for query in QUERIES:
            small, large = by_size["small"][query], by_size["large"][query]
            ratio = large["median_ms"] / small["median_ms"] if small["median_ms"] else float("nan")
            rows.append({
                "backend": backend, "query": query,
                "small_median_ms": small["median_ms"], "large_median_ms": large["median_ms"],
                "small_p95_ms": small["p95_ms"], "large_p95_ms": large["p95_ms"],
                "rows_returned_small": small["mean_rows"], "rows_returned_large": large["mean_rows"],
                "ratio": round(ratio, 3), "pass": ratio <= TARGET_RATIO,
            })
    return rows


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    out = [f"# History benchmark ({report['machine']['at']})", "",
           f"SMALL = {cfg['small']:,} probes ({cfg['small_endpoints']} endpoints), LARGE = {cfg['large']:,} probes "
           f"({cfg['large_endpoints']:,} endpoints), same depth per endpoint (1 probe / 30 min). "
           f"Median of {cfg['repeat']} calls after {cfg['warmup']} warm-up calls, random endpoints/models. "
           f"Load average before: {report['machine']['load_average_1_5_15']}.", ""]
    rows = [[r["backend"], r["query"], r["small_median_ms"], r["large_median_ms"], r["large_p95_ms"],
             f"{r['rows_returned_small']:g} / {r['rows_returned_large']:g}",
             f"{r['ratio']:.2f}", "PASS" if r["pass"] else "FAIL"]
            for r in report["summary"]]
    out.append(markdown_table(["backend", "query", "10k median ms", "1M median ms", "1M p95 ms",
                               "rows returned (10k / 1M)", "ratio 1M/10k", f"<= {TARGET_RATIO}"], rows))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--small", type=int, default=10_000, help="probes in the small history")
    parser.add_argument("--large", type=int, default=1_000_000, help="probes in the large history")
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--depth", type=float, default=1_000_000 / 6000,
                        help="probes per endpoint (sets the endpoint count: rows / depth / providers models)")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="history")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)

    def shape(rows: int) -> HistoryShape:
        models = max(1, round(rows / args.depth / args.providers))
        return HistoryShape(rows=rows, models=models, providers=args.providers)

    shapes = {"small": shape(args.small), "large": shape(args.large)}
    report: dict[str, Any] = {
        "benchmark": "history", "machine": machine_info(),
        "config": {**vars(args), "small_endpoints": shapes["small"].endpoints,
                   "large_endpoints": shapes["large"].endpoints},
        "method": __doc__,
    }
    results: dict[str, Any] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend == "sqlite":
            results["sqlite"] = bench_sqlite(shapes, args)
        elif backend == "postgresql":
            results["postgresql"] = bench_postgres(shapes, args)
        else:
            parser.error(f"unknown backend {backend!r}")
    report["results"] = results
    report["summary"] = summarize(results)
    report["all_pass"] = all(r["pass"] for r in report["summary"])
    report["finite"] = all_finite(report["summary"])
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
