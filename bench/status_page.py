"""Status-page benchmark: the badge and the embed under the API load benchmark's conditions, and
/status with 2,000 models (server time, bytes on the wire, Largest Contentful Paint in Chromium).

    flock /tmp/llm-monitor-bench.lock python -m bench.status_page          # full run (~4 min)
    python -m bench.status_page --models 20 --rows 10000 --duration 2 --rounds 1 --lcp-loads 2   # smoke

Part 1 (target: >= 0.7 x bare, as for /live): `python -m monitor run` over a catalog of M models x
P endpoints and a SQLite history of N probes (bench.dataset, cached under /tmp), idle probing
(7-day interval), endpoints on a loopback provider that answers their liveness checks, and CORS
for the catalog's origin, exactly as bench/api_load.py starts it. Beside
it, the bare Starlette app of bench/api_load.py returns a constant body of the same size. `wrk`
rotates over every model at C connections, in rounds alternating real / bare, for three routes:
`/v1/models/{id}/live` (the reference), `/v1/models/{id}/badge.svg?metric=ttft` and
`/embed/models/{id}`. The ratio is real / bare requests per second of the same route's body size.

Part 2 (for information; target LCP < 1 s): `/status` of that process: latency of one request at a
time (wrk, 1 connection: the server's time per request plus loopback), bytes on the wire with and
without gzip, and Largest Contentful Paint of a cold load (fresh browser context, no cache) in
Debian's Chromium through Playwright, median of K loads; also a search (`?q=`) and page 20.

Results: bench/results/status_page.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_load import IDLE_INTERVAL_S, healthy_catalog, measured_wrk, start_bare, start_monitor
from bench.dataset import PROVIDERS, HistoryShape, cached_sqlite_history, copy_sqlite, model_id_of
from bench.processes import wait_http_ok, wait_settled
from bench.results import load_average, log, machine_info, markdown_table, publish
from bench.wrk import run_wrk, write_wrk_files
from monitor.testing.stream_server import unused_port

TARGET_RATIO = 0.7
TARGET_LCP_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"
ROUTES = {
    "live": lambda model_id: f"/v1/models/{model_id}/live",
    "badge": lambda model_id: f"/v1/models/{model_id}/badge.svg?metric=ttft",
    "embed": lambda model_id: f"/embed/models/{model_id}",
}
LCP_SCRIPT = """() => new Promise(resolve => {
  let last = null;
  new PerformanceObserver(list => { for (const e of list.getEntries()) last = e; })
    .observe({type: 'largest-contentful-paint', buffered: true});
  setTimeout(() => resolve(last ? {ms: last.startTime, element: last.element ? last.element.tagName : null,
                                   size: last.size} : null), 300);
})"""


def part_routes(args: argparse.Namespace, work: Path, real_base: str, real: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for route, path_of in ROUTES.items():
        if route not in args.routes.split(","):
            continue
        paths = [path_of(model_id_of(m)) for m in range(args.models)]
        plain, _, path_file = write_wrk_files(work / route, paths)
        sample = httpx.get(real_base + paths[0]).content
        body_file = work / f"bare-{route}.body"
        body_file.write_bytes(sample)
        bare_port = unused_port()
        bare_base = f"http://127.0.0.1:{bare_port}"
        rounds = []
        with start_bare(body_file, bare_port, work / f"bare-{route}.log") as bare:
            wait_http_ok(f"{bare_base}/", timeout_s=60, child=bare)
            common = dict(connections=args.connections, script=plain, paths_file=path_file, threads=args.threads)
            for base in (real_base, bare_base):
                run_wrk(base, duration_s=max(1.0, args.duration / 5), **common)  # warm-up, discarded
            for index in range(args.rounds):
                for name, child, base in (("real", real, real_base), ("bare", bare, bare_base)):
                    load = load_average()[0]
                    result = measured_wrk(child, base, duration_s=args.duration, **common)
                    result.update(server=name, round=index, load_1m_before=round(load, 2))
                    rounds.append(result)
                    log(f"  {route} round {index} {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
                        f"non-2xx {result['errors']['status']}, load {load:.2f}")
        summary = {
            name: {
                "rps_median": statistics.median(r["rps"] for r in rounds if r["server"] == name),
                "p99_ms_median": statistics.median(r["p99_ms"] for r in rounds if r["server"] == name),
                "errors": sum(r["errors"]["status"] + r["socket_errors"] for r in rounds if r["server"] == name),
            }
            for name in ("real", "bare")
        }
        ratio = summary["real"]["rps_median"] / summary["bare"]["rps_median"]
        results[route] = {"body_bytes": len(sample), "rounds": rounds, "summary": summary,
                          "ratio": round(ratio, 3), "pass": ratio >= TARGET_RATIO}
    return results


def page_bytes(base: str, path: str) -> dict[str, int]:
    plain = httpx.get(base + path, headers={"Accept-Encoding": "identity"})
    zipped = httpx.get(base + path, headers={"Accept-Encoding": "gzip"})
    css_path = plain.text.split('<link rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    css = httpx.get(base + css_path, headers={"Accept-Encoding": "gzip"})
    return {
        "status": plain.status_code,
        "html_bytes": len(plain.content),
        "html_gzip_bytes": int(zipped.headers["content-length"]),
        "css_gzip_bytes": int(css.headers["content-length"]),
        "first_view_gzip_bytes": int(zipped.headers["content-length"]) + int(css.headers["content-length"]),
        "first_view_bytes": len(plain.content) + len(httpx.get(base + css_path).content),
        "cards": plain.text.count('<article class="card"'),
    }


def server_time(args: argparse.Namespace, work: Path, base: str, path: str, real: Any) -> dict[str, Any]:
    plain, _, path_file = write_wrk_files(work / "status-one", [path])
    result = measured_wrk(real, base, connections=1, duration_s=args.duration, script=plain,
                          paths_file=path_file, threads=1, headers={"Accept-Encoding": "gzip"})
    return {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "mean_ms": round(1000.0 / result["rps"], 2) if result["rps"] else None,
            "errors": result["errors"]["status"] + result["socket_errors"]}


def largest_contentful_paint(base: str, path: str, loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    values, elements = [], set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(base + path, wait_until="load", timeout=30_000)
                entry = page.evaluate(LCP_SCRIPT)
                context.close()
                if entry is None:
                    raise RuntimeError(f"no largest-contentful-paint entry for {path}")
                values.append(entry["ms"])
                elements.add(entry["element"])
        finally:
            browser.close()
    return {"loads": loads, "lcp_ms_median": round(statistics.median(values), 1),
            "lcp_ms_max": round(max(values), 1), "lcp_elements": sorted(e or "?" for e in elements),
            "pass": statistics.median(values) < TARGET_LCP_MS}


def part_status(args: argparse.Namespace, work: Path, base: str, real: Any) -> dict[str, Any]:
    pages = {"first view": "/status", "search": "/status?q=" + model_id_of(args.models // 2)[:-1],
             "page 20": f"/status?page={min(20, max(1, args.models // 50))}"}
    out = {}
    for name, path in pages.items():
        out[name] = {"path": path, **page_bytes(base, path), "server": server_time(args, work, base, path, real),
                     "lcp": largest_contentful_paint(base, path, args.lcp_loads)}
        log(f"  /status {name}: {out[name]['html_gzip_bytes']} B gzip ({out[name]['html_bytes']} B), "
            f"p50 {out[name]['server']['p50_ms']:.1f} ms, LCP {out[name]['lcp']['lcp_ms_median']:.0f} ms")
    return out


def render(report: dict[str, Any]) -> str:
    lines = ["# Status page benchmark", "", f"Machine: {report['machine']}", ""]
    routes = report.get("routes", {})
    if routes:
        lines += ["## Badge and embed under load (wrk, "
                  f"{report['config']['connections']} connections, {report['config']['rounds']} rounds of "
                  f"{report['config']['duration']:g} s)", ""]
        rows = [[route, f"{r['summary']['real']['rps_median']:,.0f}", f"{r['summary']['bare']['rps_median']:,.0f}",
                 f"{r['ratio']:.2f}", "met" if r["pass"] else "MISSED",
                 f"{r['summary']['real']['p99_ms_median']:.1f}", r["body_bytes"], r["summary"]["real"]["errors"]]
                for route, r in routes.items()]
        lines.append(markdown_table(["route", "real req/s", "bare req/s", "ratio", f">= {TARGET_RATIO}",
                                     "real p99 ms", "body bytes", "errors"], rows))
        lines.append("")
    status = report.get("status", {})
    if status:
        lines += [f"## /status with {report['config']['models']:,} models", ""]
        rows = [[name, s["path"], s["cards"], s["html_bytes"], s["html_gzip_bytes"], s["first_view_gzip_bytes"],
                 f"{s['server']['p50_ms']:.1f}", f"{s['server']['p99_ms']:.1f}",
                 f"{s['lcp']['lcp_ms_median']:.0f}", "met" if s["lcp"]["pass"] else "MISSED"]
                for name, s in status.items()]
        lines.append(markdown_table(["view", "path", "cards", "HTML bytes", "HTML gzip", "first view gzip (HTML+CSS)",
                                     "server p50 ms", "p99 ms", "LCP ms (median)", "LCP < 1 s"], rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--providers", type=int, default=3, choices=range(1, len(PROVIDERS) + 1))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cors-origin", default="https://catalog.example")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lcp-loads", type=int, default=5)
    parser.add_argument("--skip-routes", action="store_true")
    parser.add_argument("--routes", default="live,badge,embed", help="which routes part 1 measures")
    parser.add_argument("--skip-status", action="store_true")
    parser.add_argument("--name", default="status_page")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    shape = HistoryShape(rows=args.rows, models=args.models, providers=args.providers)
    cached, newest, generated_s = cached_sqlite_history(shape, log=log, rolled_up=True)
    report: dict[str, Any] = {
        "benchmark": "status_page",
        "machine": machine_info(),
        "config": {**{k: v for k, v in vars(args).items() if k != "results_dir"},
                   "history_newest": newest.isoformat(), "history_generated_s": generated_s},
        "method": __doc__,
    }
    with tempfile.TemporaryDirectory(prefix="bench-status-") as directory:
        work = Path(directory)
        db = copy_sqlite(cached, work / "monitor.db")
        port = unused_port()
        base = f"http://127.0.0.1:{port}"
        with healthy_catalog(args.models, args.providers, work) as config, start_monitor("run", config=config, db=db, port=port, interval_s=IDLE_INTERVAL_S,
                           log_path=work / "monitor.log", cors_origin=args.cors_origin) as real:
            started = time.perf_counter()
            wait_http_ok(f"{base}/status", timeout_s=600, child=real)
            log(f"monitor ready in {time.perf_counter() - started:.1f} s (pid {real.pid})")
            log(f"monitor settled {wait_settled(real.pid):.1f} s later (start-up work done: CPU < 15 %)")
            if not args.skip_routes:
                report["routes"] = part_routes(args, work, base, real)
            if not args.skip_status:
                report["status"] = part_status(args, work, base, real)
    publish(report, render, args.name, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
