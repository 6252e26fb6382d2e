"""API load benchmark: `GET /v1/models/{id}/live` served by the real process, driven by `wrk`.

    flock /tmp/llm-monitor-bench.lock python -m bench.api_load            # full run (~4 min)
    python -m bench.api_load --models 20 --rows 10000 --duration 2 ...    # tiny smoke configuration

Part 1 (throughput target): a catalog of M models x P endpoints over a SQLite history of
N stored probes (generated once with the project's migrations, cached under /tmp), served by
`python -m monitor run` exactly as a user starts it (one uvicorn worker, the service's own uvicorn
flags, CORS allowing the catalog's origin as a real deployment would) with the longest interval
the service accepts (7 days), so its first probes are spread over a week: about one per run. The
endpoints point at a loopback provider in its own process (bench.truth_server) that answers, so
the liveness checks between probes succeed: the steady state of healthy providers (with every
endpoint unreachable, the process would be confirming a mass outage instead). Side by side in the same run, a bare Starlette
app on the same uvicorn flags returns a constant JSON body of the same size (the real app's own
response for model 0). `wrk` (a separate process) rotates over every model's `/live` path at C
connections; rounds alternate real / bare so drift hits both. Target: real >= 0.7 x bare
requests/s and p99 < 20 ms. Then, for information, one round of browser-shaped requests (the
allowed `Origin` and `Accept-Encoding: gzip`) against the real server alone.

Part 2 (correctness under load): `monitor run` with the same catalog pointed at a loopback
OpenAI-style stream server (its own process) and a short interval, so the scheduler probes all the
time while `wrk` holds 500 connections. The wrk script checks EVERY response (status 200, body is
the live JSON of a known model); afterwards a Python checker validates full bodies of sampled
models, `/metrics` shows how many probes ran during the load, and probe TTFTs from that window are
compared with the stream server's ground truth.

Results: bench/results/api_load.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.dataset import PROVIDERS, HistoryShape, cached_sqlite_history, catalog_yaml, copy_sqlite, model_id_of
from bench.processes import Child, cpu_seconds_of, wait_http_ok, wait_settled
from bench.results import load_average, log, machine_info, markdown_table, publish
from bench.stats import all_finite, percentile
from bench.truth_server import TruthServer, by_model
from bench.wrk import run_wrk, write_wrk_files
from monitor.catalog.schema import INTERVAL_MAX_S
from monitor.testing.stream_server import unused_port

TARGET_RATIO = 0.7
TARGET_P99_MS = 20.0
# The throughput part measures the API, not probing: the longest interval the service accepts.
IDLE_INTERVAL_S = INTERVAL_MAX_S
LIVE_KEYS = {
    "model", "best_ttft_ms", "best_throughput_tps", "active_endpoints", "total_endpoints",
    "available_via", "updated_at", "window_s", "endpoints",
}
ENDPOINT_KEYS = {
    "provider", "active", "last_probe_at", "last_error_kind", "ttft_ms_p50", "throughput_tps_p50",
    "uptime", "samples", "ok_samples", "ttft_ms_p5", "ttft_ms_p95", "ttft_ms_p50_ci", "throughput_tps_p50_ci",
    "uptime_ci", "answer_ok_ratio",
    "cost_usd_per_probe", "cost_usd_per_month", "state", "state_reason", "locations", "open_incident", "maintenance",
}


# --------------------------------------------------------------------------- servers under test

@contextmanager
def healthy_catalog(models: int, providers: int, work: Path) -> Iterator[Path]:
    """A catalog of `models` x `providers` endpoints on a loopback provider that answers (its
    own process, stopped on exit), written to `work`: liveness checks succeed, as between the
    probes of healthy providers."""
    with TruthServer(log_path=work / "provider-idle.log") as provider:
        config = work / "catalog-idle.yaml"
        config.write_text(catalog_yaml(models, providers, base_url=provider.base_url))
        yield config


def start_monitor(mode: str, *, config: Path, db: Path, port: int, interval_s: float | None,
                  log_path: Path, cors_origin: str, app_root: Path | None = None) -> Child:
    """`python -m monitor MODE` started in `app_root` (default: this checkout), so a proposed
    fix in a copy of the tree can be measured with the same benchmark. `cors_origin` is
    configured as a deployment for the catalog site would ("" for none)."""
    argv = [sys.executable, "-m", "monitor", mode, "--config", str(config), "--db", f"sqlite:///{db}",
            "--host", "127.0.0.1", "--port", str(port)]
    if interval_s is not None:
        argv += ["--interval", f"{interval_s:g}"]
    return Child(argv, env={"LLM_MONITOR_CORS_ORIGINS": cors_origin}, log_path=log_path, cwd=app_root)


def start_bare(body_file: Path, port: int, log_path: Path) -> Child:
    return Child([sys.executable, "-m", "bench.api_load", "serve-bare", "--port", str(port),
                  "--body-file", str(body_file)], log_path=log_path)


def serve_bare(port: int, body_file: Path) -> None:
    """A bare Starlette app answering every GET with a constant JSON body, on the same uvicorn
    flags as `monitor.service` (one worker, no access log, lifespan on)."""
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = body_file.read_bytes()

    async def constant(_request: Any) -> Response:
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", constant, methods=["GET"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    asyncio.run(uvicorn.Server(config).serve())


# --------------------------------------------------------------------------- checks

def check_live_body(body: Any, model_id: str, providers: list[str]) -> list[str]:
    """Problems with one `/live` response body (empty when it matches the contract)."""
    problems = []
    if not isinstance(body, dict) or set(body) != LIVE_KEYS:
        return [f"{model_id}: keys {sorted(body) if isinstance(body, dict) else type(body).__name__}"]
    if body["model"] != model_id:
        problems.append(f"{model_id}: model field {body['model']!r}")
    if body["available_via"] != providers or body["total_endpoints"] != len(providers):
        problems.append(f"{model_id}: providers {body['available_via']!r}")
    if not 0 <= body["active_endpoints"] <= body["total_endpoints"]:
        problems.append(f"{model_id}: active_endpoints {body['active_endpoints']}")
    if [e.get("provider") for e in body["endpoints"]] != providers:
        problems.append(f"{model_id}: endpoint providers")
    for endpoint in body["endpoints"]:
        if set(endpoint) != ENDPOINT_KEYS:
            problems.append(f"{model_id}: endpoint keys {sorted(endpoint)}")
        elif endpoint["uptime"] is not None and not 0 <= endpoint["uptime"] <= 1:
            problems.append(f"{model_id}: uptime {endpoint['uptime']}")
    if not all_finite(body):
        problems.append(f"{model_id}: non-finite figure")
    return problems


def sample_check(base: str, models: int, providers: list[str], count: int, rng: random.Random) -> dict[str, Any]:
    import httpx

    problems: list[str] = []
    with_data = 0
    picked = rng.sample(range(models), min(count, models))
    with httpx.Client(timeout=10.0) as client:
        for m in picked:
            response = client.get(f"{base}/v1/models/{model_id_of(m)}/live")
            if response.status_code != 200:
                problems.append(f"{model_id_of(m)}: HTTP {response.status_code}")
                continue
            body = response.json()
            problems += check_live_body(body, model_id_of(m), providers)
            with_data += body.get("best_ttft_ms") is not None
        unknown = client.get(f"{base}/v1/models/no-such/model/live")
        if unknown.status_code != 404:
            problems.append(f"unknown model answered {unknown.status_code}")
    return {"checked": len(picked), "with_data": with_data, "problems": problems[:20],
            "problem_count": len(problems)}


def probe_counts(base: str) -> dict[str, float]:
    """Sum of llm_probes_total by outcome, from the process's /metrics."""
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=10.0).text
    counts: dict[str, float] = {}
    for match in re.finditer(r'^llm_probes_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        outcome = re.search(r'outcome="([^"]+)"', match.group(1))
        if outcome:
            counts[outcome.group(1)] = counts.get(outcome.group(1), 0.0) + float(match.group(2))
    lag = re.search(r"^llm_monitor_scheduler_lag_seconds ([0-9.e+-]+)$", text, re.M)
    if lag:
        counts["_scheduler_lag_s"] = float(lag.group(1))
    return counts


