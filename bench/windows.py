"""Window benchmark: how long do the 7-, 30- and 90-day live figures of one model take?

    flock /tmp/llm-monitor-bench.lock python -m bench.windows                  # 1,000 endpoints, SQLite + PostgreSQL
    python -m bench.windows --scale 0.1 --backends sqlite --repeat 30          # smaller smoke run

Method. A 90-day raw history at the 30-minute cadence for 1,000 endpoints x `--scale` (333 models
x 3 providers: 4.3 M probes at scale 1), built by the project's generator (`bench.dataset`, an
INSERT ... SELECT into a database migrated by the project's migrations; endpoints interleaved in
time as a live monitor writes them). On each backend, for randomly picked models, through the code
the service runs (`LiveFigures` loaded for a one-model catalog, then `WindowFigures`):
  - cold: `WindowFigures.model(model, window)` with an empty cache: one `window_figure_rows`
    range read per endpoint (3 x ~1,440 rows for 30 days) plus the figures (medians, p5/p95,
    order-statistic and Wilson intervals);
  - cached: the same call again (what the API and its fast path do until a probe of the model
    lands or `window_cache_s` passes).
Target: 30-day figures of one model <= 20 ms. The 1M/10k ratio of the 24 h live figures is
`bench.history` (re-run it; the window code does not touch that path).
The SQLite file is cached under /tmp (see bench.dataset); PostgreSQL runs in a scratch database
`figures_bench_<random>` dropped afterwards.

Results: bench/results/windows.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dataset import PROVIDERS, HistoryShape, cached_sqlite_history, catalog_yaml, fill_history, model_id_of
from bench.postgres import scratch_postgres
from bench.results import load_average, log, machine_info, markdown_table, publish
from bench.stats import all_finite, percentile

TARGET_30D_MS = 20.0
DAYS = 90
CADENCE_S = 1800
WINDOW_NAMES = ("7d", "30d", "90d")


def shape_of(scale: float) -> HistoryShape:
    models = max(1, round(1000 * scale / 3))
    endpoints = models * 3
    return HistoryShape(rows=endpoints * DAYS * 86400 // CADENCE_S, models=models, providers=3)


async def measure(url: str, shape: HistoryShape, newest: datetime, *, repeat: int, warmup: int, seed: int) -> dict[str, Any]:
    from monitor.catalog import Catalog, parse_catalog
    from monitor.live import LiveFigures
    from monitor.store import open_store
    from monitor.windows import WINDOWS, WindowFigures

    store = await open_store(url)
    try:
        catalog = parse_catalog(catalog_yaml(shape.models, shape.providers, base_url="http://127.0.0.1:9/v1"),
                                source="bench")
        rng = random.Random(seed)
        out: dict[str, Any] = {"rows": await store.count_results(), "endpoints": shape.endpoints}
        for name in WINDOW_NAMES:
            cold: list[float] = []
            cached: list[float] = []
            cold_cpu: list[float] = []  # this process's CPU (SQLite runs in it): robust to a busy host
            samples: list[int] = []
            for i in range(warmup + repeat):
                model = catalog.models[rng.randrange(len(catalog.models))]
                live = LiveFigures(Catalog(defaults=catalog.defaults, models=(model,)), window_s=WINDOWS["24h"],
                                   interval_of=lambda e: e.interval_s, clock=lambda: newest)
                await live.load(store)
                windows = WindowFigures(live, store, cache_s=60.0)
                cpu_started = time.process_time_ns()
                started = time.perf_counter_ns()
                figures = await windows.model(model.id, WINDOWS[name])
                middle = time.perf_counter_ns()
                cpu_used = time.process_time_ns() - cpu_started
                again = await windows.model(model.id, WINDOWS[name])
                ended = time.perf_counter_ns()
                assert again is figures
                if i >= warmup:
                    cold.append((middle - started) / 1e6)
                    cold_cpu.append(cpu_used / 1e6)
                    cached.append((ended - middle) / 1e6)
                    samples.append(sum(e.samples for e in figures.endpoints))
            out[name] = {
                "cold_median_ms": round(statistics.median(cold), 3),
                "cold_p95_ms": round(percentile(cold, 95), 3),
                "cold_cpu_median_ms": round(statistics.median(cold_cpu), 3),
                "cached_median_ms": round(statistics.median(cached), 4),
                "probes_per_model": round(statistics.mean(samples), 1),
                "n": len(cold),
            }
        return out
    finally:
        await store.close()


def database_size(url: str) -> int | None:
    if url.startswith("sqlite:///"):
        return os.path.getsize(url[len("sqlite:///"):])
    return None


async def postgres_size(url: str) -> int:
    from monitor.store import open_store

    store = await open_store(url)
    try:
        async with store.engine.connect() as connection:
            return int((await connection.exec_driver_sql("SELECT pg_database_size(current_database())")).scalar())
    finally:
        await store.close()


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    out = [f"# Window benchmark ({report['machine']['at']})", "",
           f"{cfg['endpoints']:,} endpoints x {DAYS} days at 30 min = {cfg['rows']:,} raw probes. "
           f"Median of {cfg['repeat']} random models after {cfg['warmup']} warm-up ones. "
           f"Load average before: {report['machine']['load_average_1_5_15']}.", ""]
    rows = []
    for backend, result in report["results"].items():
        for name in WINDOW_NAMES:
            r = result[name]
            target = f"<= {TARGET_30D_MS:g} ms: {'PASS' if r['cold_median_ms'] <= TARGET_30D_MS else 'FAIL'}" if name == "30d" else ""
            rows.append([backend, name, r["probes_per_model"], r["cold_median_ms"], r["cold_p95_ms"],
                         r["cold_cpu_median_ms"], r["cached_median_ms"], target])
    out.append(markdown_table(["backend", "window", "probes / model", "cold median ms", "cold p95 ms",
                               "cold CPU ms (this process)", "cached median ms", "target (30d, cold)"], rows))
    sizes = {b: r.get("database_bytes") for b, r in report["results"].items()}
    out += ["", "Database size: " + ", ".join(f"{b} {s / 1e6:,.0f} MB" for b, s in sizes.items() if s)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scale", type=float, default=1.0, help="x 1,000 endpoints")
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="windows")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    shape = shape_of(args.scale)
    report: dict[str, Any] = {
        "benchmark": "windows", "machine": machine_info(),
        "config": {**vars(args), "endpoints": shape.endpoints, "rows": shape.rows}, "method": __doc__,
    }
    results: dict[str, Any] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend == "sqlite":
            path, newest, generated_s = cached_sqlite_history(shape, log=log)
            url = f"sqlite:///{path}"
            log("sqlite: measuring ...")
            results["sqlite"] = asyncio.run(measure(url, shape, newest, repeat=args.repeat, warmup=args.warmup,
                                                    seed=args.seed))
            results["sqlite"].update(generated_s=generated_s, database_bytes=database_size(url))
        elif backend == "postgresql":
            with scratch_postgres(prefix="figures_bench") as url:
                newest = datetime.now().astimezone().replace(microsecond=0)
                log(f"postgresql: generating {shape.rows:,} probes ...")
                generated_s = asyncio.run(fill_history(url, shape, newest))
                log(f"  generated in {generated_s:.1f} s; measuring ...")
                results["postgresql"] = asyncio.run(measure(url, shape, newest, repeat=args.repeat,
                                                            warmup=args.warmup, seed=args.seed))
                results["postgresql"].update(generated_s=round(generated_s, 1),
                                             database_bytes=asyncio.run(postgres_size(url)))
        else:
            parser.error(f"unknown backend {backend!r}")
        results[backend]["load_1m"] = round(load_average()[0], 2)
    report["results"] = results
    report["all_pass"] = all(r["30d"]["cold_median_ms"] <= TARGET_30D_MS for r in results.values())
    report["finite"] = all_finite([r[n] for r in results.values() for n in WINDOW_NAMES])
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
