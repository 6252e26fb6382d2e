"""The `wrk` HTTP load generator, driven from Python.

`write_wrk_files` writes a Lua script that rotates over a list of paths (and, in its validating
variant, checks that every response is the live JSON of a known model); `run_wrk` runs wrk with
it and parses the one-line JSON summary the script prints, plus wrk's own latency block.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


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