# --------------------------------------------------------------------------- part 1

def measured_wrk(child: Child, base: str, **kw: Any) -> dict[str, Any]:
    cpu_before, started = cpu_seconds_of(child.pid), time.perf_counter()
    result = run_wrk(base, **kw)
    cpu = cpu_seconds_of(child.pid) - cpu_before
    out = result.as_dict()
    out["server_cpu_share"] = round(cpu / (time.perf_counter() - started), 3)
    return out


def part_throughput(args: argparse.Namespace, work: Path, db: Path, paths: list[str],
                    scripts: tuple[Path, Path, Path]) -> dict[str, Any]:
    plain, _validating, path_file = scripts
    db = copy_sqlite(db, work / "idle.db")  # the run writes (its probes, incidents): never into the cache
    real_port, bare_port = unused_port(), unused_port()
    real_base, bare_base = f"http://127.0.0.1:{real_port}", f"http://127.0.0.1:{bare_port}"
    rounds: list[dict[str, Any]] = []
    with healthy_catalog(args.models, args.providers, work) as config, start_monitor(args.mode, config=config, db=db, port=real_port,
                       interval_s=IDLE_INTERVAL_S if args.mode != "api" else None, log_path=work / "monitor-idle.log",
                       cors_origin=args.cors_origin, app_root=args.app_root) as real:
        startup_s = wait_http_ok(f"{real_base}{paths[0]}", timeout_s=600, child=real)
        log(f"{args.mode} ready in {startup_s:.1f} s (pid {real.pid})")
        settle_s = wait_settled(real.pid)
        log(f"{args.mode} settled {settle_s:.1f} s later (start-up work done: CPU < 15 %)")
        import httpx

        sample = httpx.get(f"{real_base}{paths[0]}").content
        body_file = work / "bare-body.json"
        body_file.write_bytes(sample)
        with start_bare(body_file, bare_port, work / "bare.log") as bare:
            wait_http_ok(f"{bare_base}/", timeout_s=60, child=bare)
            bare_len = len(httpx.get(f"{bare_base}{paths[0]}").content)
            log(f"response body: {len(sample)} bytes (bare: {bare_len} bytes)")
            common = dict(connections=args.connections, script=plain, paths_file=path_file, threads=args.threads)
            for name, child, base in (("real", real, real_base), ("bare", bare, bare_base)):
                run_wrk(base, duration_s=max(1.0, args.duration / 5), **common)  # warm-up, discarded
            for index in range(args.rounds):
                for name, child, base in (("real", real, real_base), ("bare", bare, bare_base)):
                    load = load_average()[0]
                    result = measured_wrk(child, base, duration_s=args.duration, **common)
                    result.update(server=name, round=index, load_1m_before=round(load, 2))
                    rounds.append(result)
                    log(f"  round {index} {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
                        f"non-2xx {result['errors']['status']}, socket errors {result['socket_errors']}, "
                        f"server CPU {result['server_cpu_share']:.2f}, load {load:.2f}")
            browser = browser_round(real, real_base, paths[0], args, common) if args.cors_origin else None
            profile = None
            if args.profile:
                profile = profile_server(real, real_base, work, common, args.duration)
    summary = {}
    for name in ("real", "bare"):
        mine = [r for r in rounds if r["server"] == name]
        summary[name] = {
            "rps_median": statistics.median(r["rps"] for r in mine),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in mine),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in mine),
            "errors": sum(r["errors"]["status"] + r["socket_errors"] for r in mine),
            "server_cpu_share_median": statistics.median(r["server_cpu_share"] for r in mine),
        }
    ratio = summary["real"]["rps_median"] / summary["bare"]["rps_median"] if summary["bare"]["rps_median"] else float("nan")
    return {
        "mode": args.mode,
        "connections": args.connections,
        "duration_s": args.duration,
        "startup_s": round(startup_s, 1),
        "settle_s": round(settle_s, 1),
        "body_bytes": len(sample),
        "rounds": rounds,
        "summary": summary,
        "throughput_ratio": round(ratio, 3),
        "pass_ratio": ratio >= TARGET_RATIO,
        "pass_p99": summary["real"]["p99_ms_median"] < TARGET_P99_MS,
        "profile": profile,
        "browser": browser,
    }


