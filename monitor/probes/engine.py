"""The timing core: every probe, whatever its protocol, goes through `run_probe` here.

Protocols are declarative (`WireProtocol`: build the request, parse one event, name a warm-up
URL); this module owns the timeline: warm-up, send, read, measure, and all clocks. Which
`ErrorKind` a failure is, its wording and the scrubbing of provider text are `outcomes.py`; the
network layer (sockets stamped on arrival, timed DNS, the shared client) is `transport.py`; the
audit meters are `meters.py`.

How a probe measures (all intervals from `time.perf_counter_ns()`):
1. Config checks (`config_error`) happen before any network call.
2. Warm-up: a cheap `GET warmup_url` opens the connection. Its cold set-up is reported as
   `connect_s` = DNS (our own timed `loop.getaddrinfo`, done in `transport._TimedBackend`)
   + TCP connect + TLS handshake (httpx `trace` events). Any status is fine; a connection failure
   here is the probe's dns/connect/tls error.
3. The measured request: the clock starts at the `send_request_headers.started` trace event,
   i.e. when the request is handed to its (warm) connection, not while it waits for a pooled
   connection or behind other work. Each network read is timestamped by the connection itself
   (`transport._StreamProtocol`) as it arrives, before any HTTP or SSE decoding; events are
   framed, then JSON-parsed only once complete, and carry the time of the read that completed
   them. On Linux that time is the kernel's receive timestamp (SO_TIMESTAMPNS), so a busy event
   loop delays the processing of a token but not its timestamp.
4. Limits: connect (`connect_timeout_s`), first token (`first_token_timeout_s`), stall between
   reads (`stall_timeout_s`, once the response started) and total (`timeout_s`, which bounds the
   measured request; the warm-up has its own bound). See `_Deadline`.
5. Audit: worst event-loop lag while the probe ran (`meters.LoopLagMonitor`) and the probe's own
   CPU time (`meters.CpuMeter`), so a figure taken on an overloaded monitor can be recognised.

Outcome: `ok` when at least one token-bearing delta (answer text, reasoning or a tool call, the
same events that define `ttft_s`) arrived and the stream ended cleanly (with the protocol's end
marker when it has one). `output_tokens` is the provider's usage count when the stream carries one
that the stream allows (`usage`; see `sanitize.reconcile_usage`), else the number of
token-bearing events (`estimate`); the decode rate follows the contract's formula over the first
and last token-bearing events.

After the clock stops, `canary.judge` adds what the result says beyond timing: the answer
canary's verdict on the visible text (`answer_ok`), the provider's reported prompt size
(`prompt_tokens`, against the workload profile `input_tokens` the prompt was padded to) and, for
Ollama, the server's own timings and the `cold_start` flag.

No retries inside a measured probe. `run_probe` returns a `ProbeResult` for every probe outcome;
only `asyncio.CancelledError` (and interpreter-exiting errors) propagate.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import httpx

from monitor.probes import canary, outcomes, prompt
from monitor.probes.answer import MAX_ANSWER_CHARS
from monitor.probes.base import (
    DEFAULT_INPUT_TOKENS,
    Delta,
    ProbeResult,
    ProbeTarget,
    RequestSpec,
    ServerTimings,
    TokenCountSource,
    WireProtocol,
)
from monitor.probes.framing import DECODERS
from monitor.probes.meters import CpuMeter, LoopLagMonitor
from monitor.probes.outcomes import ProbeFailure
from monitor.probes.registry import PROTOCOLS
from monitor.probes.sanitize import sanitize
from monitor.probes.transport import CURRENT_CLOCK, ProbeClock, decoded_body
from monitor.probes.urls import http_url_problem
from monitor.stats import decode_rate

__all__ = [
    "build_prompt",
    "new_nonce",
    "run_probe",
]

# Error bodies and warm-up bodies are read only this far.
_ERROR_BODY_LIMIT = 64 * 1024
_WARMUP_BODY_LIMIT = 8 * 1024 * 1024
# After its connection is up, the warm-up exchange gets this long before we give up on it and
# go on (the measured request then opens its own connection).
_WARMUP_RESPONSE_LIMIT_S = 5.0


# --------------------------------------------------------------------------- request shape

def new_nonce() -> str:
    return secrets.token_hex(6)


def build_prompt(nonce: str, input_tokens: int = DEFAULT_INPUT_TOKENS) -> str:
    """The probe prompt's text: the answer canary's count, padded to the workload profile, nonce
    first (`monitor.probes.prompt` owns it and says why)."""
    return prompt.build_prompt(nonce, input_tokens).text


# --------------------------------------------------------------------------- measurement state

class _Trace:
    """Collects httpcore trace events (`trace` request extension) of one request."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: dict[str, int] = {}

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        # name looks like "connection.connect_tcp.started" or "http11.send_request_headers.started"
        self.events.setdefault(name.split(".", 1)[1], time.perf_counter_ns())

    def span_ns(self, step: str) -> int | None:
        start = self.events.get(f"{step}.started")
        end = self.events.get(f"{step}.complete")
        return None if start is None or end is None else end - start

    def phase_in_progress(self) -> str | None:
        """The connection phase that started but never completed (for classifying failures)."""
        for step in ("start_tls", "connect_tcp"):
            if f"{step}.started" in self.events and f"{step}.complete" not in self.events:
                return step
        return None

    @property
    def opened_connection(self) -> bool:
        return "connect_tcp.started" in self.events

    @property
    def request_sent_ns(self) -> int | None:
        return self.events.get("send_request_headers.started")

    @property
    def headers_received_ns(self) -> int | None:
        return self.events.get("receive_response_headers.complete")


