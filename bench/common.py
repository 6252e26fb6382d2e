"""Shared helpers of the API, history and capacity benchmarks (not a public interface).

Owns: the synthetic catalog and probe history the benchmarks run against (same generator for
SQLite and PostgreSQL, so 10k and 1M databases differ only in size), the cache of generated
SQLite files under /tmp, scratch PostgreSQL databases, child processes (servers under test,
the loopback stream server), the `wrk` driver, and the result files (JSON + markdown).

Synthetic history: endpoint e = k mod E for probe k (E = models x providers), so endpoints are
interleaved in time as a live monitor writes them; each endpoint gets one probe per
`interval_s` (30 min) ending at `newest`, ~5 % failures, TTFT 150-650 ms, 30-120 tok/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE_DIR = Path("/tmp/llm-monitor-bench-cache")
PROVIDERS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")
HISTORY_INTERVAL_S = 1800
# A cached database older than this is regenerated: its newest probes would have left the 24 h
# window (or the 2-interval "active" horizon), changing what the API computes.
CACHE_MAX_AGE_S = 6 * 3600
GENERATOR_VERSION = 1
POSTGRES_ADMIN_URL = dict(host="127.0.0.1", port=5432, user="postgres", database="test")


# --------------------------------------------------------------------------- machine and results

def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_info() -> dict[str, Any]:
    import uvicorn

    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in load_average()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvicorn": uvicorn.__version__,
        "uvicorn_http": _uvicorn_http_impl(),
        "uvicorn_loop": "uvloop" if _importable("uvloop") else "asyncio",
    }


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _uvicorn_http_impl() -> str:
    return "httptools" if _importable("httptools") else "h11"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], markdown: str, *, directory: Path = RESULTS_DIR) -> Path:
    """bench/results/<name>.json and .md; returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (directory / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return json_path


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the result table."""
    print(message, file=sys.stderr, flush=True)


def publish(report: dict[str, Any], render: Any, name: str, results_dir: Path | str | None) -> Path:
    """Finish a benchmark: note the load after it, write JSON + markdown, print the table."""
    report["machine"]["load_average_after"] = [round(x, 2) for x in load_average()]
    markdown = render(report)
    path = write_results(name, report, markdown, directory=Path(results_dir) if results_dir else RESULTS_DIR)
    print(markdown)
    log(f"results: {path}")
    return path


def all_finite(value: Any) -> bool:
    """True when every float nested in `value` is finite (report sanity check)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True


# --------------------------------------------------------------------------- synthetic catalog

def model_id_of(index: int) -> str:
    return f"bench-org-{index % 50}/model-{index}"


def catalog_yaml(models: int, providers: int, *, base_url: str, interval: str = "30m",
                 name_prefix: str = "m") -> str:
    """A catalog of `models` x `providers` openai endpoints at `base_url` (no API keys)."""
    lines = [f"defaults: {{interval: {interval}, timeout: 60s, max_tokens: 128}}", "models:"]
    for m in range(models):
        lines.append(f"  - id: {model_id_of(m)}")
        lines.append(f'    name: "Bench model {m}"')
        lines.append("    endpoints:")
        for p in range(providers):
            lines.append(f"      - provider: {PROVIDERS[p]}")
            lines.append("        protocol: openai")
            lines.append(f"        base_url: {base_url}")
            lines.append(f"        model: {name_prefix}-{m}-{p}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- synthetic history

@dataclass(frozen=True)
class HistoryShape:
    rows: int
    models: int
    providers: int = 3
    interval_s: int = HISTORY_INTERVAL_S

    @property
    def endpoints(self) -> int:
        return self.models * self.providers

    @property
    def rounds(self) -> int:
        return math.ceil(self.rows / self.endpoints)

    def key(self) -> str:
        return f"r{self.rows}-m{self.models}-p{self.providers}-i{self.interval_s}-g{GENERATOR_VERSION}"


_COLUMNS = (
    "model_id, provider, protocol, model, ok, error_kind, error, http_status, started_at, ttft_s, "
    "total_s, output_tokens, token_count_source, tokens_per_second, first_answer_s, last_token_s, "
    "headers_s, token_chunks, usage_tokens, first_read_tokens, finish_reason, http_version, "
    "connection_reused, stream_bytes, methodology"
)


def _fill_select(dialect: str, shape: HistoryShape, newest: datetime) -> str:
    """INSERT ... SELECT generating `shape.rows` probes in SQL (no Python per row)."""
    endpoints, providers = shape.endpoints, shape.providers
    provider_case = "CASE " + " ".join(
        f"WHEN (k % {endpoints}) % {providers} = {p} THEN '{PROVIDERS[p]}'" for p in range(providers)
    ) + " END"
    model_index = f"((k % {endpoints}) / {providers})"
    failed = "((k * 2654435761) % 100 < 5)"
    # Seconds before `newest`: whole rounds back, plus a per-endpoint offset within the interval.
    age_s = (f"(({shape.rounds - 1} - k / {endpoints}) * {shape.interval_s} "
             f"+ ((k % {endpoints}) * 37) % {shape.interval_s})")
    ttft = "(0.15 + ((k * 7919) % 1000) / 2000.0)"
    tps = "(30.0 + ((k * 104729) % 900) / 10.0)"
    if dialect == "postgresql":
        true, false = "TRUE", "FALSE"
        started_at = f"TIMESTAMPTZ '{newest.isoformat()}' - make_interval(secs => {age_s})"
        source = f"generate_series(0::bigint, {shape.rows - 1}) AS g(k)"  # k * 104729 overflows int4
        prefix = ""
        concat_model = f"'bench-org-' || ({model_index} % 50) || '/model-' || {model_index}"
    else:
        true, false = "1", "0"
        epoch = int(newest.timestamp())
        started_at = f"datetime({epoch} - {age_s}, 'unixepoch') || '.000000'"
        source = "g"
        prefix = (f"WITH RECURSIVE g(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM g "
                  f"WHERE k < {shape.rows - 1}) ")
        concat_model = f"'bench-org-' || ({model_index} % 50) || '/model-' || {model_index}"
    return f"""
INSERT INTO probe_result ({_COLUMNS})
{prefix}SELECT {concat_model}, {provider_case}, 'openai', 'm',
  CASE WHEN {failed} THEN {false} ELSE {true} END,
  CASE WHEN {failed} THEN (CASE WHEN k % 2 = 0 THEN 'timeout' ELSE 'http_error' END) END,
  CASE WHEN {failed} THEN 'synthetic failure' END,
  CASE WHEN {failed} THEN (CASE WHEN k % 2 = 0 THEN NULL ELSE 503 END) ELSE 200 END,
  {started_at},
  CASE WHEN {failed} THEN NULL ELSE {ttft} END,
  CASE WHEN {failed} THEN 60.0 ELSE {ttft} + 64 / {tps} END,
  CASE WHEN {failed} THEN NULL ELSE 64 END,
  CASE WHEN {failed} THEN NULL ELSE 'usage' END,
  CASE WHEN {failed} THEN NULL ELSE {tps} END,
  CASE WHEN {failed} THEN NULL ELSE {ttft} END,
  CASE WHEN {failed} THEN NULL ELSE {ttft} + 64 / {tps} END,
  {ttft} * 0.8,
  CASE WHEN {failed} THEN 0 ELSE 64 END,
  CASE WHEN {failed} THEN NULL ELSE 64 END,
  CASE WHEN {failed} THEN 0 ELSE 1 END,
  CASE WHEN {failed} THEN NULL ELSE 'stop' END,
  'HTTP/1.1', {true}, 9000, '2026.11-1'
FROM {source}
ORDER BY k
"""


_POINTERS_SQL = """
INSERT INTO endpoint_latest (model_id, provider, latest_probe_id, latest_started_at,
    latest_ok_probe_id, latest_ok_started_at)
SELECT l.model_id, l.provider, l.id, p.started_at, o.id, po.started_at
FROM (SELECT model_id, provider, MAX(id) AS id FROM probe_result GROUP BY model_id, provider) l
JOIN probe_result p ON p.id = l.id
LEFT JOIN (SELECT model_id, provider, MAX(id) AS id FROM probe_result WHERE {ok}
           GROUP BY model_id, provider) o ON o.model_id = l.model_id AND o.provider = l.provider
LEFT JOIN probe_result po ON po.id = o.id
"""


async def fill_history(database_url: str, shape: HistoryShape, newest: datetime) -> float:
    """Migrate a fresh database with the project's own migrations and fill it; returns seconds."""
    from monitor.store import open_store

    started = time.perf_counter()
    store = await open_store(database_url)
    try:
        dialect = store.dialect_name
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql(_fill_select(dialect, shape, newest))
            ok = "ok" if dialect == "postgresql" else "ok = 1"
            await connection.exec_driver_sql(_POINTERS_SQL.format(ok=ok))
        async with store.engine.connect() as connection:
            if dialect == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("VACUUM ANALYZE")
            else:
                await connection.exec_driver_sql("ANALYZE")
                await connection.commit()
        count = await store.count_results()
        if count != shape.rows:
            raise RuntimeError(f"generated {count} rows, expected {shape.rows}")
    finally:
        await store.close()
    return time.perf_counter() - started


def cache_directory() -> Path:
    """Where generated SQLite histories are kept between runs ($LLM_MONITOR_BENCH_CACHE overrides)."""
    override = os.environ.get("LLM_MONITOR_BENCH_CACHE")
    return Path(override) if override else DEFAULT_CACHE_DIR


def cached_sqlite_history(shape: HistoryShape, *, log=print) -> tuple[Path, datetime, float | None]:
    """(path, newest, seconds spent generating or None when reused) of a cached SQLite history."""
    cache_dir = cache_directory()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"history-{shape.key()}.db"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        newest = datetime.fromisoformat(meta["newest"])
        age_s = (datetime.now(UTC) - newest).total_seconds()
        if meta.get("key") == shape.key() and age_s < CACHE_MAX_AGE_S:
            log(f"reusing cached SQLite history {path} ({shape.rows:,} probes, {age_s / 60:.0f} min old)")
            return path, newest, None
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), meta_path):
        stale.unlink(missing_ok=True)
    newest = datetime.now(UTC).replace(microsecond=0)
    tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:6]}")
    log(f"generating SQLite history {path} ({shape.rows:,} probes, {shape.endpoints:,} endpoints) ...")
    seconds = asyncio.run(fill_history(f"sqlite:///{tmp}", shape, newest))
    _checkpoint_sqlite(tmp)
    tmp.rename(path)
    meta_path.write_text(json.dumps({"key": shape.key(), "newest": newest.isoformat(), "rows": shape.rows}))
    log(f"  generated in {seconds:.1f} s")
    return path, newest, seconds


