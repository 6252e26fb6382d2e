"""Self-test benchmark: the monitor's own TTFT error (`llm_monitor_selftest_ttft_error_seconds`)
at idle and under the API overload scenario of bench/api_load.py (part 2).

    python -m bench.selftest                                   # full run (~2 min)
    python -m bench.selftest --idle 10 --load 10 --recovery 10 # smoke

`python -m monitor run` serves a catalog of M models x P endpoints (default 2,000 x 3 every 300 s:
api_load's part 2 rate of 20 probes/s, without its stored history) that probe a loopback
OpenAI-style stream server (bench/truth_server.py, its own process) every `--interval` seconds,
with the self-test every `--selftest-interval` seconds (LLM_MONITOR_SELFTEST_INTERVAL_S; the
service default is 300 s, shortened here to get many readings) and /metrics uncached. After
`--settle` seconds, three phases:
1. idle: nothing but the scheduled probes;
2. load: `wrk` holds `--connections` connections (500, as api_load's part 2) rotating over every
   model's `/v1/models/{id}/live`, in the same process as the probes;
3. recovery: the load stopped.
The monitor runs as `python -m bench.selftest monitor run ...` (llm-monitor with its
`monitor.selftest` logger at DEBUG), so every self-test reading is in its log with a timestamp;
scraping /metrics would itself load the process (6,000 endpoints' series). For each phase:
readings, error median / p95 / max, the share above the threshold
(LLM_MONITOR_SELFTEST_MAX_ERROR_S, 0.05 s by default), and the probes that started in it and
how many were stored `suspect`.

Results: bench/results/selftest.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.dataset import catalog_yaml, model_id_of
from bench.processes import Child, wait_http_ok
from bench.results import log, machine_info, markdown_table, publish
from bench.stats import percentile
from bench.truth_server import TruthServer
from bench.wrk import run_wrk, write_wrk_files
from monitor.testing.stream_server import unused_port

# The monitor's log lines (llm_monitor.cli.configure_logging's format) with a self-test reading.
_READING = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG monitor\.selftest: self-test reading: ok=(\w+) error_s=(\S+)", re.M)


def run_monitor(argv: list[str]) -> int:
    """`python -m bench.selftest monitor ARGS`: `llm-monitor ARGS` with every self-test reading
    logged (the monitor.selftest logger at DEBUG; the rest at the configured level)."""
    import logging

    from llm_monitor.cli import main as llm_monitor_main

    logging.getLogger("monitor.selftest").setLevel(logging.DEBUG)
    return llm_monitor_main(argv)


def readings_from_log(text: str) -> list[tuple[float, bool, float]]:
    """(Unix time, ok, error_s) of every self-test reading in the monitor's log (local time)."""
    out = []
    for stamp, ok, error in _READING.findall(text):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((at, ok == "True", float(error)))
    return out


