"""Coordination benchmark: what HA scheduling costs the database, and whether it keeps its promise.

    python -m bench.coordination                      # both parts (~5 min)
    python -m bench.coordination --part cost --endpoints 2000 --duration 20   # smaller

Part `cost`: 3 scheduler processes (one location, the worst case: 3 claimants per slot) over
10,000 endpoints on one fresh PostgreSQL database (`ha_bench_<random>`, dropped afterwards).
Each worker is the real `ProbeScheduler` + `PostgresClaims` + `Runner` + `ResultBuffer` +
`SQLStore`; only the HTTP probe is faked (a 20 ms sleep returning an ok result). Time is scaled:
the interval is --interval (default 60 s) and the phase grain 1/1800 of it, so each fire time
holds 10,000 / 1800 = 5.6 endpoints, as at the default 30-minute cadence with 1-second grains.
The claims' connection goes through a counting TCP proxy in this process: a round trip is one
turn of the conversation (client bytes sent after server bytes came back). The store writes
results on its own direct connections (their cost is not coordination, and is reported apart
from pg_stat_database). Figures: round trips per probe (claims + take-over sweeps + prune),
claim latency per fire as the scheduler waits for it (p50/p95/max, through the proxy),
database transactions per probe, duplicates and missed slots.

Part `failover`: 3 workers over 50 endpoints with 3-second slots and 300 ms fake probes, for
1,000+ (endpoint, slot) pairs; one worker is SIGKILLed a third of the way in (its in-flight
probes are lost). Duplicates (two stored probes in one slot), missed slots (none), and the
longest failover gap: for the slots whose first winner was killed, how late in the slot the
taken-over probe started (lease = 1 s timeout + 0.2 s margin, plus one sweep).

Results: bench/results/coordination.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = dict(host="127.0.0.1", port=5432, user="postgres")
ENDPOINTS_PER_MODEL = 10


# ---------------------------------------------------------------------------------------------
# Round-trip counting proxy (runs in a thread of the parent)
# ---------------------------------------------------------------------------------------------


class CountingProxy:
    """TCP proxy to PostgreSQL that counts conversation turns per connection."""

    def __init__(self, target_port: int = PG["port"]) -> None:
        self.target_port = target_port
        self.round_trips = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "CountingProxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    def reset(self) -> int:
        count, self.round_trips = self.round_trips, 0
        return count

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await server.serve_forever()

        self._loop.run_until_complete(main())

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        state = {"awaiting_reply": False}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_client: bool) -> None:
            try:
                while data := await src.read(65536):
                    if from_client and not state["awaiting_reply"]:
                        self.round_trips += 1
                        state["awaiting_reply"] = True
                    elif not from_client:
                        state["awaiting_reply"] = False
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


# ---------------------------------------------------------------------------------------------
# Worker: one scheduler process with a fake probe
# ---------------------------------------------------------------------------------------------


def catalog_text(endpoints: int, timeout_s: str) -> str:
    lines = ["models:"]
    per_model = ENDPOINTS_PER_MODEL
    for m in range((endpoints + per_model - 1) // per_model):
        lines += [f"  - id: bench/m{m}", f"    name: M{m}", "    endpoints:"]
        for e in range(per_model):
            if m * per_model + e >= endpoints:
                break
            lines.append(f"      - {{provider: P{e}, protocol: openai, base_url: 'http://127.0.0.1:9/v1', "
                         f"model: x, timeout: {timeout_s}}}")
    return "\n".join(lines) + "\n"


async def worker(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry

    import monitor.coordination as coordination
    from monitor.catalog import parse_catalog
    from monitor.live import LiveFigures
    from monitor.metrics import build_metrics
    from monitor.probes.base import ProbeResult, TokenCountSource
    from monitor.runner import ResultBuffer, Runner
    from monitor.scheduler import ProbeScheduler
    from monitor.store import normalize_database_url, open_store
    from monitor.store.database import create_engine

    coordination.PHASE_GRAINS_PER_INTERVAL = args.grains  # time scaling: see the module docstring
    catalog = parse_catalog(catalog_text(args.endpoints, args.timeout), source="bench")
    store = await open_store(args.db, migrate=False)
    claims_engine = create_engine(normalize_database_url(args.claims_db))
    latencies: list[float] = []

    warm_after = time.perf_counter() + args.warmup  # the other workers may still be starting

    class TimedClaims(coordination.PostgresClaims):
        async def claim(self, *a: Any, **kw: Any) -> bool:
            started = time.perf_counter()
            try:
                return await super().claim(*a, **kw)
            finally:
                if started >= warm_after:
                    latencies.append(time.perf_counter() - started)

    claims = TimedClaims(claims_engine, owner=f"{args.name}:{os.getpid()}")
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    interval_of = lambda endpoint: args.interval  # noqa: E731
    live = LiveFigures(catalog, window_s=3600, interval_of=interval_of)
    buffer = ResultBuffer(store, metrics, capacity=100_000)
    probe_s = args.probe_ms / 1000

    async def fake_probe(client: Any, target: Any, *, lag_monitor: Any = None) -> ProbeResult:
        started = datetime.now(timezone.utc)
        await asyncio.sleep(probe_s)
        return ProbeResult(ok=True, error_kind=None, error=None, http_status=200, started_at=started,
                           ttft_s=0.01, connect_s=0.001, total_s=probe_s, output_tokens=8,
                           token_count_source=TokenCountSource.USAGE, tokens_per_second=100.0)

    runner = Runner(client=None, metrics=metrics, live=live, buffer=buffer, environ={},  # type: ignore[arg-type]
                    max_concurrent=10_000, probe_fn=fake_probe, location=args.location)
    scheduler = ProbeScheduler(runner, metrics, interval_of=interval_of, claims=claims,
                               location=args.location, lease_margin_s=args.lease_margin)
    writer = asyncio.create_task(buffer.run())
    cpu0 = time.process_time()
    scheduler.start(catalog, {})
    print("started", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except TimeoutError:
        pass
    await scheduler.shutdown(5)
    await buffer.flush()
    writer.cancel()
    cpu = time.process_time() - cpu0
    outcomes = {o: registry.get_sample_value("llm_monitor_slot_claims_total", {"outcome": o}) or 0
                for o in ("won", "claimed_elsewhere", "taken_over", "unavailable")}
    await claims.close()
    await claims_engine.dispose()
    await store.close()
    Path(args.out).write_text(json.dumps({
        "name": args.name, "pid": os.getpid(), "claims": len(latencies), "statements": claims.statements,
        "latencies_s": sorted(latencies), "outcomes": outcomes, "cpu_s": cpu,
    }))


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------


async def _admin(sql: str) -> Any:
    import asyncpg

    connection = await asyncpg.connect(**PG, database="test", timeout=5)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


def url(database: str, port: int = PG["port"]) -> str:
    return f"postgresql://{PG['user']}@{PG['host']}:{port}/{database}"


async def fetch(database: str, sql: str) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(**PG, database=database, timeout=5)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


def start_workers(n: int, database: str, proxy: CountingProxy, tmp: Path, *, endpoints: int, interval: float,
                  duration: float, grains: int, probe_ms: float, timeout: str, lease_margin: float,
                  warmup: float = 0.0, direct: bool = False) -> list[Any]:
    import subprocess

    workers = []
    for i in range(n):
        out = tmp / f"worker{i}.json"
        argv = [sys.executable, "-m", "bench.coordination", "--worker", "--name", f"w{i}", "--out", str(out),
                "--db", url(database), "--claims-db", url(database, proxy.port), "--endpoints", str(endpoints),
                "--interval", str(interval), "--duration", str(duration), "--grains", str(grains),
                "--probe-ms", str(probe_ms), "--timeout", timeout, "--lease-margin", str(lease_margin),
                "--warmup", str(warmup)]
        if direct:
            argv[argv.index("--claims-db") + 1] = url(database)
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp / f"worker{i}.log", "w"),
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
        workers.append((proc, out))
    for proc, _ in workers:
        line = proc.stdout.readline()
        if "started" not in line:
            raise RuntimeError(f"worker failed to start: {line!r}")
    return workers


def slot_table(rows: list[Any], interval: float, grains: int, endpoints_keys: list[tuple[str, str]]) -> dict:
    import monitor.coordination as coordination
    from monitor.scheduler import job_id

    coordination.PHASE_GRAINS_PER_INTERVAL = grains
    grids = {key: coordination.SlotGrid.of(job_id(*key), interval) for key in endpoints_keys}
    per_slot: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for row in rows:
        key = (row["model_id"], row["provider"])
        per_slot[key][grids[key].slot_of(row["started_at"])] += 1
    return {"grids": grids, "per_slot": per_slot}


def judge(rows: list[Any], keys: list[tuple[str, str]], interval: float, grains: int,
          begin: datetime, end: datetime) -> dict[str, Any]:
    table = slot_table(rows, interval, grains, keys)
    duplicates = missed = slots = 0
    for key in keys:
        grid = table["grids"][key]
        slot = grid.next_start(begin)
        while slot + timedelta(seconds=interval) <= end:
            count = table["per_slot"][key][slot]
            slots += 1
            missed += count == 0
            duplicates += max(0, count - 1)
            slot += timedelta(seconds=interval)
    duplicates_anywhere = sum(max(0, c - 1) for counter in table["per_slot"].values() for c in counter.values())
    return {"slots_judged": slots, "duplicates": duplicates, "missed": missed,
            "duplicates_anywhere": duplicates_anywhere, "table": table}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def part_cost(args: argparse.Namespace, proxy: CountingProxy, tmp: Path) -> dict[str, Any]:
    database = f"ha_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    try:
        from monitor.store import upgrade

        upgrade(url(database))
        xact0 = asyncio.run(fetch(database, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))[0][0]
        proxy.reset()
        workers = start_workers(3, database, proxy, tmp, endpoints=args.endpoints, interval=args.interval,
                                duration=args.duration, grains=1800, probe_ms=20, timeout="10s", lease_margin=10,
                                warmup=args.interval, direct=args.direct)
        begin = datetime.now(timezone.utc) + timedelta(seconds=args.interval * 0.05)
        reports = []
        for proc, out in workers:
            try:
                proc.wait(timeout=args.duration + 300)
            except Exception:
                proc.kill()
                raise
            reports.append(json.loads(out.read_text()))
        end = min(datetime.now(timezone.utc), begin + timedelta(seconds=args.duration)) - timedelta(seconds=2)
        round_trips = proxy.reset()
        xact1 = asyncio.run(fetch(database, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))[0][0]
        rows = asyncio.run(fetch(database, "SELECT model_id, provider, started_at FROM probe_result"))
        claim_rows = asyncio.run(fetch(database, "SELECT count(*) FROM probe_slot"))[0][0]
        table_bytes = asyncio.run(fetch(database, "SELECT pg_total_relation_size('probe_slot')"))[0][0]
        explain = asyncio.run(fetch(database, "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + TAKE_OVER_EXPLAIN))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    keys = sorted({(r["model_id"], r["provider"]) for r in rows})
    verdict = judge(rows, keys, args.interval, 1800, begin, end)
    latencies = sorted(x for r in reports for x in r["latencies_s"])
    probes = len(rows)
    statements = sum(r["statements"] for r in reports)
    return {
        "schedulers": 3, "endpoints": args.endpoints, "endpoints_probed": len(keys),
        "interval_s": args.interval, "duration_s": args.duration, "grains_per_interval": 1800,
        "endpoints_per_fire_time": args.endpoints / 1800,
        "probes": probes, "claims": sum(r["claims"] for r in reports),
        "outcomes": {o: sum(r["outcomes"][o] for r in reports) for o in reports[0]["outcomes"]},
        "claims_through_proxy": not args.direct,
        "coordination_round_trips": round_trips if not args.direct else None, "coordination_statements": statements,
        "round_trips_per_probe": round_trips / probes if probes and not args.direct else None,
        "statements_per_probe": statements / probes if probes else None,
        "db_transactions_per_probe_all": (xact1 - xact0) / probes if probes else None,
        "claim_latency_ms": {"p50": 1000 * percentile(latencies, 0.5), "p95": 1000 * percentile(latencies, 0.95),
                             "p99": 1000 * percentile(latencies, 0.99), "max": 1000 * latencies[-1] if latencies else None},
        "worker_cpu_s_per_probe_ms": 1000 * sum(r["cpu_s"] for r in reports) / probes if probes else None,
        "slots_judged": verdict["slots_judged"], "duplicates": verdict["duplicates"], "missed": verdict["missed"],
        "duplicates_anywhere": verdict["duplicates_anywhere"],
        "probe_slot_rows_at_end": claim_rows, "probe_slot_bytes_at_end": table_bytes,
        "take_over_sweep_plan": [r[0] for r in explain],
    }


TAKE_OVER_EXPLAIN = """
SELECT s.model_id FROM probe_slot s
WHERE s.location = 'local' AND s.finished_at IS NULL AND s.lease_until < now()
ORDER BY s.lease_until LIMIT 500
"""


def part_failover(args: argparse.Namespace, proxy: CountingProxy, tmp: Path) -> dict[str, Any]:
    database = f"ha_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    interval, endpoints, duration = 3.0, 50, args.failover_duration
    grains = 100
    try:
        from monitor.store import upgrade

        upgrade(url(database))
        workers = start_workers(3, database, proxy, tmp, endpoints=endpoints, interval=interval, duration=duration,
                                grains=grains, probe_ms=300, timeout="1s", lease_margin=0.2)
        begin = datetime.now(timezone.utc) + timedelta(seconds=1)
        time.sleep(duration / 3)
        victim, _ = workers[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = datetime.now(timezone.utc)
        victim.wait(timeout=10)
        for proc, _ in workers[1:]:
            proc.wait(timeout=duration + 60)
        end = datetime.now(timezone.utc) - timedelta(seconds=interval)
        rows = asyncio.run(fetch(database, "SELECT model_id, provider, started_at FROM probe_result"))
        claims = asyncio.run(fetch(database, "SELECT model_id, provider, slot_start, attempts, claimed_by FROM probe_slot"))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    keys = sorted({(r["model_id"], r["provider"]) for r in rows})
    verdict = judge(rows, keys, interval, grains, begin, end)
    taken_over = [c for c in claims if c["attempts"] > 1]
    delays = []
    for claim in taken_over:
        key = (claim["model_id"], claim["provider"])
        starts = [r["started_at"] for r in rows if (r["model_id"], r["provider"]) == key
                  and claim["slot_start"] <= r["started_at"] < claim["slot_start"] + timedelta(seconds=interval)]
        if starts:
            delays.append((min(starts) - claim["slot_start"]).total_seconds())
    # Longest gap between consecutive probes of one endpoint around the kill, in intervals.
    gaps = []
    for key in keys:
        starts = sorted(r["started_at"] for r in rows if (r["model_id"], r["provider"]) == key)
        gaps += [(b - a).total_seconds() for a, b in zip(starts, starts[1:])
                 if a <= killed_at + timedelta(seconds=interval) and b >= killed_at - timedelta(seconds=interval)]
    return {
        "schedulers": 3, "endpoints": endpoints, "interval_s": interval, "probe_s": 0.3,
        "lease_s": 1.2, "killed_after_s": round((killed_at - begin).total_seconds(), 1),
        "slots_judged": verdict["slots_judged"], "duplicates": verdict["duplicates"], "missed": verdict["missed"],
        "duplicates_anywhere": verdict["duplicates_anywhere"],
        "slots_taken_over": len(taken_over),
        "taken_over_probe_start_in_slot_s": {"max": max(delays) if delays else None,
                                             "median": statistics.median(delays) if delays else None},
        "longest_gap_between_probes_around_kill_s": max(gaps) if gaps else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("cost", "failover", "both"), default="both")
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--failover-duration", type=float, default=63.0)
    parser.add_argument("--name", default="coordination")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--out", "--db", "--claims-db", "--timeout"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--grains", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--probe-ms", type=float, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--lease-margin", type=float, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--location", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true",
                        help="cost part: claims connect to PostgreSQL directly (latency without the proxy; "
                             "round trips are then not counted)")
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker(args))
        return 0
    import tempfile

    proxy = CountingProxy().start()
    results: dict[str, Any] = {"command": "python -m bench.coordination " + " ".join(argv or sys.argv[1:]),
                               "method": __doc__, "run_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("cost", "both"):
            results["cost"] = part_cost(args, proxy, Path(tmp))
            print(json.dumps({k: v for k, v in results["cost"].items() if k != "take_over_sweep_plan"}, indent=2))
        if args.part in ("failover", "both"):
            results["failover"] = part_failover(args, proxy, Path(tmp))
            print(json.dumps(results["failover"], indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render_md(results))
    return 0


def _f(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_md(results: dict[str, Any]) -> str:
    lines = [f"# Coordination benchmark ({results['run_at']})", "", f"Command: `{results['command']}`", ""]
    if "cost" in results:
        c = results["cost"]
        lines += [
            f"## Cost: {c['schedulers']} schedulers, {c['endpoints']} endpoints, one location",
            "",
            f"- probes stored: {c['probes']} over {c['duration_s']:.0f} s (interval {c['interval_s']:g} s, "
            f"{c['endpoints_per_fire_time']:.1f} endpoints per fire time as at 30 min / 1 s grains)",
            f"- coordination round trips per probe: **{_f(c['round_trips_per_probe'])}** "
            f"({c['coordination_round_trips']} round trips, {c['coordination_statements']} statements)",
            f"- claim latency per fire (ms{', through the proxy' if c['claims_through_proxy'] else ', direct'}): "
            f"p50 {_f(c['claim_latency_ms']['p50'])}, p95 {_f(c['claim_latency_ms']['p95'])}, "
            f"p99 {_f(c['claim_latency_ms']['p99'])}, max {_f(c['claim_latency_ms']['max'], 1)}",
            f"- all database transactions per probe (claims + result writes): {c['db_transactions_per_probe_all']:.2f}",
            f"- scheduler CPU per probe (all 3 workers, fake probe): {c['worker_cpu_s_per_probe_ms']:.2f} ms",
            f"- duplicates {c['duplicates']} (anywhere {c['duplicates_anywhere']}), missed {c['missed']} of {c['slots_judged']} slots",
            f"- probe_slot at the end: {c['probe_slot_rows_at_end']} rows, {c['probe_slot_bytes_at_end']} bytes",
            "",
        ]
    if "failover" in results:
        f = results["failover"]
        lines += [
            f"## Failover: {f['schedulers']} schedulers, {f['endpoints']} endpoints, {f['interval_s']:g} s slots, SIGKILL after {f['killed_after_s']} s",
            "",
            f"- slots judged {f['slots_judged']}: duplicates {f['duplicates']}, missed {f['missed']}",
            f"- slots taken over after the kill: {f['slots_taken_over']}; their probe started "
            f"{f['taken_over_probe_start_in_slot_s']['max']} s into the slot at most (lease {f['lease_s']} s + sweep)",
            f"- longest gap between two probes of one endpoint around the kill: {f['longest_gap_between_probes_around_kill_s']} s",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
