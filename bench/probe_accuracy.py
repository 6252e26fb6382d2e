"""Probe measurement error against ground truth, next to the clients people usually measure with.

One command (`python -m bench.probe_accuracy`) runs, in one process with one event loop, three
clients against the same loopback OpenAI-style streaming server:

- `ours`: `monitor.probes.engine.run_probe` on the shared `build_client()` client, with a
  `LoopLagMonitor` running as it does in the service;
- `httpx`: a bare `httpx.AsyncClient.stream` loop (clock started before `client.stream(...)`,
  first token = first SSE line whose delta has non-empty content);
- `openai_sdk`: the official `openai.AsyncOpenAI` client (what Artificial Analysis uses), clock
  started before `chat.completions.create(stream=True, ...)`.

At each concurrency level N the clients take turns (the order rotates each round): N streams of
one client start together and run to the end, then the next client's N streams, so every client
meets the same load. One discarded warm-up round per client and level first (connection pools,
lazy imports).

Ground truth comes from the server's own clock. The server (`bench.truth_server`) runs in a
SEPARATE PROCESS, so the load on the clients' loop cannot move its stamps; `perf_counter_ns` is
CLOCK_MONOTONIC, shared by all processes on Linux. True TTFT = kernel arrival of the request's
last bytes at the server -> the first token frame handed to the kernel; true decode rate = the
contract's formula (`monitor.stats.decode_rate`) over the server's token-frame write times; the
peers' decode rate is that formula over their own token times. Each request carries its id in
the body's `user` field and its stream shape (TTFT, token gap, token count) in `bench_stream`;
the server hands its per-request stamps back between rounds.

Reported per level and client: TTFT error (measured - truth) p50/p99 in ms, the part of it that
lies before the request reached the server ("start side") and after the first token left it
("end side"), tokens/s relative error p50/p99 in %, process CPU time per probe, and the loop lag
seen during the probes. For ours also the probe's own `cpu_s` and `loop_lag_s`. The JSON report
goes to `bench/results/probe_accuracy.json`, a markdown summary beside it, with pass/fail against
the accuracy targets. Nothing here asserts timings: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.results import RESULTS_DIR, write_results
from bench.stats import percentile
from bench.truth_server import StreamShape, TruthServer
from monitor.stats import decode_rate

DEFAULT_JSON = RESULTS_DIR / "probe_accuracy.json"
CLIENT_NAMES = ("ours", "httpx", "openai_sdk")
MODEL = "bench-model"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Range:
    low: float
    high: float

    @classmethod
    def parse(cls, text: str) -> "Range":
        low, _, high = text.partition("-")
        lo = float(low)
        hi = float(high) if high else lo
        if lo < 0 or hi < lo:
            raise ValueError(f"bad range {text!r}")
        return cls(lo, hi)

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class Level:
    concurrency: int
    rounds: int


@dataclass(frozen=True)
class BenchConfig:
    levels: tuple[Level, ...]
    clients: tuple[str, ...] = CLIENT_NAMES
    ttft_ms: Range = Range(200, 500)
    gap_ms: Range = Range(10, 20)
    tokens: Range = Range(40, 64)
    warmup_rounds: int = 1
    settle_s: float = 0.3
    seed: int = 1
    lag_flag_ms: float = 10.0
    # Diagnostic: make the engine stamp reads when the loop handles them instead of using the
    # kernel's receive time, to show what that buys under load.
    no_kernel_stamps: bool = False


def stream_shapes(config: BenchConfig, concurrency: int, round_no: int) -> list[StreamShape]:
    """Deterministic per (seed, level, round): each client gets the very same streams."""
    rng = random.Random(f"{config.seed}/{concurrency}/{round_no}")
    return [
        StreamShape(
            ttft_s=round(rng.uniform(config.ttft_ms.low, config.ttft_ms.high) / 1000, 6),
            gap_s=round(rng.uniform(config.gap_ms.low, config.gap_ms.high) / 1000, 6),
            n_tokens=rng.randint(int(config.tokens.low), int(config.tokens.high)),
        )
        for _ in range(concurrency)
    ]


# --------------------------------------------------------------------------- the clients

@dataclass
class Sample:
    """One measured stream, as the client saw it (perf_counter_ns timeline)."""

    client: str
    concurrency: int
    round_no: int
    request_id: str
    ok: bool
    error: str | None = None
    ttft_s: float | None = None
    tokens_per_second: float | None = None
    t0_ns: int | None = None  # when the client's clock started
    cpu_s: float | None = None  # ours: result.cpu_s
    loop_lag_s: float | None = None  # worst loop lag while the stream ran


def _body_extra(request_id: str, shape: StreamShape) -> dict[str, Any]:
    return {"user": request_id, "bench_stream": asdict(shape)}


def _messages(request_id: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[bench {request_id}] Count from 1 to 30 in words."}]


class OursClient:
    name = "ours"

    def __init__(self, base_url: str, lag_monitor: Any) -> None:
        from monitor.probes.transport import build_client

        self.base_url = base_url + "/v1"
        self.lag_monitor = lag_monitor
        self.http = build_client()
        # started_at (wall clock) -> perf_counter timeline, to split the error into its sides.
        self._wall_minus_perf_ns = time.time_ns() - time.perf_counter_ns()

    async def measure(self, request_id: str, shape: StreamShape, concurrency: int, round_no: int) -> Sample:
        from monitor.probes.base import ProbeTarget
        from monitor.probes.engine import run_probe

        target = ProbeTarget(protocol="openai", base_url=self.base_url, model=MODEL,
                             max_tokens=shape.n_tokens, timeout_s=60.0,
                             options={"extra_body": _body_extra(request_id, shape)})
        result = await run_probe(self.http, target, lag_monitor=self.lag_monitor)
        started_wall_ns = (result.started_at - _EPOCH) // timedelta(microseconds=1) * 1000
        return Sample(self.name, concurrency, round_no, request_id, ok=result.ok, error=result.error,
                      ttft_s=result.ttft_s, tokens_per_second=result.tokens_per_second,
                      t0_ns=started_wall_ns - self._wall_minus_perf_ns,
                      cpu_s=result.cpu_s, loop_lag_s=result.loop_lag_s)

    async def aclose(self) -> None:
        await self.http.aclose()


class HttpxClient:
    """A bare httpx streaming loop, as a hand-written benchmark script would do it."""

    name = "httpx"

    def __init__(self, base_url: str, lag_monitor: Any, max_connections: int) -> None:
        import httpx

        self.url = base_url + "/v1/chat/completions"
        self.lag_monitor = lag_monitor
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.AsyncClient(limits=limits, timeout=60.0)

    async def measure(self, request_id: str, shape: StreamShape, concurrency: int, round_no: int) -> Sample:
        body = {"model": MODEL, "messages": _messages(request_id), "stream": True, "temperature": 0,
                "max_tokens": shape.n_tokens, "stream_options": {"include_usage": True},
                **_body_extra(request_id, shape)}
        first_ns = last_ns = None
        chunks = 0
        usage = None
        t0 = time.perf_counter_ns()
        try:
            async with self.http.stream("POST", self.url, json=body,
                                        headers={"authorization": "Bearer x"}) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    choices = chunk.get("choices") or []
                    if choices and (choices[0].get("delta") or {}).get("content"):
                        now = time.perf_counter_ns()
                        first_ns = first_ns or now
                        last_ns = now
                        chunks += 1
                    if chunk.get("usage"):
                        usage = chunk["usage"]["completion_tokens"]
        except Exception as exc:  # a failed stream is a sample too
            return Sample(self.name, concurrency, round_no, request_id, ok=False, error=repr(exc), t0_ns=t0)
        return _peer_sample(self, concurrency, round_no, request_id, t0, first_ns, last_ns, chunks, usage)

    async def aclose(self) -> None:
        await self.http.aclose()


class OpenAISDKClient:
    """The official openai SDK, streaming with usage."""

    name = "openai_sdk"

    def __init__(self, base_url: str, lag_monitor: Any) -> None:
        from openai import AsyncOpenAI

        self.lag_monitor = lag_monitor
        self.sdk = AsyncOpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0, timeout=60.0)

    async def measure(self, request_id: str, shape: StreamShape, concurrency: int, round_no: int) -> Sample:
        first_ns = last_ns = None
        chunks = 0
        usage = None
        t0 = time.perf_counter_ns()
        try:
            stream = await self.sdk.chat.completions.create(
                model=MODEL, messages=_messages(request_id), stream=True, temperature=0,
                max_tokens=shape.n_tokens, stream_options={"include_usage": True},
                user=request_id, extra_body={"bench_stream": asdict(shape)},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    now = time.perf_counter_ns()
                    first_ns = first_ns or now
                    last_ns = now
                    chunks += 1
                if chunk.usage is not None:
                    usage = chunk.usage.completion_tokens
        except Exception as exc:
            return Sample(self.name, concurrency, round_no, request_id, ok=False, error=repr(exc), t0_ns=t0)
        return _peer_sample(self, concurrency, round_no, request_id, t0, first_ns, last_ns, chunks, usage)

    async def aclose(self) -> None:
        await self.sdk.close()


def _peer_sample(client: Any, concurrency: int, round_no: int, request_id: str, t0: int,
                 first_ns: int | None, last_ns: int | None, chunks: int, usage: int | None) -> Sample:
    end = time.perf_counter_ns()
    tokens = usage if usage is not None else chunks
    return Sample(
        client.name, concurrency, round_no, request_id, ok=first_ns is not None, t0_ns=t0,
        error=None if first_ns is not None else "no content token",
        ttft_s=None if first_ns is None else (first_ns - t0) / 1e9,
        tokens_per_second=None if first_ns is None else decode_rate(tokens, chunks, 0.0, (last_ns - first_ns) / 1e9),
        loop_lag_s=client.lag_monitor.worst_lag_s(t0, end),
    )


# --------------------------------------------------------------------------- running

@dataclass
class RoundCost:
    client: str
    concurrency: int
    round_no: int
    probes: int
    process_cpu_s: float
    wall_s: float


@dataclass
class RawRun:
    samples: list[Sample] = field(default_factory=list)
    truths: dict[str, dict[str, Any]] = field(default_factory=dict)
    costs: list[RoundCost] = field(default_factory=list)


async def _run_round(client: Any, concurrency: int, round_no: int,
                     shapes: Sequence[StreamShape]) -> tuple[list[Sample], RoundCost]:
    ids = [f"{client.name}-{concurrency}-{round_no}-{i}" for i in range(concurrency)]
    cpu0 = time.process_time_ns()
    wall0 = time.perf_counter_ns()
    samples = await asyncio.gather(*(client.measure(rid, shape, concurrency, round_no)
                                     for rid, shape in zip(ids, shapes)))
    cost = RoundCost(client.name, concurrency, round_no, concurrency,
                     (time.process_time_ns() - cpu0) / 1e9, (time.perf_counter_ns() - wall0) / 1e9)
    return list(samples), cost


async def run_benchmark(config: BenchConfig, server_url: str, fetch_truth: Callable[[], list[dict[str, Any]]],
                        progress: Callable[[str], None] = lambda line: None) -> RawRun:
    """All levels, all clients, interleaved; warm-up rounds (round_no < 0) are discarded."""
    from monitor.probes.meters import LoopLagMonitor

    raw = RawRun()
    if config.no_kernel_stamps:
        _disable_kernel_stamps()
    max_concurrency = max(level.concurrency for level in config.levels)
    async with LoopLagMonitor() as lag_monitor:
        factories: dict[str, Callable[[], Any]] = {
            "ours": lambda: OursClient(server_url, lag_monitor),
            "httpx": lambda: HttpxClient(server_url, lag_monitor, max_concurrency),
            "openai_sdk": lambda: OpenAISDKClient(server_url, lag_monitor),
        }
        clients = [factories[name]() for name in config.clients]
        try:
            for level in config.levels:
                for round_no in range(-config.warmup_rounds, level.rounds):
                    shapes = stream_shapes(config, level.concurrency, round_no)
                    offset = round_no % len(clients)
                    for client in clients[offset:] + clients[:offset]:
                        samples, cost = await _run_round(client, level.concurrency, round_no, shapes)
                        if round_no >= 0:
                            raw.samples.extend(samples)
                            raw.costs.append(cost)
                        # Let the server finish its last frames and the loop go quiet.
                        await asyncio.sleep(config.settle_s)
                    # Off the loop: a blocking HTTP call here would show up as loop lag.
                    records = await asyncio.to_thread(fetch_truth)
                    raw.truths.update((r["user"], r) for r in records if r["user"] is not None)
                    progress(f"  N={level.concurrency} round {round_no} done "
                             f"(load {os.getloadavg()[0]:.2f})")
        finally:
            for client in clients:
                await client.aclose()
    return raw


def _disable_kernel_stamps() -> None:
    from monitor.probes import transport

    if not hasattr(transport, "_SO_TIMESTAMPNS"):
        raise RuntimeError("--no-kernel-stamps: the transport no longer has _SO_TIMESTAMPNS")
    transport._SO_TIMESTAMPNS = None  # read by each new connection's socket set-up


# --------------------------------------------------------------------------- statistics

def _dist(values: Sequence[float]) -> dict[str, float | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    absolute = [abs(v) for v in values]
    return {
        "p50": r(percentile(values, 50)),
        "p99": r(percentile(values, 99)),
        "abs_p50": r(percentile(absolute, 50)),
        "abs_p99": r(percentile(absolute, 99)),
        "mean": r(sum(values) / len(values)) if values else None,
        "max": r(max(values)) if values else None,
        "n": len(values),
    }


def summarize_client(samples: Sequence[Sample], truths: dict[str, dict[str, Any]],
                     costs: Sequence[RoundCost], lag_flag_ms: float) -> dict[str, Any]:
    ttft_err, start_err, end_err, tps_err, lags, cpus = [], [], [], [], [], []
    flagged_err, calm_err = [], []
    stamped_with_later_token = 0
    server_slip: list[float] = []
    failures: list[str] = []
    unmatched = 0
    for sample in samples:
        truth = truths.get(sample.request_id)
        if not sample.ok:
            failures.append(sample.error or "failed")
            continue
        if truth is None or truth["ttft_truth_s"] is None or sample.ttft_s is None:
            unmatched += 1
            continue
        error_ms = (sample.ttft_s - truth["ttft_truth_s"]) * 1000
        ttft_err.append(error_ms)
        if sample.t0_ns is not None:
            start_err.append((truth["received_ns"] - sample.t0_ns) / 1e6)
            first_seen_ns = sample.t0_ns + sample.ttft_s * 1e9
            end_err.append((first_seen_ns - truth["token_ns"][0]) / 1e6)
            # The first token's time is at or after the SECOND token left the server: the read
            # that delivered it also carried later tokens (and the stamp is of the later bytes).
            # (Only where the server really sent them >= 1 ms apart: a server that fell behind
            # its schedule sends tokens back to back, and then they are one arrival anyway.)
            token_ns = truth["token_ns"]
            if (len(token_ns) >= 2 and token_ns[1] - token_ns[0] >= 1_000_000
                    and first_seen_ns >= token_ns[1]):
                stamped_with_later_token += 1
        server_slip.append((truth["ttft_truth_s"] - truth["scheduled_ttft_s"]) * 1000)
        if sample.tokens_per_second is not None and truth["tokens_per_second_truth"]:
            tps_err.append((sample.tokens_per_second - truth["tokens_per_second_truth"])
                           / truth["tokens_per_second_truth"] * 100)
        if sample.loop_lag_s is not None:
            lag_ms = sample.loop_lag_s * 1000
            lags.append(lag_ms)
            (flagged_err if lag_ms > lag_flag_ms else calm_err).append(abs(error_ms))
        if sample.cpu_s is not None:
            cpus.append(sample.cpu_s * 1000)
    probes = sum(c.probes for c in costs)
    process_cpu = sum(c.process_cpu_s for c in costs)
    summary: dict[str, Any] = {
        "samples": len(samples),
        "failed": len(failures),
        "failure_examples": sorted(set(failures))[:3],
        "unmatched": unmatched,
        "ttft_error_ms": _dist(ttft_err),
        # Where the error lies: clock started before the request reached the server (start side)
        # and first token noticed after it left the server (end side); they sum to the error.
        "start_side_ms": _dist(start_err),
        "end_side_ms": _dist(end_err),
        "first_token_stamped_after_second_sent": stamped_with_later_token,
        # How late the server sent the first token against its script (truth stays truth; a
        # large slip only means the server could not keep the stream shape at this load).
        "server_first_token_slip_ms": _dist(server_slip),
        "tokens_per_second_error_pct": _dist(tps_err),
        "loop_lag_ms": _dist(lags),
        "process_cpu_ms_per_probe": round(process_cpu / probes * 1000, 3) if probes else None,
        "round_wall_s_mean": round(sum(c.wall_s for c in costs) / len(costs), 3) if costs else None,
    }
    if cpus:
        summary["probe_cpu_ms"] = _dist(cpus)
    if lags:
        summary["lag_flagged"] = {
            "threshold_ms": lag_flag_ms,
            "count": len(flagged_err),
            "abs_ttft_error_p50_ms_flagged": _round(percentile(flagged_err, 50)),
            "abs_ttft_error_p50_ms_unflagged": _round(percentile(calm_err, 50)),
        }
    return summary


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def summarize(config: BenchConfig, raw: RawRun) -> list[dict[str, Any]]:
    levels = []
    for level in config.levels:
        clients = {}
        for name in config.clients:
            samples = [s for s in raw.samples if s.client == name and s.concurrency == level.concurrency]
            costs = [c for c in raw.costs if c.client == name and c.concurrency == level.concurrency]
            clients[name] = summarize_client(samples, raw.truths, costs, config.lag_flag_ms)
        levels.append({"concurrency": level.concurrency, "rounds": level.rounds, "clients": clients})
    return levels


def evaluate_targets(levels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The accuracy targets; `pass` is None when the run did not measure what a target needs."""
    by_n = {level["concurrency"]: level["clients"] for level in levels}

    def metric(n: int, client: str, key: str, stat: str = "abs_p50") -> float | None:
        return (by_n.get(n, {}).get(client) or {}).get(key, {}).get(stat)

    def check(name: str, criterion: str, value: float | None, limit: float | None,
              ok: Callable[[float, float], bool]) -> dict[str, Any]:
        passed = None if value is None or limit is None else bool(ok(value, limit))
        return {"target": name, "criterion": criterion, "value": value, "limit": limit, "pass": passed}

    ours_1 = metric(1, "ours", "ttft_error_ms")
    ours_100 = metric(100, "ours", "ttft_error_ms")
    targets = [
        check("single_probe_ttft", "ours, 1 stream: p50 |TTFT error| <= 2 ms", ours_1, 2.0,
              lambda v, lim: v <= lim),
        check("ttft_at_100", "ours, 100 streams: p50 |TTFT error| <= 20 ms", ours_100, 20.0,
              lambda v, lim: v <= lim),
    ]
    for peer in ("httpx", "openai_sdk"):
        peer_value = metric(100, peer, "ttft_error_ms")
        targets.append(check(
            f"ttft_at_100_vs_{peer}",
            f"ours, 100 streams: p50 |TTFT error| x 5 <= {peer}'s (limit = {peer}'s / 5)",
            ours_100, None if peer_value is None else round(peer_value / 5, 3), lambda v, lim: v <= lim))
    targets.append(check("tokens_per_second_at_100",
                         "ours, 100 streams: p50 |tokens/s error| < 2 %",
                         metric(100, "ours", "tokens_per_second_error_pct"), 2.0, lambda v, lim: v < lim))
    targets.append(check("tokens_per_second_at_100_p99",
                         "(stricter, informational) ours, 100 streams: p99 |tokens/s error| < 2 %",
                         metric(100, "ours", "tokens_per_second_error_pct", "abs_p99"), 2.0,
                         lambda v, lim: v < lim))
    return targets


