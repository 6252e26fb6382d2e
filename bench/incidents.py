"""Incident evaluation benchmark: what does `IncidentTracker` cost per sweep as the catalog grows?

    python -m bench.incidents                       # 600 and 6,000 endpoints on PostgreSQL
    python -m bench.incidents --endpoints 300       # a quick run

Method. A scratch PostgreSQL database (`bench_<random>`, dropped afterwards) filled by the
history generator (`bench.dataset`: a probe every 30 min per endpoint, 48 in the 24 h window),
and the tracker as the service builds it (writes on, metrics on a fresh registry). We time:
  - the first sweep (every endpoint's whole window read: what a process does at start);
  - warm sweeps (each endpoint re-reads only its last 2 intervals + timeout + 1 min);
  - a round after one probe (the touched endpoint refreshed, every state recomputed in memory
    for the impaired check, incidents and metrics applied);
  - `annotate` (the live figures' state computation) per endpoint, pure CPU.
Results: bench/results/incidents.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from bench.dataset import HistoryShape, catalog_yaml, fill_history
from bench.postgres import scratch_postgres
from bench.results import log, machine_info, markdown_table, publish


async def measure(url: str, endpoints: int, newest: datetime) -> dict:
    from monitor.catalog.loader import parse_catalog
    from monitor.incidents import IncidentTracker
    from monitor.metrics import build_incident_metrics
    from monitor.stats import endpoint_live
    from monitor.store import open_store

    models = endpoints // 3
    catalog = parse_catalog(catalog_yaml(models, 3, base_url="http://127.0.0.1:9/v1"))
    store = await open_store(url)
    try:
        tracker = IncidentTracker(
            store, catalog, interval_of=lambda e: e.interval_s, window_s=86400.0, writes=True,
            metrics=build_incident_metrics(CollectorRegistry()), clock=lambda: newest,
        )
        started = time.perf_counter()
        await tracker.evaluate()
        first = time.perf_counter() - started
        warm = []
        for _ in range(5):
            started = time.perf_counter()
            await tracker.evaluate()
            warm.append(time.perf_counter() - started)
        model, endpoint = next(iter(catalog.endpoints()))
        touched = []
        for _ in range(5):
            started = time.perf_counter()
            await tracker.evaluate([(model.id, endpoint.provider)])
            touched.append(time.perf_counter() - started)
        samples = await store.window_samples(model.id, endpoint.provider, newest.replace(hour=0))
        figures = endpoint_live(endpoint.provider, samples, now=newest, interval_s=1800.0, window_s=86400.0)
        rounds = 2000
        started = time.perf_counter()
        for _ in range(rounds):
            tracker.annotate(model.id, endpoint, figures, samples, newest)
        annotate_us = (time.perf_counter() - started) / rounds * 1e6
    finally:
        await store.close()
    return {
        "endpoints": endpoints,
        "first_sweep_s": round(first, 3),
        "warm_sweep_s_median": round(statistics.median(warm), 3),
        "warm_sweep_ms_per_endpoint": round(statistics.median(warm) / endpoints * 1000, 3),
        "after_one_probe_ms_median": round(statistics.median(touched) * 1000, 1),
        "annotate_us_per_endpoint": round(annotate_us, 1),
        "window_samples_per_endpoint": len(samples),
    }


def render(report: dict) -> str:
    rows = [
        [r["endpoints"], r["first_sweep_s"], r["warm_sweep_s_median"], r["warm_sweep_ms_per_endpoint"],
         r["after_one_probe_ms_median"], r["annotate_us_per_endpoint"]]
        for r in report["runs"]
    ]
    return "# Incident evaluation (PostgreSQL)\n\n" + markdown_table(
        ["endpoints", "first sweep s", "warm sweep s", "warm ms/endpoint", "round after 1 probe ms", "annotate µs/endpoint"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[600, 6000])
    parser.add_argument("--results-dir")
    args = parser.parse_args()
    report = {"machine": machine_info(), "runs": []}
    for endpoints in args.endpoints:
        newest = datetime.now(UTC).replace(microsecond=0)
        with scratch_postgres() as url:
            shape = HistoryShape(rows=endpoints * 48, models=endpoints // 3)
            log(f"filling {shape.rows} probes for {endpoints} endpoints")
            asyncio.run(fill_history(url, shape, newest))
            report["runs"].append(asyncio.run(measure(url, endpoints, newest)))
    publish(report, render, "incidents", args.results_dir)


if __name__ == "__main__":
    main()
