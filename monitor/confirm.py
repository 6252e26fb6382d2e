"""Confirmation probes: after a provider failure, re-probe until it succeeds or is confirmed down.

`ConfirmManager` hears every recorded probe (a `Runner` listener) and the liveness checker's hard
failures and recoveries. Per endpoint it counts provider failures in a row (`config_error` and
`rate_limited`, `NOT_PROVIDER_FAILURES`, neither count nor break the run, as everywhere else):

- a provider failure below `confirm_failures` in a row schedules a confirmation probe
  `confirm_interval_s` later; reaching `confirm_failures` declares the endpoint down (logged once)
  and ends the round, so a long outage costs `confirm_failures` probes, not one a minute;
- a hard liveness failure starts a confirmation probe at once (it is the first failure of the run
  when the probe fails too), unless a round is already going or the endpoint is already down;
- a liveness recovery of an endpoint with failures in a row starts one at once, so a hard outage
  resolves at its first success instead of at the next scheduled probe;
- any ok probe ends the round (and resolves a down endpoint); a rate-limited or misconfigured
  confirmation probe ends it too (the next scheduled probe decides; no hammering).

Confirmation probes are real probes (`Runner.probe_endpoint(..., trigger=Trigger.CONFIRM)`),
stored with `trigger: confirm`, counted in `llm_confirm_probes_total{outcome}`. They cap their own
rate: at most one in flight or pending per endpoint, starts at least `confirm_interval_s` apart per
endpoint, at most `max_in_flight` at once in the process (the rest wait their turn). With several
probing processes in one location, each confirmation takes a slot claim
(`SlotClaims.claim(..., kind="confirm")`, slot = its start time rounded down to the confirm
interval), so only one process of the location probes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable, Mapping

from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.coordination import SlotClaims
from monitor.metrics import Metrics
from monitor.probes.base import NOT_PROVIDER_FAILURES, ProbeResult, Trigger

log = logging.getLogger(__name__)

MAX_CONFIRMS_IN_FLIGHT = 8
# Starts are spaced by the interval plus 1 %: the claim slot (wall clock rounded down to the
# interval) then always differs from the previous one, whatever the wall clock's slewing.
SPACING = 1.01

ProbeEndpoint = Callable[..., Awaitable[ProbeResult]]
Key = tuple[str, str]


@dataclass
class _Endpoint:
    failures: int = 0  # provider failures in a row
    down: bool = False  # declared down: confirm_failures in a row
    task: asyncio.Task[None] | None = None  # the pending or running confirmation
    last_start: float | None = None  # monotonic start of the latest confirmation probe
    probing: bool = False  # a confirmation probe of this endpoint is running


def _slot_of(moment: datetime, interval_s: float) -> datetime:
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % interval_s, tz=timezone.utc)


class ConfirmManager:
    def __init__(
        self,
        probe_endpoint: ProbeEndpoint,
        metrics: Metrics,
        claims: SlotClaims,
        *,
        location: str,
        max_in_flight: int = MAX_CONFIRMS_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        """`probe_endpoint` is `Runner.probe_endpoint`; register `on_result` as its listener."""
        self._probe = probe_endpoint
        self._metrics = metrics
        self._claims = claims
        self._location = location
        self._global = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._wall_clock = wall_clock
        self._state: dict[Key, _Endpoint] = {}
        self._catalog: Catalog | None = None
        self.in_flight = 0  # confirmation probes running now (all endpoints)

    # --- lifecycle ---
    def start(self, catalog: Catalog, consecutive_failures: Mapping[Key, int] | None = None) -> None:
        """`consecutive_failures`: the stored runs (store.consecutive_failures()) after a
        restart: an endpoint already confirmed down is not confirmed again, one in the middle of
        its confirmation gets its next confirmation probe."""
        self.apply(catalog)
        for model, endpoint in catalog.endpoints():
            count = (consecutive_failures or {}).get((model.id, endpoint.provider), 0)
            if count <= 0:
                continue
            state = self._of(model.id, endpoint.provider)
            state.failures = count
            if count >= endpoint.confirm_failures:
                state.down = True
            else:
                self._schedule(model, endpoint, 0.0)

    def apply(self, catalog: Catalog) -> None:
        """A config reload: forget endpoints that left it (a pending confirmation is cancelled)."""
        self._catalog = catalog
        wanted = {(model.id, endpoint.provider) for model, endpoint in catalog.endpoints()}
        for key in list(self._state):
            if key not in wanted:
                state = self._state.pop(key)
                if state.task is not None:
                    state.task.cancel()

    async def shutdown(self) -> None:
        tasks = [state.task for state in self._state.values() if state.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def is_down(self, model_id: str, provider: str) -> bool:
        state = self._state.get((model_id, provider))
        return state is not None and state.down

    def failures(self, model_id: str, provider: str) -> int:
        state = self._state.get((model_id, provider))
        return 0 if state is None else state.failures

    # --- what the manager hears ---
    def on_result(self, model: ModelConfig, endpoint: EndpointConfig, result: ProbeResult) -> None:
        """Runner listener: called after every recorded probe of this process."""
        key = (model.id, endpoint.provider)
        state = self._of(*key)
        if result.trigger == Trigger.CONFIRM:
            self._metrics.count_confirm(model.id, endpoint.provider, result)
        if result.ok:
            if state.down:
                log.info("%s/%s: up again after %d failures in a row (%s probe ok)",
                         model.id, endpoint.provider, state.failures, result.trigger)
            state.failures, state.down = 0, False
            self._cancel_pending(state)
            return
        if result.error_kind in NOT_PROVIDER_FAILURES:
            if result.trigger == Trigger.CONFIRM:
                self._cancel_pending(state)  # the round ends; the schedule decides
            return
        state.failures += 1
        if state.failures >= endpoint.confirm_failures:
            if not state.down:
                state.down = True
                log.warning("%s/%s: down, %d provider failures in a row (latest: %s, %s probe)",
                            model.id, endpoint.provider, state.failures, result.error_kind, result.trigger)
            self._cancel_pending(state)
            return
        self._schedule(model, endpoint, endpoint.confirm_interval_s)

    def on_liveness_failure(self, model: ModelConfig, endpoint: EndpointConfig) -> None:
        """A hard liveness failure: confirm at once, unless a round runs or it is already down."""
        state = self._of(model.id, endpoint.provider)
        if state.down:
            return
        self._schedule(model, endpoint, 0.0)

    def on_liveness_recovered(self, model: ModelConfig, endpoint: EndpointConfig) -> None:
        """Liveness answers again: an endpoint with failures in a row gets a confirmation now."""
        state = self._of(model.id, endpoint.provider)
        if state.failures > 0:
            self._schedule(model, endpoint, 0.0)

    # --- scheduling ---
    def _of(self, model_id: str, provider: str) -> _Endpoint:
        return self._state.setdefault((model_id, provider), _Endpoint())

    def _cancel_pending(self, state: _Endpoint) -> None:
        """Drop a confirmation that has not started its probe yet (a running one finishes)."""
        task = state.task
        if task is not None and task is not asyncio.current_task() and not task.done() and not state.probing:
            task.cancel()
        state.task = None

    def _schedule(self, model: ModelConfig, endpoint: EndpointConfig, delay_s: float) -> None:
        """Queue one confirmation probe `delay_s` from now, no sooner than `confirm_interval_s`
        after the endpoint's previous one, unless one is already pending or running."""
        state = self._of(model.id, endpoint.provider)
        current = asyncio.current_task()
        if state.task is not None and not state.task.done() and state.task is not current:
            return  # at most one per endpoint
        now = self._clock()
        due = now + delay_s
        if state.last_start is not None:
            due = max(due, state.last_start + endpoint.confirm_interval_s * SPACING)
        state.task = asyncio.get_running_loop().create_task(
            self._confirm(model.id, endpoint.provider, due - now),
            name=f"confirm {model.id}/{endpoint.provider}",
        )

    async def _confirm(self, model_id: str, provider: str, delay_s: float) -> None:
        task = asyncio.current_task()
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            model, endpoint = self._lookup(model_id, provider)
            if model is None or endpoint is None:
                return
            async with self._global:
                state = self._of(model_id, provider)
                if state.task is not task or state.probing:
                    return  # superseded while waiting for a global slot, or one still running
                slot = _slot_of(self._wall_clock(), endpoint.confirm_interval_s)
                if not await self._claims.claim(model_id, provider, self._location, slot, kind="confirm"):
                    log.debug("confirmation of %s/%s at %s taken by another process", model_id, provider, slot)
                    state.task = None
                    return
                state.probing = True  # from here on a newer result no longer cancels it
                state.last_start = self._clock()
                self.in_flight += 1
                try:
                    await self._probe(model, endpoint, trigger=Trigger.CONFIRM)
                finally:
                    self.in_flight -= 1
                    state.probing = False
                    # Claims with leases (the shared PostgreSQL ones) are told the slot is served,
                    # so no other process takes it over.
                    finished = getattr(self._claims, "finished", None)
                    if finished is not None:
                        finished(model_id, provider, self._location, slot, kind="confirm")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("confirmation probe of %s/%s failed unexpectedly", model_id, provider)
        finally:
            state = self._state.get((model_id, provider))
            if state is not None and state.task is task:
                state.task = None

    def _lookup(self, model_id: str, provider: str) -> tuple[ModelConfig | None, EndpointConfig | None]:
        if self._catalog is None:
            return None, None
        model = self._catalog.find(model_id)
        return model, None if model is None else model.endpoint(provider)
