"""probe -> store -> metrics: the only place that composes the three.

`Runner.probe_endpoint` runs one probe under the global concurrency bound, updates metrics and
live figures at once, and hands the result to `ResultBuffer`. The buffer's single writer task
persists results in batches; while the database is unreachable it keeps up to `capacity`
results (oldest dropped first, counted and logged) and retries until the database is back, so
probing never waits for storage. A row the database (or its driver) cannot take is found by
writing the batch row by row, then dropped alone, counted and logged; whatever a write raises,
the writer task carries on, and `readiness()` reports it if it ever stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Mapping

import httpx

from monitor.catalog import EndpointConfig, ModelConfig
from monitor.cost import Usage, price_probe
from monitor.live import LiveFigures
from monitor.metrics import Metrics
from monitor.probes.base import DEFAULT_LOCATION, ProbeResult, ProbeTarget, Trigger
from monitor.probes.engine import run_probe
from monitor.probes.meters import LoopLagMonitor
from monitor.probes.prompt import is_size_mismatch
from monitor.probes.toolcall import ToolCallOutcome, run_tool_call
from monitor.store import Store, StoreError, StoreUnavailableError

log = logging.getLogger(__name__)

ProbeFn = Callable[..., Awaitable[ProbeResult]]
ToolCallFn = Callable[[httpx.AsyncClient, ProbeTarget], Awaitable[ToolCallOutcome]]
Row = tuple[str, str, ProbeResult]


class ResultBuffer:
    """Bounded write-behind buffer in front of the store, with one writer task."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        capacity: int,
        batch_size: int = 500,
        retry_s: float = 2.0,
        write_timeout_s: float = 15.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._pending: deque[Row] = deque()
        self._capacity = capacity
        self._batch_size = batch_size
        self._retry_s = retry_s
        self._write_timeout_s = write_timeout_s
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self.healthy = True  # the last write attempt succeeded
        self.dropped = 0
        self._writer_stopped = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, model_id: str, provider: str, result: ProbeResult) -> None:
        if len(self._pending) >= self._capacity:
            lost_model, lost_provider, lost = self._pending.popleft()
            self.dropped += 1
            self._metrics.inc_dropped(1)
            log.error(
                "result buffer full (%d): dropped the oldest unsaved probe of %s/%s from %s",
                self._capacity, lost_model, lost_provider, lost.started_at.isoformat(),
            )
        self._pending.append((model_id, provider, result))
        self._metrics.set_buffered(len(self._pending))
        self._wake.set()

    async def flush(self) -> bool:
        """Write everything pending. Returns False (keeping the rows) if the database fails."""
        async with self._write_lock:
            while self._pending:
                batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
                try:
                    await self._write(batch)
                except _UNAVAILABLE as exc:
                    self._mark_unavailable(exc)
                    return False
                except Exception:
                    # The batch's data was refused (StoreError), or a value broke the driver or
                    # the store in some other way: find and drop only the offending rows.
                    written, completed = await self._write_one_by_one(batch)
                    if not completed:
                        return False
                else:
                    written = len(batch)
                    for row in batch:
                        self._forget(row)
                self._metrics.set_buffered(len(self._pending))
                if written:  # a batch whose every row was refused is no sign of a working database
                    self._metrics.mark_db_write(time.time())
                    if not self.healthy:
                        log.info("database writes recovered; %d results still pending", len(self._pending))
                    self.healthy = True
            return True

    async def _write(self, rows: list[Row]) -> None:
        await asyncio.wait_for(self._store.insert_results(rows), timeout=self._write_timeout_s)

    async def _write_one_by_one(self, batch: list[Row]) -> tuple[int, bool]:
        """Write the batch (the head of the queue) row by row, dropping the rows the database
        refuses; each row leaves the queue once handled, so none is written twice. Returns
        (rows written, whether the whole batch was handled before the database became
        unavailable)."""
        written = 0
        for row in batch:
            model_id, provider, result = row
            try:
                await self._write([row])
                written += 1
            except _UNAVAILABLE as exc:
                self._mark_unavailable(exc)
                self._metrics.set_buffered(len(self._pending))
                return written, False
            except Exception as exc:
                self.dropped += 1
                self._metrics.inc_dropped(1)
                log.error(
                    "database refused the probe of %s/%s from %s, dropped: %s",
                    model_id, provider, result.started_at.isoformat(), _without_values(exc),
                )
            self._forget(row)
        return written, True

    def _forget(self, row: Row) -> None:
        """Take a handled row off the head of the queue, unless `put` already dropped it there
        (a full buffer drops its oldest row, which can be one being written)."""
        if self._pending and self._pending[0] is row:
            self._pending.popleft()

    def _mark_unavailable(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning(
                "database write failed, buffering results (%d pending): %s",
                len(self._pending), _short(exc),
            )
        self.healthy = False

    def readiness(self) -> dict[str, bool]:
        """`database_writes`: the last write attempt succeeded (SQLite can answer SELECT 1 while
        refusing writes). `writer`: the writer task has not stopped."""
        return {"database_writes": self.healthy, "writer": not self._writer_stopped}

    async def run(self) -> None:
        """The writer task: flush on every new result, retry every `retry_s` while failing. Only
        cancellation ends it; an unexpected error is logged and the next round retries."""
        try:
            while True:
                timeout = None if self.healthy else self._retry_s
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except TimeoutError:
                    pass
                self._wake.clear()
                try:
                    await self.flush()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._mark_unavailable(exc)
                    log.error(
                        "result writer error, retrying in %.0f s: %s", self._retry_s, _without_values(exc)
                    )
        except BaseException as exc:
            self._writer_stopped = True
            if not isinstance(exc, asyncio.CancelledError):
                log.error("result writer stopped: %s; results are no longer written", _without_values(exc))
            raise


# A write that failed for the database's sake, not the rows': keep the rows and retry later.
_UNAVAILABLE = (StoreUnavailableError, TimeoutError, OSError)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _without_values(exc: BaseException) -> str:
    """What went wrong, without a row's values: a store error's own message (the store keeps
    values out of it), otherwise the exception class only (its message may quote the value)."""
    return _short(exc) if isinstance(exc, StoreError) else type(exc).__name__


class Runner:
    """Runs probes for catalog endpoints and routes each result to metrics, live figures, store."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        metrics: Metrics,
        live: LiveFigures,
        buffer: ResultBuffer,
        environ: Mapping[str, str],
        max_concurrent: int,
        lag_monitor: LoopLagMonitor | None = None,
        probe_fn: ProbeFn = run_probe,
        location: str = DEFAULT_LOCATION,
        tool_call_fn: ToolCallFn = run_tool_call,
        is_suspect: Callable[[], bool] | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._live = live
        self._buffer = buffer
        self._environ = environ
        self._slots = asyncio.Semaphore(max_concurrent)
        self._lag_monitor = lag_monitor
        self._probe_fn = probe_fn
        self._tool_call_fn = tool_call_fn
        self.location = location
        # The self-test's verdict (monitor/selftest.py): True while the monitor's own TTFT error
        # exceeds its threshold; probes finished meanwhile are recorded as `suspect`.
        self._is_suspect = is_suspect
        # Called with (model, endpoint, result) after every probe this runner made is recorded
        # (confirmation scheduling, canaries, cost): see `add_listener`.
        self._listeners: list[Callable[[ModelConfig, EndpointConfig, ProbeResult], None]] = []

    def add_listener(self, listener: Callable[[ModelConfig, EndpointConfig, ProbeResult], None]) -> None:
        self._listeners.append(listener)

    def target_of(self, endpoint: EndpointConfig) -> ProbeTarget:
        return endpoint.to_target(self._environ)

    async def probe_endpoint(
        self, model: ModelConfig, endpoint: EndpointConfig, *, on_start: Callable[[], None] | None = None,
        trigger: Trigger = Trigger.SCHEDULED,
    ) -> ProbeResult:
        """`on_start` is called when the probe gets its concurrency slot, just before it starts.
        The result carries this process's location and `trigger`."""
        target = self.target_of(endpoint)
        async with self._slots:  # queueing happens here, before the probe's clock starts
            if on_start is not None:
                on_start()
            self._metrics.probes_in_flight.inc()
            try:
                result = await self._probe_fn(self._client, target, lag_monitor=self._lag_monitor)
                # Canary: the tool-call check, a separate request after the timed probe.
                if result.ok and trigger != Trigger.CONFIRM and "tool_call" in target.checks:
                    result = await self._tool_call(model.id, endpoint.provider, target, result)
            finally:
                self._metrics.probes_in_flight.dec()
        result = dataclasses.replace(result, location=self.location, trigger=trigger)
        # The tool-call canary's own request is priced with the probe (its reported usage).
        canary_usage = [Usage(result.tool_call_input_tokens or 0, result.tool_call_output_tokens or 0)] \
            if result.tool_call_ok is not None else []
        result = price_probe(result, endpoint.price, canary_usage)
        if self._is_suspect is not None and self._is_suspect():
            result = dataclasses.replace(result, suspect=True)
        self.record(model.id, endpoint.provider, result)
        for listener in self._listeners:
            try:
                listener(model, endpoint, result)
            except Exception:  # a listener's bug must not lose the probe (already recorded)
                log.exception("probe listener failed for %s/%s", model.id, endpoint.provider)
        return result

    async def _tool_call(self, model_id: str, provider: str, target: ProbeTarget,
                         result: ProbeResult) -> ProbeResult:
        """Run the tool-call canary and put its verdict and usage on the probe's result."""
        outcome = await self._tool_call_fn(self._client, target)
        self._metrics.record_tool_call(model_id, provider, outcome.error)
        if not outcome.ok:
            log.warning("tool-call canary %s/%s: %s (%s)", model_id, provider,
                        outcome.error.value if outcome.error else "failed", outcome.detail)
        return dataclasses.replace(result, tool_call_ok=outcome.ok, tool_call_error=outcome.error,
                                   tool_call_input_tokens=outcome.input_tokens,
                                   tool_call_output_tokens=outcome.output_tokens)

    def record(self, model_id: str, provider: str, result: ProbeResult) -> None:
        live = self._live.add(model_id, provider, result)
        if live is not None:
            self._metrics.record_probe(model_id, provider, result)
            self._metrics.set_model_live(live)
        # else: a config reload removed the endpoint while it was being probed. Its series are
        # gone from /metrics and stay gone; the result is still stored (nothing measured is lost).
        self._buffer.put(model_id, provider, result)
        if is_size_mismatch(result.input_tokens, result.prompt_tokens):
            # Its own wording: "probe <model>/<provider>: " starts the one line per probe below.
            log.warning("prompt size mismatch on %s/%s: the provider counted %d prompt tokens for the "
                        "%d-token profile (more than 20 %% off)", model_id, provider, result.prompt_tokens,
                        result.input_tokens)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "probe %s/%s: %s ttft=%s tps=%s",
            model_id, provider,
            "ok" if result.ok else f"{result.error_kind} ({result.error})",
            _fmt(result.ttft_s), _fmt(result.tokens_per_second),
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
