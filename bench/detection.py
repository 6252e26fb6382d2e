"""Time to detect an outage at the default cadence, with time scaled down but probes on real sockets.

Default cadence: scheduled probes every 30 min, liveness checks every 1 min, confirmation probes
1 min apart, 2 provider failures in a row = down. Time is scaled (default 1 minute -> 0.2 s), so
probes run every 6 s and liveness every 0.2 s; everything else is the service's own code: the real
`Runner` (the probe engine over loopback TCP to a `StreamServer`), `ConfirmManager` and
`LivenessChecker`, one set per location. Only the scheduled probes' timing is driven here, so each
outage can start at a uniformly random phase of the probe cycle (and of the liveness cycle).

Per trial: a fresh endpoint; liveness runs for a short warm-up; the outage starts; location i's
next scheduled probe comes `(i * interval / L - u) mod interval` later, u uniform in [0, interval)
(L staggered locations). Outage kinds:
- `hard`: the provider's port stops answering (the server is stopped: connection refused);
- `inference`: `/models` still answers 200, chat answers HTTP 500.
Measured, in (scaled) minutes from the outage start: declared down by the first location (its
`confirm_failures`-th provider failure in a row) and by a quorum of locations (majority); and the
alert firing, modelled as the quorum time plus a Prometheus scrape and a rule evaluation (each
uniform in [0, 15 s], the shipped prometheus.yml; LLMEndpointDown has no `for:`).

    python -m bench.detection                 # 20 outages per case, writes bench/results/detection.*
    python -m bench.detection --trials 5 --scale 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from prometheus_client import CollectorRegistry

from bench.results import log, machine_info, markdown_table, publish
from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.confirm import ConfirmManager
from monitor.coordination import LocalClaims
from monitor.live import LiveFigures
from monitor.liveness import LivenessChecker
from monitor.metrics import build_metrics
from monitor.probes.base import NOT_PROVIDER_FAILURES, ProbeResult
from monitor.probes.meters import LoopLagMonitor
from monitor.probes.transport import build_client
from monitor.runner import ResultBuffer, Runner
from monitor.store import InMemoryStore
from monitor.testing.stream_server import (
    ScriptedResponse, StreamServer, html_response, json_response, openai_stream, sse_stream_response,
)

MODEL = "bench/detection"
INTERVAL_MIN = 30.0
LIVENESS_MIN = 1.0
CONFIRM_MIN = 1.0
CONFIRM_FAILURES = 2
SCRAPE_S = 15.0
EVALUATION_S = 15.0
WARMUP_LIVENESS_CHECKS = 3
CASES: tuple[tuple[str, int], ...] = (("hard", 1), ("hard", 3), ("inference", 1), ("inference", 3))


class Provider:
    def __init__(self) -> None:
        self.server = StreamServer().start()
        self.chat_fails = False
        self.server.route("GET", "/v1/models", json_response(200, {"data": []}))
        self.server.route("POST", "/v1/chat/completions", self._chat)

    def _chat(self, _request: Any) -> ScriptedResponse:
        if self.chat_fails:
            return html_response(500, "<html>inference down</html>")
        return sse_stream_response(openai_stream(ttft_s=0.0, gap_s=0.0, n_tokens=2))


@dataclass
class Location:
    name: str
    runner: Runner
    confirm: ConfirmManager
    liveness: LivenessChecker
    clients: tuple[Any, ...]  # the probes' and the liveness checks' HTTP clients
    failures: int = 0
    down_at: float | None = None
    triggers: list[str] = field(default_factory=list)  # of the failing run


@dataclass
class Trial:
    kind: str
    locations: int
    first_down_min: float | None
    quorum_down_min: float | None
    alert_min: float | None
    probes: int  # probes of the failing run up to the quorum decision, all locations
    worst_loop_lag_ms: float | None  # the benchmark's event loop, outage start to decision
    liveness_found: bool  # the first location's run began with a confirmation probe


def endpoint_of(provider: str, base_url: str, scale_s: float) -> EndpointConfig:
    return EndpointConfig(
        provider=provider, protocol="openai", base_url=base_url, model="x",
        interval_s=INTERVAL_MIN * scale_s, timeout_s=5.0, max_tokens=8,
        liveness_interval_s=LIVENESS_MIN * scale_s, confirm_interval_s=CONFIRM_MIN * scale_s,
        confirm_failures=CONFIRM_FAILURES,
    )


async def run_trial(kind: str, n_locations: int, index: int, scale_s: float, rng: random.Random,
                    lag: LoopLagMonitor) -> Trial:
    provider = Provider()
    endpoint = endpoint_of(f"{kind}-{n_locations}-{index}", f"{provider.server.url}/v1", scale_s)
    model = ModelConfig(id=MODEL, name="Detection", endpoints=(endpoint,))
    catalog = Catalog(models=(model,))
    loop = asyncio.get_running_loop()
    outage_at: float | None = None
    locations: list[Location] = []

    def listener_for(location: Location):
        def on_result(_model: ModelConfig, _endpoint: EndpointConfig, result: ProbeResult) -> None:
            if outage_at is None or location.down_at is not None:
                return
            if result.ok:
                location.failures, location.triggers = 0, []
            elif result.error_kind not in NOT_PROVIDER_FAILURES:
                location.failures += 1
                location.triggers.append(str(result.trigger))
                if location.failures >= endpoint.confirm_failures:
                    location.down_at = loop.time()
        return on_result

    for i in range(n_locations):
        registry = CollectorRegistry()
        metrics = build_metrics(registry)
        live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: e.interval_s)
        buffer = ResultBuffer(InMemoryStore(), metrics, capacity=10_000)
        client = build_client(max_connections=16, pool_shards=1)
        runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={},
                        max_concurrent=8, location=f"loc{i}")
        confirm = ConfirmManager(runner.probe_endpoint, metrics, LocalClaims(), location=f"loc{i}")
        liveness_client = build_client(max_connections=16, pool_shards=1)
        liveness = LivenessChecker(liveness_client, metrics, environ={}, spread_first=False,
                                   on_failure=confirm.on_liveness_failure,
                                   on_recovered=confirm.on_liveness_recovered)
        location = Location(f"loc{i}", runner, confirm, liveness, (client, liveness_client))
        runner.add_listener(confirm.on_result)
        runner.add_listener(listener_for(location))
        confirm.start(catalog)
        locations.append(location)

    async def start_liveness(location: Location) -> None:
        await asyncio.sleep(rng.uniform(0, endpoint.liveness_interval_s or 0))  # a random phase
        location.liveness.start(catalog)

    async def scheduled(location: Location, first_in_s: float) -> None:
        await asyncio.sleep(first_in_s)
        while True:
            started = loop.time()
            await location.runner.probe_endpoint(model, endpoint)
            await asyncio.sleep(max(0.0, endpoint.interval_s - (loop.time() - started)))

    tasks = [asyncio.create_task(start_liveness(location)) for location in locations]
    quorum = endpoint.quorum_of(n_locations)
    try:
        await asyncio.sleep((WARMUP_LIVENESS_CHECKS + 1) * (endpoint.liveness_interval_s or 0))
        u = rng.uniform(0, endpoint.interval_s)
        if kind == "hard":
            provider.server.stop()
        else:
            provider.chat_fails = True
        outage_at = loop.time()
        outage_ns = time.perf_counter_ns()
        for i, location in enumerate(locations):
            tasks.append(asyncio.create_task(
                scheduled(location, (i * endpoint.interval_s / n_locations - u) % endpoint.interval_s)))
        deadline = outage_at + 2.5 * endpoint.interval_s
        while loop.time() < deadline:
            if sum(location.down_at is not None for location in locations) >= quorum:
                break
            await asyncio.sleep(0.002)
        worst_lag = lag.worst_lag_s(outage_ns)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for location in locations:
            await location.liveness.shutdown()
            await location.confirm.shutdown()
            for client in location.clients:
                await client.aclose()
        provider.server.stop()

    assert outage_at is not None
    downs = sorted(location.down_at - outage_at for location in locations if location.down_at is not None)
    first = downs[0] / scale_s if downs else None
    quorum_down = downs[quorum - 1] / scale_s if len(downs) >= quorum else None
    alert = None
    if quorum_down is not None:
        alert = quorum_down + (rng.uniform(0, SCRAPE_S) + rng.uniform(0, EVALUATION_S)) / 60.0
    earliest = min((loc for loc in locations if loc.down_at is not None), key=lambda loc: loc.down_at or 0.0,
                   default=None)
    return Trial(
        kind=kind, locations=n_locations,
        first_down_min=first, quorum_down_min=quorum_down, alert_min=alert,
        probes=sum(len(location.triggers) for location in locations),
        liveness_found=bool(earliest and earliest.triggers and earliest.triggers[0] == "confirm"),
        worst_loop_lag_ms=None if worst_lag is None else round(worst_lag * 1000, 1),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(trials: list[Trial]) -> dict[str, Any]:
    def stats(values: list[float | None]) -> dict[str, float | int]:
        known = [v for v in values if v is not None]
        return {
            "p50": round(percentile(known, 0.5), 2), "p95": round(percentile(known, 0.95), 2),
            "max": round(max(known), 2) if known else float("nan"),
            "mean": round(statistics.fmean(known), 2) if known else float("nan"),
            "missed": len(values) - len(known),
        }

    return {
        "trials": len(trials),
        "first_location_down_min": stats([t.first_down_min for t in trials]),
        "quorum_down_min": stats([t.quorum_down_min for t in trials]),
        "alert_min": stats([t.alert_min for t in trials]),
        "probes_per_detection_mean": round(statistics.fmean(t.probes for t in trials), 2),
        "found_by_liveness": sum(t.liveness_found for t in trials),
        "worst_loop_lag_ms": max((t.worst_loop_lag_ms or 0.0) for t in trials),
    }


def expected_min(kind: str, n_locations: int) -> str:
    if kind == "hard":
        return f"~{LIVENESS_MIN / 2 + CONFIRM_MIN:g} (p50) / ~{LIVENESS_MIN * 0.95 + CONFIRM_MIN:g} (p95)"
    step = INTERVAL_MIN / n_locations
    return f"~{step / 2 + CONFIRM_MIN:g} / ~{step * 0.95 + CONFIRM_MIN:g} (first location)"


def render(report: dict[str, Any]) -> str:
    rows = []
    for case in report["cases"]:
        s = case["summary"]
        rows.append([
            case["kind"], case["locations"], s["trials"],
            s["first_location_down_min"]["p50"], s["first_location_down_min"]["p95"],
            s["quorum_down_min"]["p50"], s["quorum_down_min"]["p95"], s["quorum_down_min"]["max"],
            s["alert_min"]["p50"], s["alert_min"]["p95"],
            s["quorum_down_min"]["missed"], s["found_by_liveness"], s["probes_per_detection_mean"],
            s["worst_loop_lag_ms"], expected_min(case["kind"], case["locations"]),
        ])
    hard = next((c for c in report["cases"] if c["kind"] == "hard" and c["locations"] == 1), None)
    verdict = ""
    if hard is not None:
        s = hard["summary"]["quorum_down_min"]
        ok = s["p50"] <= 2.0 and s["p95"] <= 3.0 and s["missed"] == 0
        verdict = (f"\nHard outage, one location: p50 {s['p50']} min (target <= 2), p95 {s['p95']} min "
                   f"(target <= 3): {'PASS' if ok else 'FAIL'}.\n")
    m = report["machine"]
    return "\n".join([
        f"# Time to detect ({m['at']})",
        "",
        f"Cadence: probes every {INTERVAL_MIN:g} min, liveness every {LIVENESS_MIN:g} min, confirmations "
        f"{CONFIRM_MIN:g} min apart, {CONFIRM_FAILURES} failures in a row = down; time scaled 1 min -> "
        f"{report['scale_s_per_min']} s; {m['cpus']} CPUs, load average before {m['load_average_1_5_15']}.",
        "",
        markdown_table(
            ["outage", "locations", "trials", "first loc. down p50 min", "first loc. down p95 min",
             "down (quorum) p50 min", "down (quorum) p95 min", "down max min", "alert p50 min",
             "alert p95 min", "not detected", "found by liveness", "probes per detection",
             "worst loop lag ms", "expected (first location)"],
            rows,
        ),
        verdict,
        "Method: real Runner + ConfirmManager + LivenessChecker per location over loopback TCP to a "
        "StreamServer; only the scheduled probes' timing is driven by the benchmark. Each outage starts at "
        "a uniformly random phase of the probe cycle and of the liveness cycle. `hard` = the port refuses "
        "connections; `inference` = /models answers 200, chat HTTP 500. Down = the location's "
        f"{CONFIRM_FAILURES}nd provider failure in a row; quorum = a majority of locations (2 of 3); locations "
        "do not share confirmations (each confirms on its own probes and liveness). Alert = quorum down + "
        f"scrape (U[0,{SCRAPE_S:g} s]) + rule evaluation (U[0,{EVALUATION_S:g} s]), LLMEndpointDown has no "
        "`for:`. Measured times include each probe's own duration on loopback, scaled up with the rest "
        "(a few ms real = a few scaled seconds), so they err on the slow side; so does event-loop lag on a "
        f"loaded machine: at {report['scale_s_per_min']:g} s per minute, 10 ms of lag is "
        f"{0.01 / report['scale_s_per_min'] * 60:g} scaled seconds (worst lag per case in its column).",
    ])


async def run(trials: int, scale_s: float, seed: int, cases: Sequence[tuple[str, int]]) -> dict[str, Any]:
    rng = random.Random(seed)
    lag = LoopLagMonitor(interval_s=0.005, history_s=120)
    lag.start()
    out = []
    for kind, n_locations in cases:
        results = []
        started = time.perf_counter()
        for index in range(trials):
            results.append(await run_trial(kind, n_locations, index, scale_s, rng, lag))
        summary = summarize(results)
        log(f"{kind} x{n_locations}: quorum down p50 {summary['quorum_down_min']['p50']} min, p95 "
            f"{summary['quorum_down_min']['p95']} min ({time.perf_counter() - started:.1f} s)")
        out.append({"kind": kind, "locations": n_locations, "summary": summary,
                    "trials": [t.__dict__ for t in results]})
    await lag.stop()
    return {"scale_s_per_min": scale_s, "seed": seed, "cases": out}


def parse_cases(text: str) -> list[tuple[str, int]]:
    cases = []
    for part in text.split(","):
        kind, _, count = part.strip().partition(":")
        if kind not in ("hard", "inference") or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"bad case {part!r}: expected hard:N or inference:N")
        cases.append((kind, int(count)))
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="outages per case (default 20)")
    parser.add_argument("--scale", type=float, default=0.2, help="real seconds per scaled minute (default 0.2)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cases", type=parse_cases, default=list(CASES),
                        help="comma-separated kind:locations (default hard:1,hard:3,inference:1,inference:3)")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    logging.getLogger("monitor").setLevel(logging.ERROR)  # every probe and state change logs a line
    report: dict[str, Any] = {"machine": machine_info()}
    report.update(asyncio.run(run(args.trials, args.scale, args.seed, args.cases)))
    publish(report, render, "detection", args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