def browser_round(child: Child, base: str, sample_path: str, args: argparse.Namespace,
                  common: dict[str, Any]) -> dict[str, Any]:
    """Informational: the real server under requests shaped like the catalog page's fetch()
    (an allowed `Origin`, `Accept-Encoding: gzip`), which take the CORS and gzip branches."""
    import httpx

    headers = {"Origin": args.cors_origin, "Accept-Encoding": "gzip, deflate, br"}
    sample = httpx.get(f"{base}{sample_path}", headers=headers)
    checks = {
        "content_encoding": sample.headers.get("content-encoding"),
        "allow_origin": sample.headers.get("access-control-allow-origin"),
        "wire_bytes": int(sample.headers.get("content-length", 0)),
    }
    load = load_average()[0]
    result = measured_wrk(child, base, duration_s=args.duration, headers=headers, **common)
    result.update(load_1m_before=round(load, 2), sample=checks)
    log(f"  browser-shaped: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
        f"{checks['wire_bytes']} bytes {checks['content_encoding']}, allow-origin {checks['allow_origin']}")
    return result


def profile_server(child: Child, base: str, work: Path, common: dict[str, Any], duration_s: float) -> dict[str, Any] | None:
    """py-spy samples the real server while wrk loads it; returns the top frames by own time."""
    import shutil

    if shutil.which("py-spy") is None:
        log("py-spy not installed: skipping the profile")
        return None
    raw = work / "profile.txt"
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(child.pid), "--format", "raw", "--rate", "200",
                            "--duration", str(int(duration_s) + 2), "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    run_wrk(base, duration_s=duration_s, **common)
    spy.wait(timeout=duration_s + 60)
    if not raw.exists():
        return None
    return summarize_collapsed(raw.read_text())


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    """Own and inclusive time per frame of the event-loop thread (py-spy raw/collapsed format).
    Worker threads (anyio's thread pool, asyncio's executor) are counted apart: their samples
    are mostly idle waits, and mixing them in would hide where the loop spends its time."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = worker = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "_bootstrap (" in stack.split(";", 1)[0]:
            worker += count
            continue
        total += count
        frames = [re.sub(r" \(.*?/(site-packages|lib/python3\.\d+)/", " (", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    return {"loop_thread_samples": total, "worker_thread_samples": worker,
            "own_pct": ranked(own), "inclusive_pct": ranked(inclusive)}


# --------------------------------------------------------------------------- part 2

def part_concurrency(args: argparse.Namespace, work: Path, cached_db: Path, paths: list[str],
                     scripts: tuple[Path, Path, Path]) -> dict[str, Any]:
    _plain, validating, path_file = scripts
    with TruthServer(ttft_s=args.stream_ttft, gap_s=args.stream_gap, tokens=args.stream_tokens,
                     log_path=work / "stream.log") as stream:
        db = copy_sqlite(cached_db, work / "busy.db")
        config = work / "catalog-busy.yaml"
        config.write_text(catalog_yaml(args.models, args.providers, base_url=stream.base_url))
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        with start_monitor("run", config=config, db=db, port=port, interval_s=args.busy_interval,
                           log_path=work / "monitor-busy.log", cors_origin=args.cors_origin,
                           app_root=args.app_root) as monitor:
            startup_s = wait_http_ok(f"{base}{paths[0]}", timeout_s=600, child=monitor)
            log(f"run (scheduler on, interval {args.busy_interval:g} s) ready in {startup_s:.1f} s")
            time.sleep(min(5.0, args.busy_duration))  # let probing reach its steady rate
            stream.fetch()  # discard pre-load truth
            before = probe_counts(base)
            max_id = sqlite3.connect(db).execute("SELECT MAX(id) FROM probe_result").fetchone()[0]
            load = load_average()[0]
            result = measured_wrk(monitor, base, connections=args.busy_connections, duration_s=args.busy_duration,
                                  script=validating, paths_file=path_file, threads=args.threads,
                                  timeout_s=10.0, validate=True)
            after = probe_counts(base)
            checks = sample_check(base, args.models, list(PROVIDERS[: args.providers]), args.sample_checks,
                                  random.Random(11))
            truth = by_model(stream.fetch())
            time.sleep(1.5)  # the result writer flushes right after each probe; give it a moment
        probes = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if not k.startswith("_")}
        accuracy = ttft_accuracy(db, max_id, truth)
    total_probes = sum(probes.values())
    ok = result["bad_status"] == 0 and result["bad_body"] == 0 and result["socket_errors"] == 0 \
        and result["errors"]["status"] == 0 and checks["problem_count"] == 0 and result["validated"] > 0
    return {
        "connections": args.busy_connections,
        "duration_s": args.busy_duration,
        "interval_s": args.busy_interval,
        "endpoints": args.models * args.providers,
        "scheduled_probe_rate_per_s": round(args.models * args.providers / args.busy_interval, 2),
        "stream": {"ttft_s": args.stream_ttft, "gap_s": args.stream_gap, "tokens": args.stream_tokens},
        "startup_s": round(startup_s, 1),
        "load_1m_before": round(load, 2),
        "wrk": result,
        "probes_during_load": probes,
        "probes_during_load_total": total_probes,
        "probe_rate_during_load_per_s": round(total_probes / result["duration_s"], 2) if result["duration_s"] else 0.0,
        "scheduler_lag_s_after": after.get("_scheduler_lag_s"),
        "sample_check": checks,
        "ttft_accuracy_under_load": accuracy,
        "correct": ok,
    }


def ttft_accuracy(db: Path, after_id: int, truth: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Probe TTFT minus server ground truth for probes stored after `after_id` (matched by the
    provider-side model name, unique per endpoint, in start order), with the worst event-loop
    lag each probe saw (`loop_lag_s`): a read delayed past the next token's arrival gets one
    kernel timestamp for both, so lag beyond the inter-token gap shows up as TTFT error."""
    rows = sqlite3.connect(db).execute(
        "SELECT model, ttft_s, ok, loop_lag_s FROM probe_result WHERE id > ? ORDER BY started_at", (after_id,)
    ).fetchall()
    seen: dict[str, int] = {}
    errors_ms, lags_ms = [], []
    for model, ttft_s, ok, loop_lag_s in rows:
        served = truth.get(model, [])  # in arrival order
        index = seen.get(model, 0)
        seen[model] = index + 1
        if ok and ttft_s is not None and index < len(served):
            errors_ms.append((ttft_s - served[index]["ttft_truth_s"]) * 1000)
            lags_ms.append((loop_lag_s or 0.0) * 1000)
    if not errors_ms:
        return {"matched": 0, "stored_after_start": len(rows)}
    absolute = [abs(e) for e in errors_ms]
    return {
        "matched": len(errors_ms), "stored_after_start": len(rows),
        "error_ms_median": round(statistics.median(errors_ms), 3),
        "abs_error_ms_p99": round(percentile(absolute, 99), 3),
        "abs_error_ms_max": round(max(absolute), 3),
        "loop_lag_ms_p50": round(percentile(lags_ms, 50), 2),
        "loop_lag_ms_p99": round(percentile(lags_ms, 99), 2),
        "share_within_5ms": round(sum(a <= 5.0 for a in absolute) / len(absolute), 4),
    }


