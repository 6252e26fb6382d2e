"""Incidents and endpoint state from the shared database: `IncidentTracker`.

Every process runs one. It keeps, per configured endpoint, the probes of every location that
the database holds for the window (read incrementally: each refresh re-reads only the last
`recheck_s`, so probes that other processes store late are picked up), derives each endpoint's
state with the pure `monitor.endpoint_state`, and:
- in probing processes (`writes=True`) opens, refreshes and resolves incident rows; the store's
  partial unique index makes concurrent evaluators in any number of processes agree on one open
  incident per endpoint, and a restarted process simply finds it open again;
- exports the state metrics (`monitor.metrics.IncidentMetrics`) from that database view, so N
  schedulers in M locations all export the same values;
- annotates live figures (`annotate`) with `state`, `locations`, `open_incident`, `maintenance`
  and `active` (up by quorum), in API-only processes too (they read the incidents from the DB).

When: after each flush of this process's own probes (the runner listener `touch` marks the
endpoint and wakes `run`, which flushes the result buffer and evaluates the touched endpoints),
and every `sweep_s` for every endpoint (probes of other processes, time-driven changes such as a
location going quiet, maintenance windows starting or ending).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.endpoint_state import (
    OPEN,
    RESOLVE,
    STATES,
    UPDATE,
    EndpointState,
    Incident,
    MaintenanceRef,
    by_location,
    endpoint_state,
    impaired_locations,
    incident_action,
    location_view,
    rules_of,
)
from monitor.metrics import IncidentMetrics
from monitor.probes.base import ProbeResult
from monitor.stats import ACTIVE_INTERVALS, EndpointLive, ProbeSample
from monitor.store import Store

log = logging.getLogger(__name__)

Key = tuple[str, str]
DEFAULT_SWEEP_S = 15.0
# After a wake, wait this long so that probes finishing together are evaluated in one round.
DEBOUNCE_S = 0.2


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class IncidentTracker:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        interval_of: Callable[[EndpointConfig], float],
        window_s: float,
        writes: bool,
        metrics: IncidentMetrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sweep_s: float = DEFAULT_SWEEP_S,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._interval_of = interval_of
        self._window_s = window_s
        self._writes = writes
        self._metrics = metrics
        self._clock = clock
        self._sweep_s = sweep_s
        self.on_change = on_change
        self._samples: dict[Key, list[ProbeSample]] = {}  # newest first
        self._loaded: set[Key] = set()
        self._states: dict[Key, EndpointState] = {}
        self._open: dict[Key, Incident] = {}
        self._impaired: frozenset[str] = frozenset()
        self._maintenance: dict[Key, MaintenanceRef | None] = {}
        self._dirty: set[Key] = set()
        self._wake = asyncio.Event()
        self._last_sweep: datetime | None = None
        self.set_catalog(catalog)

    # ------------------------------------------------------------------ configuration and reads
    def set_catalog(self, catalog: Catalog) -> None:
        self._catalog = catalog
        keep = {(m.id, e.provider) for m, e in catalog.endpoints()}
        if self._metrics is not None:
            for key in set(self._states) - keep:
                self._metrics.remove_endpoint(*key, STATES)
        self._samples = {key: self._samples.get(key, []) for key in keep}
        self._loaded &= keep
        self._states = {k: v for k, v in self._states.items() if k in keep}
        self._last_sweep = None  # the next round evaluates every endpoint

    @property
    def impaired(self) -> frozenset[str]:
        return self._impaired

    def state_of(self, model_id: str, provider: str) -> EndpointState | None:
        return self._states.get((model_id, provider))

    def open_incident(self, model_id: str, provider: str) -> Incident | None:
        return self._open.get((model_id, provider))

    def _maintenance_ref(self, model_id: str, provider: str, now: datetime) -> MaintenanceRef | None:
        window = self._catalog.in_maintenance(model_id, provider, now)
        return None if window is None else MaintenanceRef(window.start, window.end, window.reason)

    def _state(self, model_id: str, endpoint: EndpointConfig, samples: list[ProbeSample], now: datetime) -> EndpointState:
        def in_maintenance(at: datetime, location: str) -> bool:
            return self._catalog.in_maintenance(model_id, endpoint.provider, at, location) is not None

        return endpoint_state(
            samples, now=now, window_s=self._window_s,
            rules=rules_of(endpoint, self._interval_of(endpoint)),
            impaired=self._impaired, in_maintenance=in_maintenance if self._catalog.maintenance else None,
        )

    def annotate(
        self, model_id: str, endpoint: EndpointConfig, figures: EndpointLive, samples: list[ProbeSample], now: datetime
    ) -> EndpointLive:
        """Live figures' annotator: the state of the figures' own samples (all locations in an API
        process that follows the database; in `run` mode the one location), with this tracker's
        impaired locations, open incident and maintenance window."""
        state = self._state(model_id, endpoint, samples, now)
        incident = self._open.get((model_id, endpoint.provider))
        return dataclasses.replace(
            figures,
            active=state.active,
            state=state.state,
            state_reason=state.state_reason,
            locations=state.locations,
            open_incident=None if incident is None else incident.ref(),
            maintenance=self._maintenance_ref(model_id, endpoint.provider, now),
        )

    # ---------------------------------------------------------------------------- evaluation
    def touch(self, model: ModelConfig, endpoint: EndpointConfig, result: ProbeResult) -> None:
        """Runner listener: this process just recorded a probe of the endpoint."""
        self._dirty.add((model.id, endpoint.provider))
        self._wake.set()

    def _kept_s(self, endpoint: EndpointConfig) -> float:
        return max(self._window_s, (ACTIVE_INTERVALS + 1) * self._interval_of(endpoint))

    def _recheck_s(self, endpoint: EndpointConfig) -> float:
        """How far back each refresh re-reads: probes of other processes can land this late
        (a probe is stored after it ends, up to its timeout, then a buffer flush)."""
        return min(
            self._kept_s(endpoint),
            ACTIVE_INTERVALS * self._interval_of(endpoint) + endpoint.timeout_s + 60.0,
        )

    async def _refresh(self, model_id: str, endpoint: EndpointConfig, now: datetime) -> None:
        key = (model_id, endpoint.provider)
        horizon = now - timedelta(seconds=self._kept_s(endpoint))
        if key in self._loaded:
            since = now - timedelta(seconds=self._recheck_s(endpoint))
        else:
            since = horizon
        rows = await self._store.window_samples(model_id, endpoint.provider, since)
        older = [s for s in self._samples.get(key, []) if horizon <= s.started_at < since]
        self._samples[key] = sorted(rows, key=lambda s: s.started_at, reverse=True) + older
        self._loaded.add(key)

    async def evaluate(self, keys: Iterable[Key] | None = None) -> None:
        """Refresh the given endpoints (all when None) from the database, recompute states and
        impaired locations, and bring incidents and metrics in line."""
        now = self._clock()
        endpoints = {(m.id, e.provider): (m, e) for m, e in self._catalog.endpoints()}
        chosen = list(endpoints) if keys is None else [k for k in keys if k in endpoints]
        for key in chosen:
            model, endpoint = endpoints[key]
            await self._refresh(model.id, endpoint, now)
        self._open = {(i.model, i.provider): i for i in await self._store.list_incidents(open=True)}

        impaired = impaired_locations(self._failing_by_endpoint(endpoints, now))
        before_impaired, self._impaired = self._impaired, impaired
        if impaired != before_impaired:
            chosen = list(endpoints)  # every endpoint's quorum changes
            for location in impaired - before_impaired:
                log.warning("location %s is impaired: its probes fail for every endpoint", location)
            for location in before_impaired - impaired:
                log.info("location %s is no longer impaired", location)

        changed = impaired != before_impaired
        for key in chosen:
            model, endpoint = endpoints[key]
            state = self._state(model.id, endpoint, self._samples[key], now)
            previous = self._states.get(key)
            self._states[key] = state
            if previous is None or (previous.state, previous.active) != (state.state, state.active):
                changed = True
            maintenance = self._maintenance_ref(*key, now)
            if self._maintenance.get(key) != maintenance:
                changed = True
            self._maintenance[key] = maintenance
            if self._writes:
                changed |= await self._apply(key, state, now, in_maintenance=maintenance is not None)
            self._export(key, state, maintenance is not None)
        if self._metrics is not None:
            seen = {view.location for state in self._states.values() for view in state.locations if view.recent}
            self._metrics.set_impaired({location: location in impaired for location in seen | impaired})
        if keys is None:
            self._last_sweep = now
        if changed and self.on_change is not None:
            self.on_change()

    def _failing_by_endpoint(self, endpoints: dict[Key, Any], now: datetime) -> dict[Key, dict[str, bool]]:
        verdicts: dict[Key, dict[str, bool]] = {}
        for key, (model, endpoint) in endpoints.items():
            rules = rules_of(endpoint, self._interval_of(endpoint))
            recent_since = now - timedelta(seconds=ACTIVE_INTERVALS * rules.interval_s)
            recent = [s for s in self._samples.get(key, []) if recent_since <= s.started_at <= now]
            verdicts[key] = {
                location: location_view(location, group, now=now, window_s=0.0, rules=rules).failing
                for location, group in by_location(recent).items()
            }
        return verdicts

    async def _apply(self, key: Key, state: EndpointState, now: datetime, *, in_maintenance: bool) -> bool:
        """Open / refresh / resolve the endpoint's incident; True when its open state changed."""
        model_id, provider = key
        incident = self._open.get(key)
        action = incident_action(state, incident, in_maintenance=in_maintenance)
        if action == OPEN:
            assert state.started_at is not None
            kinds, locations = await self._store.failure_summary(model_id, provider, state.started_at)
            opened, created = await self._store.open_incident(
                model_id, provider, started_at=state.started_at, detected_at=now,
                error_kinds=kinds or dict(state.error_kinds), locations=locations or state.failing,
            )
            self._open[key] = opened
            if created:
                log.warning(
                    "incident %d opened: %s/%s down from %s (%s)",
                    opened.id, model_id, provider, ", ".join(opened.locations), state.state_reason,
                )
                if self._metrics is not None:
                    self._metrics.observe_time_to_detect(
                        model_id, provider, (opened.detected_at - opened.started_at).total_seconds()
                    )
            return True
        if action == RESOLVE and incident is not None:
            resolved_at = max(state.recovered_at or now, incident.started_at)
            if await self._store.resolve_incident(incident.id, resolved_at):
                log.info("incident %d resolved: %s/%s up again", incident.id, model_id, provider)
            self._open.pop(key, None)
            return True
        if action == UPDATE and incident is not None:
            kinds, locations = await self._store.failure_summary(model_id, provider, incident.started_at)
            if kinds and (kinds != dict(incident.error_kinds) or locations != incident.locations):
                await self._store.update_incident(incident.id, error_kinds=kinds, locations=locations)
                self._open[key] = dataclasses.replace(incident, error_kinds=kinds, locations=locations)
        return False

    def _export(self, key: Key, state: EndpointState, in_maintenance: bool) -> None:
        if self._metrics is None:
            return
        model_id, provider = key
        self._metrics.set_state(model_id, provider, state.state, STATES)
        self._metrics.set_incident_open(model_id, provider, key in self._open)
        self._metrics.set_in_maintenance(model_id, provider, in_maintenance)
        self._metrics.set_location_up(
            model_id, provider, {view.location: view.active for view in state.locations if view.recent}
        )

    # ------------------------------------------------------------------------------ the task
    async def run(self, flush: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Evaluate after this process's probes are stored, and sweep every endpoint every
        `sweep_s`. Errors (database down) are logged and retried at the next round."""
        while True:
            due = self._sweep_s
            if self._last_sweep is not None:
                due = max(0.0, self._sweep_s - (self._clock() - self._last_sweep).total_seconds())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=due)
                await asyncio.sleep(DEBOUNCE_S)
            except TimeoutError:
                pass
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            sweep = self._last_sweep is None or (
                (self._clock() - self._last_sweep).total_seconds() >= self._sweep_s
            )
            try:
                if dirty and flush is not None:
                    await flush()
                await self.evaluate(None if sweep else dirty)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dirty |= dirty
                log.warning("incident evaluation failed, retrying: %s", f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(1.0)