def _checkpoint_sqlite(path: Path) -> None:
    """Fold the WAL into the main file so the cached database is one self-contained file."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def copy_sqlite(source: Path, destination: Path) -> Path:
    shutil.copyfile(source, destination)
    return destination


# --------------------------------------------------------------------------- PostgreSQL scratch

async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(**POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A fresh database `bench_<random>` on the local PostgreSQL (dropped afterwards); yields its URL."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{POSTGRES_ADMIN_URL['user']}@{POSTGRES_ADMIN_URL['host']}:{POSTGRES_ADMIN_URL['port']}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------- child processes

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A child process we started (own session); stopped by its pid only, SIGTERM then SIGKILL."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, log_path: Path | None = None,
                 stdout: Any = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd or ROOT, env={**os.environ, **(env or {})},
            stdout=stdout if stdout is not None else self._log, stderr=self._log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http_ok(url: str, *, timeout_s: float, child: Child | None = None) -> float:
    """Poll `url` until it answers 200; returns seconds waited. Raises with the child's log tail."""
    import httpx

    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.argv[:4]} exited with {child.proc.returncode}:\n{child.log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s" + (f":\n{child.log_tail()}" if child else ""))


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- wrk

WRK_LUA = r"""
-- Rotates through the paths in the file given after `--`, validates every response when
-- `--validate` follows, sends `--header=Name: value` headers with every request, and prints one
-- JSON summary line (prefixed WRK_JSON) at the end.
local threads = {}
function setup(thread) table.insert(threads, thread) end

paths, validate, known = {}, false, {}
bad_status, bad_body, checked = 0, 0, 0
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      table.insert(paths, line)
      local id = line:match("^/v1/models/(.+)/live$")
      if id then known[id] = true end
    end
  end
  for n = 2, #args do
    if args[n] == "--validate" then validate = true end
    local name, value = args[n]:match("^%-%-header=([^:]+):%s*(.*)$")
    if name then wrk.headers[name] = value end
  end
  i = math.random(#paths)
end

function request()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end

function check(status, headers, body)
  checked = checked + 1
  if status ~= 200 then bad_status = bad_status + 1 return end
  local id = body:match('^{"model":"([^"]+)"')
  if not id or not known[id] or not body:find('"total_endpoints":', 1, true)
     or not body:find('"endpoints":[{"provider":', 1, true) or body:sub(-2) ~= "]}" then
    bad_body = bad_body + 1
  end
end

function done(summary, latency, requests)
  local bs, bb, ck = 0, 0, 0
  for _, t in ipairs(threads) do
    bs = bs + (t:get("bad_status") or 0)
    bb = bb + (t:get("bad_body") or 0)
    ck = ck + (t:get("checked") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,' ..
    '"p99":%d,"p999":%d,"max":%d},"validated":%d,"bad_status":%d,"bad_body":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, ck, bs, bb))
end
"""
WRK_VALIDATE_HOOK = "\nresponse = check\n"


@dataclass
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: dict[str, int]
    validated: int
    bad_status: int
    bad_body: int
    latency_distribution: str  # wrk's own --latency block, verbatim

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "socket_errors": self.socket_errors}