# --------------------------------------------------------------------------- report

def render(report: dict[str, Any]) -> str:
    out = [f"# API load benchmark ({report['machine']['at']})", ""]
    cfg = report["config"]
    out.append(f"Catalog {cfg['models']:,} models x {cfg['providers']} endpoints, {cfg['rows']:,} stored probes "
               f"(SQLite), uvicorn {report['machine']['uvicorn']} ({report['machine']['uvicorn_http']}, "
               f"{report['machine']['uvicorn_loop']}), 1 worker each; load average before: "
               f"{report['machine']['load_average_1_5_15']}.")
    part1 = report.get("throughput")
    if part1:
        out += ["", f"## GET /v1/models/{{id}}/live at {part1['connections']} connections "
                    f"(`monitor {part1['mode']}`, scheduler idle) vs bare Starlette, same uvicorn flags", ""]
        rows = []
        for r in part1["rounds"]:
            rows.append([r["round"], r["server"], r["rps"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                         r["errors"]["status"] + r["socket_errors"], r["server_cpu_share"], r["load_1m_before"]])
        out.append(markdown_table(["round", "server", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
                                   "server CPU", "load 1m"], rows))
        s = part1["summary"]
        out += ["", markdown_table(
            ["", "real (median)", "bare (median)", "target", "result"],
            [["req/s", s["real"]["rps_median"], s["bare"]["rps_median"],
              f">= {TARGET_RATIO} x bare", f"ratio {part1['throughput_ratio']:.2f}: "
              + ("PASS" if part1["pass_ratio"] else "FAIL")],
             ["p99 ms", s["real"]["p99_ms_median"], s["bare"]["p99_ms_median"], f"< {TARGET_P99_MS:g}",
              "PASS" if part1["pass_p99"] else "FAIL"]])]
        b = part1.get("browser")
        if b:
            out += ["", f"Browser-shaped requests (`Origin: {b['sample']['allow_origin']}`, `Accept-Encoding: gzip`; "
                        f"answered {b['sample']['content_encoding']}, {b['sample']['wire_bytes']} bytes on the wire), "
                        f"real server only: {b['rps']:,.0f} req/s, p99 {b['p99_ms']:.1f} ms, "
                        f"{b['errors']['status'] + b['socket_errors']} errors."]
        if part1.get("profile"):
            out += ["", "Profile of the real server's event-loop thread under load (py-spy, % of samples):", ""]
            out.append(markdown_table(["frame (own time)", "%"], part1["profile"]["own_pct"][:15]))
            out += ["", markdown_table(["frame (inclusive)", "%"], part1["profile"]["inclusive_pct"][:25])]
    part2 = report.get("concurrency")
    if part2:
        w = part2["wrk"]
        out += ["", f"## {part2['connections']} connections with the scheduler running "
                    f"(`monitor run --interval {part2['interval_s']:g}`, {part2['endpoints']:,} endpoints on a loopback "
                    f"stream server, ~{part2['scheduled_probe_rate_per_s']:g} probes/s)", ""]
        acc = part2["ttft_accuracy_under_load"]
        out.append(markdown_table(
            ["req/s", "p50 ms", "p99 ms", "max ms", "responses validated", "non-200", "bad body",
             "socket errors", "probes during load", "probe TTFT |err| p99 ms", "probe loop lag p99 ms", "correct"],
            [[w["rps"], w["p50_ms"], w["p99_ms"], w["max_ms"], w["validated"], w["bad_status"] + w["errors"]["status"],
              w["bad_body"], w["socket_errors"],
              f"{part2['probes_during_load_total']:.0f} ({part2['probes_during_load'].get('ok', 0):.0f} ok)",
              acc.get("abs_error_ms_p99", "n/a"), acc.get("loop_lag_ms_p99", "n/a"),
              "PASS" if part2["correct"] else "FAIL"]]))
        out.append("")
        out.append(f"Sample check after the load: {part2['sample_check']['checked']} models' full bodies validated, "
                   f"{part2['sample_check']['problem_count']} problems.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve-bare"]:
        sub = argparse.ArgumentParser()
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--body-file", type=Path, required=True)
        bare = sub.parse_args(argv[1:])
        serve_bare(bare.port, bare.body_file)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--providers", type=int, default=3, choices=range(1, len(PROVIDERS) + 1))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=["run", "api"], default="run",
                        help="how the real process is started for part 1 (run: --interval 604800, all but no probes)")
    parser.add_argument("--cors-origin", default="https://catalog.example",
                        help="CORS origin the real server allows, as for the catalog site ('' for none); "
                             "also sent by the browser-shaped round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk round (part 1)")
    parser.add_argument("--rounds", type=int, default=2, help="real/bare round pairs (part 1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--profile", action="store_true", help="py-spy the real server under load (part 1)")
    parser.add_argument("--busy-connections", type=int, default=500)
    parser.add_argument("--busy-duration", type=float, default=20.0)
    parser.add_argument("--busy-interval", type=float, default=300.0,
                        help="probe interval of every endpoint in part 2 (seconds)")
    parser.add_argument("--stream-ttft", type=float, default=0.2)
    parser.add_argument("--stream-gap", type=float, default=0.01)
    parser.add_argument("--stream-tokens", type=int, default=30)
    parser.add_argument("--sample-checks", type=int, default=200)
    parser.add_argument("--app-root", type=Path, default=None,
                        help="run the monitor from this source tree instead (to measure a proposed fix)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--name", default="api_load", help="results file name (bench/results/NAME.json)")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    shape = HistoryShape(rows=args.rows, models=args.models, providers=args.providers)
    db, newest, generated_s = cached_sqlite_history(shape, log=log, rolled_up=True)
    paths = [f"/v1/models/{model_id_of(m)}/live" for m in range(args.models)]
    report: dict[str, Any] = {
        "benchmark": "api_load",
        "machine": machine_info(),
        "config": {**{k: v for k, v in vars(args).items() if k not in ("results_dir",)},
                   "history_newest": newest.isoformat(), "history_generated_s": generated_s,
                   "db_bytes": db.stat().st_size},
        "method": __doc__,
    }
    with tempfile.TemporaryDirectory(prefix="bench-api-") as directory:
        work = Path(directory)
        scripts = write_wrk_files(work, paths)
        if not args.skip_throughput:
            report["throughput"] = part_throughput(args, work, db, paths, scripts)
        if not args.skip_concurrency:
            report["concurrency"] = part_concurrency(args, work, db, paths, scripts)
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