# --------------------------------------------------------------------------- report

def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Probe accuracy against server-side ground truth",
        "",
        f"Command: `{report['command']}`  ",
        f"Run at {report['created_at']}; load average before {report['machine']['loadavg_before']}, "
        f"after {report['machine']['loadavg_after']}; {report['machine']['cpus']} CPUs; "
        f"kernel receive timestamps: {report['machine']['kernel_rx_timestamps']}.  ",
        f"Streams: TTFT {report['config']['ttft_ms']} ms, {report['config']['tokens']} tokens at "
        f"{report['config']['gap_ms']} ms gaps, usage on; server in its own process.",
        "",
        "TTFT error = measured - truth (ms); `|err|` = absolute. Start side = server receipt - client "
        "clock start; end side = client's first-token time - server's first-token write. "
        "tok/s error = relative (%). CPU = process CPU time per probe (ms). Lag = worst event-loop "
        "lag seen during each probe (ms). "
        "`1st token read late` = samples whose first-token time is at or after the second token "
        "left the server (the first token was only seen together with later ones).",
        "",
        "| streams | client | n | TTFT err p50 | p99 | abs p50 | abs p99 | start side p50 | end side p50 "
        "| tok/s err p50 | abs p50 | abs p99 | CPU ms/probe | probe cpu_s p50 (ms) | lag p50 | lag p99 | 1st token read late | failed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in report["levels"]:
        for name, c in level["clients"].items():
            t, tps, lag = c["ttft_error_ms"], c["tokens_per_second_error_pct"], c["loop_lag_ms"]
            probe_cpu = (c.get("probe_cpu_ms") or {}).get("p50")
            lines.append(
                f"| {level['concurrency']} | {name} | {t['n']} | {_fmt(t['p50'])} | {_fmt(t['p99'])} "
                f"| {_fmt(t['abs_p50'])} | {_fmt(t['abs_p99'])} | {_fmt(c['start_side_ms']['p50'])} "
                f"| {_fmt(c['end_side_ms']['p50'])} | {_fmt(tps['p50'], 3)} | {_fmt(tps['abs_p50'], 3)} "
                f"| {_fmt(tps['abs_p99'], 3)} | {_fmt(c['process_cpu_ms_per_probe'])} | {_fmt(probe_cpu)} "
                f"| {_fmt(lag['p50'])} | {_fmt(lag['p99'])} | {c['first_token_stamped_after_second_sent']} "
                f"| {c['failed']} |"
            )
    lines += ["", "## Targets", "", "| target | criterion | value | limit | result |", "|---|---|---:|---:|---|"]
    for target in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[target["pass"]]
        lines.append(f"| {target['target']} | {target['criterion']} | {_fmt(target['value'], 3)} "
                     f"| {_fmt(target['limit'], 3)} | {verdict} |")
    flagged = []
    for level in report["levels"]:
        info = level["clients"].get("ours", {}).get("lag_flagged")
        if info:
            flagged.append(f"N={level['concurrency']}: {info['count']} probes with loop lag > "
                           f"{info['threshold_ms']:g} ms (p50 |err| {_fmt(info['abs_ttft_error_p50_ms_flagged'])} "
                           f"ms flagged vs {_fmt(info['abs_ttft_error_p50_ms_unflagged'])} ms not)")
    if flagged:
        lines += ["", "Loop-lag flag (ours): " + "; ".join(flagged) + "."]
    return "\n".join(lines) + "\n"