def write_wrk_files(directory: Path, paths: Sequence[str]) -> tuple[Path, Path, Path]:
    """(plain script, validating script, paths file)."""
    directory.mkdir(parents=True, exist_ok=True)
    plain, validating, path_file = directory / "rotate.lua", directory / "validate.lua", directory / "paths.txt"
    plain.write_text(WRK_LUA)
    validating.write_text(WRK_LUA + WRK_VALIDATE_HOOK)
    path_file.write_text("\n".join(paths) + "\n")
    return plain, validating, path_file


def run_wrk(base_url: str, *, connections: int, duration_s: float, script: Path, paths_file: Path,
            threads: int = 1, timeout_s: float = 10.0, validate: bool = False,
            headers: dict[str, str] | None = None) -> WrkResult:
    argv = [
        # wrk takes whole seconds only.
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, math.ceil(duration_s))}s",
        f"--timeout={max(1, math.ceil(timeout_s))}s",
        "--latency", "-s", str(script), base_url, "--", str(paths_file),
    ]
    if validate:
        argv.append("--validate")
    argv += [f"--header={name}: {value}" for name, value in (headers or {}).items()]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout.strip()}")
    line = next((l for l in completed.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    lines = completed.stdout.splitlines()
    start = next((n for n, l in enumerate(lines) if "Latency Distribution" in l), None)
    block = "\n".join(l.strip() for l in lines[start:start + 5]) if start is not None else ""
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return WrkResult(
        connections=connections,
        duration_s=round(duration, 3),
        requests=data["requests"],
        rps=round(data["requests"] / duration, 1) if duration else 0.0,
        p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
        p999_ms=lat["p999"] / 1000, max_ms=lat["max"] / 1000,
        errors=data["errors"],
        validated=data["validated"], bad_status=data["bad_status"], bad_body=data["bad_body"],
        latency_distribution=block,
    )


# --------------------------------------------------------------------------- loopback stream server

def start_stream_server(*, ttft_s: float, gap_s: float, tokens: int, log_path: Path | None = None) -> tuple[Child, str]:
    """The loopback OpenAI-style server (tests.support.stream_server) in its own process.

    Returns (child, base_url). `GET {base_url}/models` answers the probe's warm-up;
    `POST {base_url}/chat/completions` streams `tokens` tokens; `GET /_bench/truth` returns the
    server-side ground truth of every streamed request so far (see `python -m bench.common serve-stream`).
    """
    child = Child(
        [sys.executable, "-m", "bench.common", "serve-stream", f"--ttft={ttft_s}", f"--gap={gap_s}",
         f"--tokens={tokens}"],
        log_path=log_path, stdout=subprocess.PIPE,
    )
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline().decode().strip()
    if not line.startswith("PORT "):
        child.stop()
        raise RuntimeError(f"stream server did not start: {line!r}")
    return child, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def fetch_truth(base_url: str) -> dict[str, dict[str, Any]]:
    """Ground truth per provider-side model name: {model: {ttft_truth_s, received_ns, ...}}."""
    import httpx

    root = base_url.rsplit("/v1", 1)[0]
    response = httpx.get(f"{root}/_bench/truth", timeout=60.0)
    response.raise_for_status()
    return response.json()


def _serve_stream(ttft_s: float, gap_s: float, tokens: int) -> None:
    from tests.support.stream_server import ScriptedResponse, StreamServer, json_response, openai_stream

    frames = openai_stream(ttft_s=ttft_s, gap_s=gap_s, n_tokens=tokens)
    server = StreamServer(backlog=4096)

    def stream(_request: Any) -> ScriptedResponse:
        return ScriptedResponse(status=200, headers={"content-type": "text/event-stream"}, frames=frames)

    def truth(_request: Any) -> ScriptedResponse:
        out: dict[str, Any] = {}
        served = [r for r in list(server.requests) if r.method == "POST"]
        for r in served:
            model = (r.json or {}).get("model") if isinstance(r.json, dict) else None
            if model is None or not r.token_ns:
                continue
            out.setdefault(model, []).append({
                "ttft_truth_s": r.ttft_truth_s(), "received_ns": r.received_ns,
                "tokens_written": len(r.token_ns),
            })
        # Drop what was reported so a long run does not keep every request in memory.
        reported = set(map(id, served))
        server.requests[:] = [r for r in server.requests if id(r) not in reported]
        return json_response(200, out)

    server.route("GET", "/v1/models", json_response(200, {"object": "list", "data": []}))
    server.route("POST", "/v1/chat/completions", stream)
    server.route("GET", "/_bench/truth", truth)
    with server:
        print(f"PORT {server.port}", flush=True)
        stop = False

        def on_term(*_: Any) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        while not stop:
            time.sleep(0.2)


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="bench helper processes")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve-stream", help="loopback OpenAI-style stream server")
    serve.add_argument("--ttft", type=float, default=0.2)
    serve.add_argument("--gap", type=float, default=0.01)
    serve.add_argument("--tokens", type=int, default=30)
    args = parser.parse_args(argv)
    if args.command == "serve-stream":
        _serve_stream(args.ttft, args.gap, args.tokens)


if __name__ == "__main__":
    _main()