@dataclass
class _Phases:
    dns_ns: int | None = None
    tcp_ns: int | None = None
    tls_ns: int | None = None

    def connect_s(self) -> float | None:
        parts = [p for p in (self.dns_ns, self.tcp_ns, self.tls_ns) if p is not None]
        return _s(sum(parts)) if parts else None


class _Measurement:
    """Mutable record of one probe, turned into a ProbeResult at the end."""

    def __init__(self, target: ProbeTarget, protocol_name: str) -> None:
        self.target = target
        self.protocol_name = protocol_name
        self.wall_start = datetime.now(timezone.utc)
        self.perf_start = time.perf_counter_ns()
        self.request_start_ns: int | None = None
        self.headers_ns: int | None = None
        self.end_ns: int | None = None
        self.first_token_ns: int | None = None
        self.first_answer_ns: int | None = None
        self.first_reasoning_ns: int | None = None
        self.last_token_ns: int | None = None
        self.token_chunks = 0
        self.first_read_tokens = 0  # token events sharing the first token's read
        self.usage_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.server_timings: ServerTimings | None = None
        # Visible answer text for the answer canary, kept up to MAX_ANSWER_CHARS.
        self.answer_parts: list[str] = []
        self.answer_chars = 0
        self.finish_reason: str | None = None
        self.events = 0
        self.stream_bytes = 0
        self.streaming = False  # a 2xx stream was being read
        self.http_status: int | None = None
        self.http_version: str | None = None
        self.connection_reused: bool | None = None
        self.phases = _Phases()

    def apply(self, delta: Delta, at_ns: int) -> None:
        if delta.has_token:
            self.token_chunks += 1
            if self.first_token_ns is None:
                self.first_token_ns = at_ns
            if at_ns == self.first_token_ns:  # events carry the time of the read that held them
                self.first_read_tokens += 1
            self.last_token_ns = at_ns
            if delta.content:
                if self.first_answer_ns is None:
                    self.first_answer_ns = at_ns
                if self.answer_chars < MAX_ANSWER_CHARS:
                    self.answer_parts.append(delta.content)
                    self.answer_chars += len(delta.content)
            if delta.reasoning and self.first_reasoning_ns is None:
                self.first_reasoning_ns = at_ns
        if delta.usage_output_tokens is not None:
            self.usage_tokens = delta.usage_output_tokens
        if delta.usage_input_tokens is not None:
            self.prompt_tokens = delta.usage_input_tokens
        if delta.server_timings is not None:
            self.server_timings = delta.server_timings
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason

    def result(self, failure: ProbeFailure | None) -> ProbeResult:
        start = self.request_start_ns if self.request_start_ns is not None else self.perf_start
        end = self.end_ns if self.end_ns is not None else time.perf_counter_ns()

        def since_start(ns: int | None) -> float | None:
            return None if ns is None else _s(ns - start)

        output_tokens: int | None = None
        source: TokenCountSource | None = None
        if self.streaming:
            if self.usage_tokens is not None:
                output_tokens, source = self.usage_tokens, TokenCountSource.USAGE
            else:
                output_tokens, source = self.token_chunks, TokenCountSource.ESTIMATE
        tokens_per_second = None
        if output_tokens is not None and self.first_token_ns is not None and self.last_token_ns is not None:
            rate = decode_rate(output_tokens, self.token_chunks, self.first_token_ns / 1e9, self.last_token_ns / 1e9)
            tokens_per_second = None if rate is None else round(rate, 3)
        result = ProbeResult(
            ok=failure is None,
            error_kind=None if failure is None else failure.kind,
            error=None if failure is None else failure.message,
            http_status=self.http_status if failure is None or failure.status is None else failure.status,
            started_at=self.wall_start + timedelta(microseconds=(start - self.perf_start) / 1000),
            ttft_s=since_start(self.first_token_ns),
            # A connection that never came up has no set-up time (its phases stay in dns_s/tcp_s).
            connect_s=(None if failure is not None and failure.kind in outcomes.CONNECTION_KINDS
                       else self.phases.connect_s()),
            total_s=_s(end - start),
            output_tokens=output_tokens,
            token_count_source=source,
            tokens_per_second=tokens_per_second,
            protocol=self.protocol_name,
            model=self.target.model,
            first_answer_s=since_start(self.first_answer_ns),
            first_reasoning_s=since_start(self.first_reasoning_ns),
            last_token_s=since_start(self.last_token_ns),
            headers_s=since_start(self.headers_ns),
            dns_s=_s_or_none(self.phases.dns_ns),
            tcp_s=_s_or_none(self.phases.tcp_ns),
            tls_s=_s_or_none(self.phases.tls_ns),
            token_chunks=self.token_chunks,
            usage_tokens=self.usage_tokens,
            first_read_tokens=self.first_read_tokens,
            finish_reason=self.finish_reason,
            http_version=self.http_version,
            connection_reused=self.connection_reused,
            stream_bytes=self.stream_bytes,
            retry_after_s=None if failure is None else failure.retry_after_s,
            input_tokens=self.target.input_tokens,
            prompt_tokens=self.prompt_tokens,
        )
        return outcomes.scrub_result(result, self.target)