def _kernel_rx_timestamps(config: BenchConfig) -> bool:
    from monitor.probes import transport

    return getattr(transport, "_SO_TIMESTAMPNS", None) is not None and not config.no_kernel_stamps


def build_report(config: BenchConfig, raw: RawRun, *, command: str, loadavg_before: Sequence[float],
                 loadavg_after: Sequence[float], started: datetime, wall_s: float) -> dict[str, Any]:
    levels = summarize(config, raw)
    targets = evaluate_targets(levels)
    decided = [t["pass"] for t in targets if t["pass"] is not None and "informational" not in t["criterion"]]
    return {
        "benchmark": "probe_accuracy",
        "created_at": started.isoformat().replace("+00:00", "Z"),
        "command": command,
        "wall_s": round(wall_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in loadavg_before],
            "loadavg_after": [round(x, 2) for x in loadavg_after],
            "kernel_rx_timestamps": _kernel_rx_timestamps(config),
        },
        "config": {
            "levels": [asdict(level) for level in config.levels],
            "clients": list(config.clients),
            "ttft_ms": str(config.ttft_ms),
            "gap_ms": str(config.gap_ms),
            "tokens": str(config.tokens),
            "warmup_rounds": config.warmup_rounds,
            "seed": config.seed,
            "lag_flag_ms": config.lag_flag_ms,
            "no_kernel_stamps": config.no_kernel_stamps,
        },
        "levels": levels,
        "targets": targets,
        "all_targets_pass": bool(decided) and all(decided),
    }


