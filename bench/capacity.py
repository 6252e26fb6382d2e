"""Capacity benchmark: how many endpoints one monitor process can probe per 30-minute cycle while
keeping TTFT accurate (error p99 <= 5 ms against server-side ground truth).

    flock /tmp/llm-monitor-bench.lock python -m bench.capacity               # full run (~3 min)
    python -m bench.capacity --levels 2,4 --level-duration 2 --catalog-endpoints 60 ...   # smoke

Method.
- Ground truth: the loopback OpenAI-style stream server (`bench.truth_server`) runs in
  its OWN process; per request it stamps the kernel arrival time of the request and the send time
  of each token frame (perf_counter_ns), so true TTFT = first token frame - request arrival.
  Every stream is the same realistic short answer (default: first token after 250 ms, then 40
  tokens 20 ms apart, ~1 s per probe, usage chunk and [DONE]).
- The probing side is this process, built like `llm-monitor run` builds it: one shared
  `build_client()`, a `LoopLagMonitor`, the real `Runner` (probe -> metrics -> live figures ->
  `ResultBuffer` -> SQLite store), logging at INFO (to a file), and the `Service` object's own
  metrics, live figures and 5-second live-figures recompute loop over a catalog of
  `--catalog-endpoints` endpoints (default 10,002). Only
  APScheduler is replaced by C closed-loop workers: each takes the next catalog endpoint and
  probes it, back to back, for `--level-duration` seconds. That is the sustained load a
  scheduler would create with C probes in flight; the scheduler's own per-job cost is small.
- Each endpoint's provider-side model name is unique, so every stored probe is matched with the
  server's record of the request it made (in start order) and TTFT error = measured - truth.
- For each concurrency level: probes/s completed, ok share, TTFT error (median, p99, max of
  |error|), worst event-loop lag, CPU seconds per probe (this process) and the server's CPU.
- Sustainable rate = the highest probes/s among levels whose |TTFT error| p99 <= 5 ms and where
  >= 99 % of probes were ok; endpoints per cycle = that rate x 1800 s. A level only counts if
  it ran at least 200 probes.
Assumptions (say so when quoting the number): every endpoint shares one loopback origin, so
connections are reused (real providers add TLS set-ups, spread over many hosts); 2 cores are
shared with the stream server process (and the machine's other users), which makes the figure
conservative; probes are perfectly spread over the cycle (the scheduler spreads first runs
evenly and jitters); `max_concurrent_probes` (64 by default) must be raised to use levels above it.

Results: bench/results/capacity.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dataset import catalog_yaml
from bench.processes import cpu_seconds_of
from bench.results import load_average, log, machine_info, markdown_table, publish
from bench.stats import all_finite, percentile
from bench.truth_server import TruthServer, by_model

CYCLE_S = 1800
TARGET_ERROR_P99_MS = 5.0
TARGET_ENDPOINTS = 10_000
MIN_OK_SHARE = 0.99
MIN_PROBES_PER_LEVEL = 200


async def run_levels(args: argparse.Namespace, server: TruthServer, work: Path) -> list[dict[str, Any]]:
    from monitor.catalog import parse_catalog
    from monitor.probes.meters import LoopLagMonitor
    from monitor.probes.transport import build_client
    from monitor.runner import ResultBuffer, Runner
    from llm_monitor.modes import ProcessMode
    from llm_monitor.service import Service
    from monitor.settings import Settings
    from monitor.store import open_store

    providers = 3
    models = max(1, -(-args.catalog_endpoints // providers))
    catalog = parse_catalog(catalog_yaml(models, providers, base_url=server.base_url, name_prefix="cap"),
                            source="bench")
    endpoints = list(catalog.endpoints())
    store = await open_store(f"sqlite:///{work / 'capacity.db'}")
    # The service object itself supplies metrics, live figures and the periodic recompute, so
    # their costs are exactly those of `llm-monitor run` (its serve() is not called: no API).
    service = Service(Settings(), catalog, mode=ProcessMode.RUN, environ={})
    metrics, live = service.metrics, service.live
    buffer = ResultBuffer(store, metrics, capacity=100_000)
    client = build_client()
    lag_monitor = LoopLagMonitor()
    lag_monitor.start()
    writer = asyncio.create_task(buffer.run(), name="result-writer")
    recompute_s: list[float] = []
    recomputer = asyncio.create_task(service._recompute_loop(export=True), name="live-recompute")
    timed_recompute(live, recompute_s)
    if args.gc_freeze:
        # The proposed start-up step: move everything built so far (catalog, metric children,
        # live figures) out of the collector's reach, so full collections stop pausing the loop.
        gc.collect()
        gc.freeze()
    next_endpoint = 0
    levels: list[dict[str, Any]] = []
    try:
        for concurrency in args.levels:
            runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={},
                            max_concurrent=concurrency, lag_monitor=lag_monitor)
            server.fetch()  # drop anything left from the previous level
            records: list[tuple[str, Any]] = []
            deadline = time.perf_counter() + args.level_duration
            recompute_s.clear()

            async def worker() -> None:
                nonlocal next_endpoint
                while time.perf_counter() < deadline:
                    model, endpoint = endpoints[next_endpoint % len(endpoints)]
                    next_endpoint += 1
                    result = await runner.probe_endpoint(model, endpoint)
                    records.append((endpoint.model, result))

            load = load_average()[0]
            cpu0, server_cpu0, started = time.process_time(), cpu_seconds_of(server.pid), time.perf_counter()
            with GCPauses() as gc_pauses:
                await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            cpu, server_cpu = time.process_time() - cpu0, cpu_seconds_of(server.pid) - server_cpu0
            await buffer.flush()
            truth = by_model(await asyncio.to_thread(server.fetch))
            levels.append(summarize_level(concurrency, records, truth, elapsed, cpu, server_cpu, load,
                                          list(recompute_s)))
            levels[-1]["gc_full_passes"] = len(gc_pauses.pauses_s)
            levels[-1]["gc_full_pass_ms_max"] = round(1000 * max(gc_pauses.pauses_s), 1) if gc_pauses.pauses_s else 0.0
            level = levels[-1]
            log(f"  C={concurrency:4d}: {level['probes']:5d} probes, {level['probes_per_s']:7.1f}/s, "
                f"ok {level['ok_share']:.3f}, |err| p50 {level['abs_error_ms_p50']:.2f} "
                f"p99 {level['abs_error_ms_p99']:.2f} max {level['abs_error_ms_max']:.2f} ms, "
                f"lag max {level['loop_lag_ms_max']:.1f} ms, cpu/probe {level['cpu_ms_per_probe']:.2f} ms, "
                f"server cpu {level['server_cpu_share']:.2f}, load {load:.2f}")
    finally:
        recomputer.cancel()
        await buffer.flush()
        writer.cancel()
        await asyncio.gather(writer, recomputer, return_exceptions=True)
        await lag_monitor.stop()
        await client.aclose()
        stored = await store.count_results()
        await store.close()
    log(f"stored {stored} probes")
    return levels


class GCPauses:
    """Durations of the collector's full (generation 2) passes, via gc.callbacks."""

    def __init__(self) -> None:
        self.pauses_s: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif info.get("generation") == 2:
            self.pauses_s.append(time.perf_counter() - self._started)

    def __enter__(self) -> "GCPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def timed_recompute(live: Any, durations: list[float]) -> None:
    """Record how long each periodic recompute pass of `live` takes (wraps the instance's own
    method: `recompute`, or `recompute_gradually` where the tree has it)."""
    for name in ("recompute", "recompute_gradually"):
        original = getattr(live, name, None)
        if original is None:
            continue
        if asyncio.iscoroutinefunction(original):
            async def timed_async(*a: Any, _original: Any = original, **kw: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await _original(*a, **kw)
                finally:
                    durations.append(time.perf_counter() - started)
            setattr(live, name, timed_async)
        else:
            def timed(*a: Any, _original: Any = original, **kw: Any) -> Any:
                started = time.perf_counter()
                try:
                    return _original(*a, **kw)
                finally:
                    durations.append(time.perf_counter() - started)
            setattr(live, name, timed)


def summarize_level(concurrency: int, records: list[tuple[str, Any]], truth: dict[str, list[dict[str, Any]]],
                    elapsed: float, cpu: float, server_cpu: float, load: float,
                    recompute_s: list[float]) -> dict[str, Any]:
    results_by_model: dict[str, list[Any]] = {}
    for model, result in records:
        results_by_model.setdefault(model, []).append(result)
    errors_ms: list[float] = []
    unmatched = 0
    for model, results in results_by_model.items():
        served = truth.get(model, [])  # in arrival order
        ordered = sorted(results, key=lambda r: r.started_at)
        if len(served) != len(ordered):
            unmatched += len(ordered)
            continue
        for result, served_request in zip(ordered, served):
            if result.ok and result.ttft_s is not None:
                errors_ms.append((result.ttft_s - served_request["ttft_truth_s"]) * 1000)
    absolute = [abs(e) for e in errors_ms] or [float("nan")]
    ok = sum(1 for _, r in records if r.ok)
    lags = [r.loop_lag_s for _, r in records if r.loop_lag_s is not None] or [float("nan")]
    probes = len(records)
    return {
        "concurrency": concurrency,
        "probes": probes,
        "elapsed_s": round(elapsed, 2),
        "probes_per_s": round(probes / elapsed, 2) if elapsed else 0.0,
        "ok_share": round(ok / probes, 4) if probes else 0.0,
        "matched": len(errors_ms),
        "unmatched": unmatched,
        "error_ms_median": round(statistics.median(errors_ms), 3) if errors_ms else float("nan"),
        "abs_error_ms_p50": round(percentile(absolute, 50), 3),
        "abs_error_ms_p99": round(percentile(absolute, 99), 3),
        "abs_error_ms_max": round(max(absolute), 3),
        "loop_lag_ms_p99": round(percentile(lags, 99) * 1000, 2),
        "loop_lag_ms_max": round(max(lags) * 1000, 2),
        "cpu_ms_per_probe": round(1000 * cpu / probes, 3) if probes else float("nan"),
        "process_cpu_share": round(cpu / elapsed, 3) if elapsed else 0.0,
        "server_cpu_share": round(server_cpu / elapsed, 3) if elapsed else 0.0,
        "recompute_ms_max": round(1000 * max(recompute_s), 1) if recompute_s else None,
        "load_1m_before": round(load, 2),
    }


def verdict(levels: list[dict[str, Any]]) -> dict[str, Any]:
    good = [lv for lv in levels if lv["abs_error_ms_p99"] <= TARGET_ERROR_P99_MS
            and lv["ok_share"] >= MIN_OK_SHARE and lv["probes"] >= MIN_PROBES_PER_LEVEL]
    best = max(good, key=lambda lv: lv["probes_per_s"], default=None)
    rate = best["probes_per_s"] if best else 0.0
    # CPU-bound ceiling of one process (one core for the event loop), for context only.
    cpu_per_probe = min((lv["cpu_ms_per_probe"] for lv in levels if lv["probes"]), default=float("nan"))
    return {
        "sustainable_probes_per_s": rate,
        "at_concurrency": best["concurrency"] if best else None,
        "endpoints_per_30min_cycle": int(rate * CYCLE_S),
        "cpu_bound_ceiling_probes_per_s": round(1000 / cpu_per_probe, 1) if cpu_per_probe == cpu_per_probe else None,
        "pass": rate * CYCLE_S >= TARGET_ENDPOINTS,
    }


def render(report: dict[str, Any]) -> str:
    cfg, v = report["config"], report["verdict"]
    out = [f"# Capacity benchmark ({report['machine']['at']})", "",
           f"Stream: first token {cfg['ttft']} s, {cfg['tokens']} tokens {cfg['gap']} s apart; catalog "
           f"{cfg['catalog_endpoints']:,} endpoints; {cfg['level_duration']:g} s per level; "
           f"gc.freeze after start-up: {'yes' if cfg['gc_freeze'] else 'no'}; "
           f"{report['machine']['cpus']} CPUs, load average before {report['machine']['load_average_1_5_15']}.", ""]
    rows = [[lv["concurrency"], lv["probes"], lv["probes_per_s"], lv["ok_share"], lv["error_ms_median"],
             lv["abs_error_ms_p99"], lv["abs_error_ms_max"], lv["loop_lag_ms_max"], lv["cpu_ms_per_probe"],
             lv["process_cpu_share"], lv["server_cpu_share"], lv["recompute_ms_max"],
             f"{lv['gc_full_passes']} / {lv['gc_full_pass_ms_max']:g}", lv["load_1m_before"],
             "yes" if lv["abs_error_ms_p99"] <= TARGET_ERROR_P99_MS and lv["ok_share"] >= MIN_OK_SHARE else "no"]
            for lv in report["levels"]]
    out.append(markdown_table(
        ["in flight", "probes", "probes/s", "ok", "err median ms", "|err| p99 ms", "|err| max ms",
         "loop lag max ms", "CPU ms/probe", "monitor CPU", "server CPU", "recompute max ms",
         "full GC passes / max ms", "load 1m",
         "p99 <= 5 ms"], rows))
    out += ["", markdown_table(
        ["sustainable probes/s (p99 <= 5 ms)", "endpoints per 30 min", "target", "result",
         "CPU-bound ceiling probes/s"],
        [[v["sustainable_probes_per_s"], f"{v['endpoints_per_30min_cycle']:,}", f">= {TARGET_ENDPOINTS:,}",
          "PASS" if v["pass"] else "FAIL", v["cpu_bound_ceiling_probes_per_s"]]])]
    out += ["", "Method: C closed-loop workers drive the real Runner (probe -> metrics -> live figures -> "
            "SQLite) in one process, with the service's live-figures recompute loop running (it wakes "
            "whenever a model's figures change with time); the stream server runs in its own process "
            "and stamps ground truth (kernel arrival of the request, send time of each token frame). err = measured TTFT - true TTFT. Sustainable = the best probes/s "
            f"among levels with |err| p99 <= {TARGET_ERROR_P99_MS:g} ms, >= {MIN_OK_SHARE:.0%} ok and >= "
            f"{MIN_PROBES_PER_LEVEL} probes; endpoints per cycle = that x {CYCLE_S} s. Assumes probes spread "
            "evenly over the cycle, one shared loopback origin (warm connections, no TLS), and 2 cores "
            "shared with the stream server. 'recompute max ms' is the longest pass of the periodic "
            "recompute (wall time; a sliced pass includes its yields)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="8,16,32,64,128,256",
                        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                        help="probes in flight, one level after another")
    parser.add_argument("--level-duration", type=float, default=15.0)
    parser.add_argument("--ttft", type=float, default=0.25)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--catalog-endpoints", type=int, default=10_002)
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="skip the gc.freeze() the service does after start-up (to see GC pauses)")
    parser.add_argument("--name", default="capacity")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"benchmark": "capacity", "machine": machine_info(),
                              "config": {k: v for k, v in vars(args).items() if k != "results_dir"},
                              "method": __doc__}
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as directory:
        work = Path(directory)
        logging.basicConfig(level=logging.INFO, filename=str(work / "monitor.log"),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)
        with TruthServer(ttft_s=args.ttft, gap_s=args.gap, tokens=args.tokens,
                         log_path=work / "stream.log") as server:
            log(f"stream server pid {server.pid} at {server.base_url}")
            report["levels"] = asyncio.run(run_levels(args, server, work))
    report["verdict"] = verdict(report["levels"])
    report["finite"] = all_finite([{k: v for k, v in lv.items() if k != "recompute_ms_max"} for lv in report["levels"]])
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
