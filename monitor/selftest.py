"""The self-test: every probing process measures a loopback reference endpoint with known timings,
at start and every `Settings.selftest_interval_s`, through the same probe engine and HTTP client
as real probes, and so knows its own TTFT error.

The reference endpoint is a `monitor.testing.stream_server.StreamServer` on 127.0.0.1 in its own
thread and event loop, answering the OpenAI protocol with a first token REFERENCE_TTFT_S after the
request and a few more tokens. It is not a catalog model: its probes are never recorded, stored
or counted in any figure; only the error is exported.

- error = measured TTFT - true TTFT, where the true TTFT is the reference server's own clock
  (kernel receipt of the request to the write of the first token frame, `ttft_truth_s`), so the
  error is what the monitor adds: a blocked or starved event loop, a saturated CPU, GC pauses.
- while the latest error exceeds `max_error_s` (or the self-test probe itself failed), the
  process is *suspect*: every probe the runner records meanwhile is flagged `suspect`
  (`Runner(is_suspect=...)`), `llm_probes_suspect_total` counts them, `llm_monitor_selftest_suspect` is 1, and
  the alert LLMMonitorSelfTestErrorHigh fires when it lasts 10 minutes. A suspect process re-checks every
  RECHECK_S (or its interval when shorter), so the flag clears soon after the load does.
- `llm_monitor_selftest_ttft_error_seconds` holds the latest error; a failed self-test sets the
  elapsed time of its attempt (a lower bound of the error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import httpx

from monitor.probes.base import ProbeResult, ProbeTarget
from monitor.probes.engine import run_probe
from monitor.probes.meters import LoopLagMonitor
from monitor.testing.stream_server import (
    ServedRequest,
    StreamServer,
    json_response,
    openai_stream,
    sse_stream_response,
)

if TYPE_CHECKING:
    from monitor.metrics import CostSelftestMetrics

log = logging.getLogger(__name__)

REFERENCE_TTFT_S = 0.2
REFERENCE_TOKENS = 8
REFERENCE_GAP_S = 0.005
REFERENCE_TIMEOUT_S = 10.0
RECHECK_S = 15.0
CHAT_PATH = "/v1/chat/completions"

ProbeFn = Callable[..., Awaitable[ProbeResult]]


@dataclass(frozen=True)
class SelfTestReading:
    ok: bool  # the reference probe succeeded and the server saw its first token go out
    measured_ttft_s: float | None
    true_ttft_s: float | None
    error_s: float  # measured - true; for a failed self-test, the attempt's elapsed time
    suspect: bool  # error_s > max_error_s, or the self-test failed


class ReferenceEndpoint:
    """The loopback server with known timings. `on_request` (tests, benchmarks) is called in the
    server's thread when a reference chat request arrives."""

    def __init__(self, *, ttft_s: float = REFERENCE_TTFT_S, on_request: Callable[[], None] | None = None) -> None:
        self.ttft_s = ttft_s
        self._on_request = on_request
        self.server = StreamServer()
        self.server.route("GET", "/v1/models", json_response(200, {"data": [{"id": "reference"}]}))
        self.server.route("POST", CHAT_PATH, self._respond)

    def _respond(self, _request: ServedRequest):
        if self._on_request is not None:
            self._on_request()
        return sse_stream_response(openai_stream(ttft_s=self.ttft_s, gap_s=REFERENCE_GAP_S, n_tokens=REFERENCE_TOKENS))

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def target(self) -> ProbeTarget:
        return ProbeTarget(
            protocol="openai", base_url=f"{self.server.url}/v1", model="reference",
            max_tokens=REFERENCE_TOKENS * 4, timeout_s=REFERENCE_TIMEOUT_S, connect_timeout_s=REFERENCE_TIMEOUT_S,
        )

    def take_truth(self) -> float | None:
        """The true TTFT of the latest reference request, and forget the server's request log
        (it would otherwise grow for as long as the process runs)."""
        requests = self.server.requests_to(CHAT_PATH, "POST")
        self.server.requests.clear()
        if not requests or not requests[-1].token_ns:
            return None
        return requests[-1].ttft_truth_s()


class SelfTest:
    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        max_error_s: float,
        interval_s: float,
        metrics: "CostSelftestMetrics | None" = None,
        lag_monitor: LoopLagMonitor | None = None,
        reference: ReferenceEndpoint | None = None,
        probe_fn: ProbeFn = run_probe,
    ) -> None:
        self._client = client
        self.max_error_s = max_error_s
        self.interval_s = interval_s
        self._metrics = metrics
        self._lag_monitor = lag_monitor
        self.reference = reference or ReferenceEndpoint()
        self._probe_fn = probe_fn
        self.suspect = False
        self.last: SelfTestReading | None = None
        self._started = False
        if metrics is not None:
            metrics.selftest_max_error_seconds.set(max_error_s)

    def start(self) -> None:
        if not self._started:
            self.reference.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.reference.stop()
            self._started = False

    def is_suspect(self) -> bool:
        return self.suspect

    async def run_once(self) -> SelfTestReading:
        self.start()
        self.reference.take_truth()  # nothing stale from an abandoned attempt
        began = time.perf_counter()
        result = await self._probe_fn(self._client, self.reference.target(), lag_monitor=self._lag_monitor)
        elapsed = time.perf_counter() - began
        truth = self.reference.take_truth()
        if result.ok and result.ttft_s is not None and truth is not None:
            error = result.ttft_s - truth
            reading = SelfTestReading(True, result.ttft_s, truth, error, error > self.max_error_s)
        else:
            reading = SelfTestReading(False, result.ttft_s, truth, elapsed, True)
        self._apply(reading, result)
        return reading

    def _apply(self, reading: SelfTestReading, result: ProbeResult) -> None:
        # Every reading at DEBUG (bench/selftest.py turns this logger on); state changes below.
        log.debug("self-test reading: ok=%s error_s=%.6f measured_s=%s true_s=%s",
                  reading.ok, reading.error_s, reading.measured_ttft_s, reading.true_ttft_s)
        if self._metrics is not None:
            self._metrics.record_selftest(reading.error_s, ok=reading.ok, suspect=reading.suspect)
        if reading.suspect and not self.suspect:
            if reading.ok:
                log.warning(
                    "self-test: TTFT error %.3f s is above %.3f s; probes are flagged suspect until it recovers",
                    reading.error_s, self.max_error_s,
                )
            else:
                log.warning("self-test probe failed (%s); probes are flagged suspect until it succeeds", result.error_kind)
        elif self.suspect and not reading.suspect:
            log.info("self-test: TTFT error %.3f s is back within %.3f s", reading.error_s, self.max_error_s)
        self.suspect = reading.suspect
        self.last = reading

    def next_delay_s(self) -> float:
        return min(self.interval_s, RECHECK_S) if self.suspect else self.interval_s

    async def run(self) -> None:
        """The background task: a self-test now, then every interval (sooner while suspect).
        Only cancellation ends it."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("self-test error")
            await asyncio.sleep(self.next_delay_s())