def probes_from_db(db: Path) -> list[tuple[float, bool]]:
    """(Unix start time, suspect) of every stored probe."""
    out = []
    with sqlite3.connect(db) as connection:
        for started_at, suspect in connection.execute("SELECT started_at, suspect FROM probe_result"):
            moment = datetime.fromisoformat(str(started_at).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            out.append((moment.timestamp(), bool(suspect)))
    return out


def summarize(errors_s: list[float], threshold_s: float) -> dict[str, Any]:
    if not errors_s:
        return {"readings": 0}
    ms = [e * 1000 for e in errors_s]
    return {
        "readings": len(ms),
        "error_ms_median": round(statistics.median(ms), 2),
        "error_ms_p95": round(percentile(ms, 95), 2),
        "error_ms_max": round(max(ms), 2),
        "share_above_threshold": round(sum(e > threshold_s for e in errors_s) / len(errors_s), 3),
    }


def render(report: dict[str, Any]) -> str:
    rows = []
    for phase in ("idle", "load", "recovery"):
        s = report["phases"].get(phase, {})
        rows.append([
            phase, s.get("readings", 0), s.get("error_ms_median", "n/a"), s.get("error_ms_p95", "n/a"),
            s.get("error_ms_max", "n/a"), s.get("share_above_threshold", "n/a"),
            s.get("suspect_probes", 0), s.get("probes", 0),
        ])
    table = markdown_table(
        ["phase", "self-test readings", "error median ms", "error p95 ms", "error max ms",
         f"share > {report['config']['max_error_s'] * 1000:g} ms", "suspect probes", "probes"],
        rows,
    )
    wrk = report.get("wrk", {})
    return (
        "# Self-test under load\n\n"
        f"Command: `{report['command']}`\n\n{table}\n\n"
        f"Load: wrk {report['config']['connections']} connections for {report['config']['load_s']:g} s on "
        f"`/v1/models/{{id}}/live`: {wrk.get('requests', 'n/a')} requests, {wrk.get('rps', 'n/a')} req/s, "
        f"p99 {wrk.get('p99_ms', 'n/a')} ms. Probing: {report['config']['endpoints']} endpoints every "
        f"{report['config']['interval_s']:g} s; self-test every {report['config']['selftest_interval_s']:g} s.\n"
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["monitor"]:
        return run_monitor(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # api_load's part 2: 2,000 models x 3 providers probed every 300 s (20 probes/s).
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--interval", type=float, default=300.0, help="probe interval of every endpoint (s)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after start-up before the idle phase")
    parser.add_argument("--selftest-interval", type=float, default=1.0)
    parser.add_argument("--max-error", type=float, default=0.05, help="LLM_MONITOR_SELFTEST_MAX_ERROR_S")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds")
    parser.add_argument("--load", type=float, default=40.0, help="seconds")
    parser.add_argument("--recovery", type=float, default=30.0, help="seconds")
    parser.add_argument("--name", default="selftest")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    report: dict[str, Any] = {
        "benchmark": "selftest",
        "command": " ".join(["python -m bench.selftest", *argv]),
        "machine": machine_info(),
        "config": {
            "models": args.models, "providers": args.providers, "endpoints": args.models * args.providers,
            "interval_s": args.interval, "selftest_interval_s": args.selftest_interval,
            "max_error_s": args.max_error, "connections": args.connections,
            "settle_s": args.settle, "idle_s": args.idle, "load_s": args.load, "recovery_s": args.recovery,
        },
        "method": __doc__,
    }
    paths = [f"/v1/models/{model_id_of(m)}/live" for m in range(args.models)]
    with tempfile.TemporaryDirectory(prefix="bench-selftest-") as directory:
        work = Path(directory)
        plain, _validating, path_file = write_wrk_files(work, paths)
        with TruthServer(ttft_s=0.2, gap_s=0.01, tokens=30, log_path=work / "stream.log") as stream:
            config = work / "catalog.yaml"
            config.write_text(catalog_yaml(args.models, args.providers, base_url=stream.base_url))
            port = unused_port()
            base = f"http://127.0.0.1:{port}"
            env = {
                "LLM_MONITOR_SELFTEST_INTERVAL_S": f"{args.selftest_interval:g}",
                "LLM_MONITOR_SELFTEST_MAX_ERROR_S": f"{args.max_error:g}",
            }
            db = work / "monitor.db"
            argv_monitor = [sys.executable, "-m", "bench.selftest", "monitor", "run", "--config", str(config),
                            "--db", f"sqlite:///{db}", "--host", "127.0.0.1",
                            "--port", str(port), "--interval", f"{args.interval:g}"]
            monitor_log = work / "monitor.log"
            with Child(argv_monitor, env=env, log_path=monitor_log) as monitor:
                wait_http_ok(f"{base}/healthz", timeout_s=600, child=monitor)
                log(f"settling for {args.settle:g} s")
                time.sleep(args.settle)
                bounds = {"idle": [time.time()]}
                log(f"idle for {args.idle:g} s")
                time.sleep(args.idle)
                bounds["idle"].append(time.time())
                bounds["load"] = [time.time()]
                log(f"wrk {args.connections} connections for {args.load:g} s")
                wrk = run_wrk(base, connections=args.connections, duration_s=args.load, script=plain,
                              paths_file=path_file, threads=args.threads, timeout_s=10.0)
                bounds["load"].append(time.time())
                bounds["recovery"] = [time.time()]
                log(f"recovery for {args.recovery:g} s")
                time.sleep(args.recovery)
                bounds["recovery"].append(time.time())
                monitor.stop()  # flushes the buffered probes to the database
                text = monitor_log.read_text(errors="replace")
                report["monitor_log_selftest_lines"] = [
                    line for line in text.splitlines() if "self-test" in line and "reading:" not in line
                ][-20:]
                readings = readings_from_log(text)
                probes = probes_from_db(db)
    report["wrk"] = {k: getattr(wrk, k) for k in ("requests", "rps", "p50_ms", "p99_ms", "max_ms", "duration_s")}
    phases = {}
    for phase, (begin, end) in bounds.items():
        inside = [r for r in readings if begin <= r[0] < end]
        summary = summarize([error for _, _, error in inside], args.max_error)
        summary["failed_readings"] = sum(1 for _, ok, _ in inside if not ok)
        started = [suspect for at, suspect in probes if begin <= at < end]
        summary["probes"] = len(started)
        summary["suspect_probes"] = sum(started)
        phases[phase] = summary
    report["phases"] = phases
    report["readings_ms"] = {
        phase: [round(e * 1000, 3) for at, _, e in readings if begin <= at < end] for phase, (begin, end) in bounds.items()
    }
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