def _s(ns: int) -> float:
    return round(ns / 1e9, 6)


def _s_or_none(ns: int | None) -> float | None:
    return None if ns is None else _s(ns)


# --------------------------------------------------------------------------- the probe

async def run_probe(client: httpx.AsyncClient, target: ProbeTarget, *,
                    lag_monitor: LoopLagMonitor | None = None) -> ProbeResult:
    """Run one streaming probe against `target`; never raises for probe outcomes."""
    started_ns = time.perf_counter_ns()
    meter = CpuMeter(_probe(client, target))
    result: ProbeResult = await meter
    result.cpu_s = round(meter.cpu_ns / 1e9, 6)
    if lag_monitor is not None:
        result.loop_lag_s = lag_monitor.worst_lag_s(started_ns, time.perf_counter_ns())
    return sanitize(result, max_tokens=target.max_tokens)


async def _probe(client: httpx.AsyncClient, target: ProbeTarget) -> ProbeResult:
    protocol = PROTOCOLS.get(target.protocol)
    m = _Measurement(target, protocol.name if protocol is not None else target.protocol)
    problem = _config_problem(target, protocol)
    if problem is not None:
        return m.result(outcomes.config_failure(problem))
    assert protocol is not None
    try:
        probe_prompt = prompt.build_prompt(new_nonce(), target.input_tokens)
        spec = protocol.build_request(target, probe_prompt.text)
        warmup_url = protocol.warmup_url(target)
        warmup_headers = dict(protocol.warmup_headers(target)) if protocol.warmup_headers else {}
    except Exception as exc:  # a protocol that cannot express this target is a config problem
        return m.result(outcomes.build_failure(exc))

    clock = ProbeClock()
    token = CURRENT_CLOCK.set(clock)
    try:
        if warmup_url:
            await _warm_up(client, target, warmup_url, warmup_headers, m, clock)
        await _measure(client, target, protocol, spec, m, clock)
    except ProbeFailure as failure:
        return m.result(failure)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug or an unforeseen library error still yields a result
        if m.end_ns is None:
            m.end_ns = time.perf_counter_ns()
        return m.result(outcomes.unexpected_failure(exc, streaming=m.streaming))
    finally:
        CURRENT_CLOCK.reset(token)
    return canary.judge(m.result(None), target, probe_prompt, "".join(m.answer_parts), m.server_timings)