# --------------------------------------------------------------------------- command line

def _parse_levels(text: str) -> tuple[Level, ...]:
    levels = []
    for part in text.split(","):
        concurrency, _, rounds = part.strip().partition(":")
        level = Level(int(concurrency), int(rounds) if rounds else 5)
        if level.concurrency < 1 or level.rounds < 1:
            raise argparse.ArgumentTypeError(f"bad level {part!r}")
        levels.append(level)
    return tuple(levels)


def _parse_clients(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CLIENT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"clients must be among {', '.join(CLIENT_NAMES)}")
    return names


def _parse_range(text: str) -> Range:
    try:
        return Range.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=_parse_levels, default=_parse_levels("1:30,10:10,100:4"),
                        help="concurrency:rounds pairs (default 1:30,10:10,100:4)")
    parser.add_argument("--clients", type=_parse_clients, default=CLIENT_NAMES,
                        help="comma-separated subset of ours,httpx,openai_sdk")
    parser.add_argument("--ttft-ms", type=_parse_range, default=Range(200, 500))
    parser.add_argument("--gap-ms", type=_parse_range, default=Range(10, 20))
    parser.add_argument("--tokens", type=_parse_range, default=Range(40, 64))
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--settle-s", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lag-flag-ms", type=float, default=10.0,
                        help="loop lag above which a probe counts as measured under load")
    parser.add_argument("--no-kernel-stamps", action="store_true",
                        help="diagnostic: ours stamps reads in the event loop instead of using the "
                             "kernel's receive timestamps")
    parser.add_argument("--output", type=Path, default=DEFAULT_JSON,
                        help="JSON report path (a .md summary is written beside it)")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = BenchConfig(levels=args.levels, clients=args.clients, ttft_ms=args.ttft_ms,
                         gap_ms=args.gap_ms, tokens=args.tokens, warmup_rounds=args.warmup_rounds,
                         settle_s=args.settle_s, seed=args.seed, lag_flag_ms=args.lag_flag_ms,
                         no_kernel_stamps=args.no_kernel_stamps)
    command = "python -m bench.probe_accuracy " + " ".join(sys.argv[1:] if argv is None else argv)
    progress = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    started = datetime.now(timezone.utc)
    loadavg_before = os.getloadavg()
    t0 = time.perf_counter()
    with TruthServer() as server:
        raw = asyncio.run(run_benchmark(config, server.url, server.fetch, progress))
    report = build_report(config, raw, command=command.strip(), loadavg_before=loadavg_before,
                          loadavg_after=os.getloadavg(), started=started, wall_s=time.perf_counter() - t0)
    markdown = render_markdown(report)
    write_results(args.output, report, markdown)
    if not args.quiet:
        print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
