"""Audit meters: how far a probe's figures can be trusted on the machine that took them.

`LoopLagMonitor` records how late the event loop wakes (start one per process); `CpuMeter` counts
the CPU time one probe's coroutine used. Neither changes a measurement: `run_probe` (`engine.py`)
attaches their readings to the result (`loop_lag_s`, `cpu_s`), so a figure taken on an overloaded
monitor can be recognised.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Awaitable, Generator, TypeVar

__all__ = ["CpuMeter", "LoopLagMonitor"]

T = TypeVar("T")


class LoopLagMonitor:
    """Measures event-loop lag: a ticker asks to wake every `interval_s` and records how late it is.

    Start one per process (inside the running loop); a probe asks for the worst lag seen between
    its start and end. Lag includes up to ~1 ms of timer granularity (epoll's ms resolution).
    """

    def __init__(self, *, interval_s: float = 0.01, history_s: float = 900.0) -> None:
        self.interval_s = interval_s
        self._samples: deque[tuple[int, int]] = deque(maxlen=max(16, int(history_s / interval_s)))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> "LoopLagMonitor":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        expected = time.perf_counter_ns() + interval_ns
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.perf_counter_ns()
            self._samples.append((now, max(0, now - expected)))
            expected = now + interval_ns

    def worst_lag_s(self, since_ns: int, until_ns: int | None = None) -> float | None:
        """Worst lag among ticks that landed in [since_ns, until_ns]; None before any tick."""
        worst: int | None = None
        for stamp, lag in reversed(self._samples):
            if stamp < since_ns:
                break
            if until_ns is not None and stamp > until_ns:
                continue
            worst = lag if worst is None else max(worst, lag)
        return None if worst is None else worst / 1e9


class CpuMeter:
    """Awaits a coroutine and sums `time.thread_time_ns()` over each of its steps.

    An asyncio task runs a coroutine in synchronous slices between suspensions; measuring thread
    CPU time around each `send`/`throw` into the coroutine counts exactly the CPU the probe itself
    used (including httpx/httpcore and parsing work done in its task), and none of the other tasks
    that run while it is suspended. DNS lookups run in the executor's threads and are not counted.
    """

    def __init__(self, coro: Awaitable[T]) -> None:
        self._coro = coro
        self.cpu_ns = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._coro.__await__()
        send_value: Any = None
        throw_exc: BaseException | None = None
        while True:
            t0 = time.thread_time_ns()
            try:
                if throw_exc is None:
                    yielded = inner.send(send_value)
                else:
                    exc, throw_exc = throw_exc, None
                    yielded = inner.throw(exc)
            except StopIteration as stop:
                self.cpu_ns += time.thread_time_ns() - t0
                return stop.value
            except BaseException:
                self.cpu_ns += time.thread_time_ns() - t0
                raise
            self.cpu_ns += time.thread_time_ns() - t0
            try:
                send_value = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # cancellation and friends go to the probe
                send_value, throw_exc = None, exc