def _config_problem(target: ProbeTarget, protocol: WireProtocol | None) -> str | None:
    if target.config_error:
        return target.config_error
    if protocol is None:
        return f"unknown protocol {target.protocol!r}"
    if target.api_key_env and (target.api_key is None or not target.api_key.reveal()):
        return f"API key variable {target.api_key_env} is not set"
    if problem := http_url_problem(target.base_url):
        return f"base URL: {problem}"
    if target.max_tokens <= 0 or target.timeout_s <= 0:
        return "max_tokens and timeout must be positive"
    return None


async def _warm_up(client: httpx.AsyncClient, target: ProbeTarget, url: str,
                   headers: dict[str, str], m: _Measurement, clock: ProbeClock) -> None:
    """Open the connection with a cheap GET; only connection failures matter."""
    trace = _Trace()
    timeout = httpx.Timeout(connect=target.connect_timeout_s, read=_WARMUP_RESPONSE_LIMIT_S,
                            write=_WARMUP_RESPONSE_LIMIT_S, pool=target.connect_timeout_s)
    request = client.build_request("GET", url, headers=headers, timeout=timeout,
                                   extensions={"trace": trace})
    try:
        async with asyncio.timeout(target.connect_timeout_s + _WARMUP_RESPONSE_LIMIT_S):
            response = await client.send(request, stream=True)
            try:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > _WARMUP_BODY_LIMIT:
                        break  # closing unread drops the connection; the measured request reconnects
            finally:
                await response.aclose()
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        _record_phases(m, trace, clock)
        m.end_ns = time.perf_counter_ns()
        raise outcomes.connection_failure(exc, phase=trace.phase_in_progress(), target=target) from None
    except TimeoutError:
        if not trace.opened_connection or trace.phase_in_progress() is not None:
            _record_phases(m, trace, clock)
            m.end_ns = time.perf_counter_ns()
            raise outcomes.connection_failure(httpx.ConnectTimeout("timed out"), phase=trace.phase_in_progress(),
                                              target=target) from None
    except (httpx.HTTPError, ssl.SSLError, OSError):
        pass  # the connection came up; a warm-up that fails later does not fail the probe
    _record_phases(m, trace, clock)


def _record_phases(m: _Measurement, trace: _Trace, clock: ProbeClock) -> None:
    if not trace.opened_connection or m.phases.tcp_ns is not None:
        return
    m.phases.dns_ns = clock.dns_ns
    # Our backend times TCP alone; with another backend the trace span includes DNS.
    m.phases.tcp_ns = clock.tcp_ns if clock.tcp_ns is not None else trace.span_ns("connect_tcp")
    m.phases.tls_ns = trace.span_ns("start_tls")


class _Deadline:
    """The probe's limits on one `asyncio.Timeout`.

    The timeout itself holds the nearer of the total and first-token limits (moved once, when the
    first token arrives). The stall limit is a lazy watchdog: each read only notes the time
    (`touch`), and a timer that fires at most once per stall period re-arms itself from the
    latest read, so a read costs one clock read and one attribute write, not a timer reschedule.
    """

    def __init__(self, target: ProbeTarget, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.loop = loop
        now = loop.time()
        self.total_at = now + target.timeout_s
        self.first_token_at = (now + target.first_token_timeout_s
                               if target.first_token_timeout_s is not None else None)
        self.reason = "total"
        self.last_read = now
        self._limit: asyncio.Timeout | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def initial(self) -> float:
        if self.first_token_at is not None and self.first_token_at < self.total_at:
            self.reason = "first_token"
            return self.first_token_at
        return self.total_at

    def response_started(self, limit: asyncio.Timeout) -> None:
        """From here on, silence between reads is bounded by the stall limit."""
        self._limit = limit
        self.last_read = self.loop.time()
        self._arm(self.last_read + self.target.stall_timeout_s)

    def touch(self) -> None:
        self.last_read = self.loop.time()

    def first_token_seen(self, limit: asyncio.Timeout) -> None:
        if self.reason == "first_token":
            self.reason = "total"
            limit.reschedule(self.total_at)

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _arm(self, when: float) -> None:
        self._watchdog = self.loop.call_at(when, self._check_stall)

    def _check_stall(self) -> None:
        due = self.last_read + self.target.stall_timeout_s
        if self.loop.time() < due:
            self._arm(due)
            return
        limit = self._limit
        if limit is not None and not limit.expired() and (limit.when() or 0) > self.loop.time():
            self.reason = "stall"
            limit.reschedule(self.loop.time())

    def failure(self, *, headers_seen: bool) -> ProbeFailure:
        return outcomes.timeout_failure(self.reason, self.target, headers_seen=headers_seen)


async def _measure(client: httpx.AsyncClient, target: ProbeTarget, protocol: WireProtocol,
                   spec: RequestSpec, m: _Measurement, clock: ProbeClock) -> None:
    loop = asyncio.get_running_loop()
    deadline = _Deadline(target, loop)
    trace = _Trace()
    headers = {"accept-encoding": "identity", **dict(spec.headers)}
    timeout = httpx.Timeout(connect=target.connect_timeout_s, read=None, write=target.timeout_s,
                            pool=target.timeout_s)
    request = client.build_request("POST", spec.url, headers=headers, json=dict(spec.json),
                                   timeout=timeout, extensions={"trace": trace})
    fallback_start = time.perf_counter_ns()
    response: httpx.Response | None = None
    try:
        async with asyncio.timeout_at(deadline.initial()) as limit:
            try:
                response = await client.send(request, stream=True)
            finally:
                m.request_start_ns = trace.request_sent_ns or fallback_start
                m.connection_reused = not trace.opened_connection
                _record_phases(m, trace, clock)
            # The read that completed the head (kernel-stamped) when our backend made it.
            started = m.request_start_ns or 0
            m.headers_ns = (clock.last_read_ns if clock.last_read_ns > started
                            else trace.headers_received_ns or time.perf_counter_ns())
            m.http_status = response.status_code
            m.http_version = response.http_version
            if not 200 <= response.status_code < 300:
                await _fail_on_status(response, protocol, m)
            await _reject_non_stream_body(response, protocol, m)
            await _read_stream(response, protocol, target, m, clock, deadline, limit)
    except ProbeFailure:
        if m.end_ns is None:
            m.end_ns = time.perf_counter_ns()
        raise
    except TimeoutError:
        m.end_ns = time.perf_counter_ns()
        phase = trace.phase_in_progress()
        if phase is not None:
            raise outcomes.connection_failure(httpx.ConnectTimeout("timed out"), phase=phase, target=target) from None
        raise deadline.failure(headers_seen=response is not None) from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        m.end_ns = time.perf_counter_ns()
        raise outcomes.connection_failure(exc, phase=trace.phase_in_progress(), target=target) from None
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        m.end_ns = time.perf_counter_ns()
        # A read after the request went out means the server answered something.
        answered = m.request_start_ns is not None and clock.last_read_ns > m.request_start_ns
        raise outcomes.transport_failure(exc, response_started=response is not None,
                                         bytes_received=answered) from None
    finally:
        deadline.stop()
        if response is not None:
            await response.aclose()


async def _read_stream(response: httpx.Response, protocol: WireProtocol, target: ProbeTarget,
                       m: _Measurement, clock: ProbeClock, deadline: _Deadline,
                       limit: asyncio.Timeout) -> None:
    m.streaming = True
    decoder = DECODERS[protocol.framing]()
    parse = protocol.parse_event
    max_bytes = target.max_stream_bytes
    deadline.response_started(limit)
    read_ns = 0
    # We ask for identity encoding; a server that compresses anyway is inflated in bounded steps.
    async for chunk in decoded_body(response):
        # The socket read that delivered these bytes; falls back to now with a foreign client.
        read_ns = clock.last_read_ns or time.perf_counter_ns()
        deadline.touch()
        m.stream_bytes += len(chunk)
        if m.stream_bytes > max_bytes:
            m.end_ns = read_ns
            raise outcomes.stream_over_limit(max_bytes)
        had_token = m.first_token_ns is not None
        if _consume(decoder.feed(chunk), parse, m, read_ns):
            m.end_ns = read_ns
            return  # explicit end marker: stop reading (and do not wait for the server to close)
        if not had_token and m.first_token_ns is not None:
            deadline.first_token_seen(limit)
    eof_ns = clock.last_read_ns or time.perf_counter_ns()
    m.end_ns = max(eof_ns, read_ns)
    if _consume(decoder.flush(), parse, m, m.end_ns):
        return
    if m.events == 0 and m.stream_bytes > 0 and not decoder.comments:
        raise outcomes.not_an_event_stream()
    if protocol.requires_end_marker:
        raise outcomes.missing_end_marker()
    if protocol.requires_finish_reason and m.finish_reason is None:
        raise outcomes.missing_finish_reason()
    if m.first_token_ns is None:
        raise outcomes.ended_without_token()


def _consume(items: list[Any], parse: Any, m: _Measurement, at_ns: int) -> bool:
    """Parse complete events; returns True at the end marker. Raises ProbeFailure in-band."""
    for item in items:
        m.events += 1
        try:
            delta = parse(item)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise outcomes.malformed_event(exc) from None
        if delta is None:
            continue
        m.apply(delta, at_ns)
        if delta.error:
            raise outcomes.error_event(delta.error)
        if delta.done:
            if m.first_token_ns is None:
                raise outcomes.finished_without_token(m.finish_reason)
            return True
    return False


async def _reject_non_stream_body(response: httpx.Response, protocol: WireProtocol, m: _Measurement) -> None:
    """A 2xx carrying a JSON document or an HTML page where a stream was asked for."""
    content_type = response.headers.get("content-type", "")
    if not outcomes.is_non_stream_body(content_type, protocol):
        return
    body = await _read_limited(response, _ERROR_BODY_LIMIT)
    m.end_ns = time.perf_counter_ns()
    m.stream_bytes = len(body)
    raise outcomes.non_stream_body_failure(response.status_code, content_type, body, protocol)


async def _fail_on_status(response: httpx.Response, protocol: WireProtocol, m: _Measurement) -> None:
    body = await _read_limited(response, _ERROR_BODY_LIMIT)
    m.end_ns = time.perf_counter_ns()
    raise outcomes.status_failure(response.status_code, response.headers, body, protocol)


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in decoded_body(response):
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]
