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
and every `sweep_s` (probes of other processes, time-driven changes such as a location going
quiet, maintenance windows starting or ending). A sweep evaluates only what can have changed: the
endpoints with new probes in the database, those past their `endpoint_state.state_valid_until`
(a probe leaving the window or the recent range, a location's activity running out), those
entering or leaving maintenance, and all of them after a reload or when the impaired locations
change. With thousands of endpoints probed every 30 minutes that is a few per sweep, not all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta, timezone

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
    latest_failed,
    rules_of,
    state_valid_until,
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
# Each round re-reads the newest OVERLAP_IDS stored ids (deduplicated): a row whose transaction
# commits after a higher id was read is still seen. About every HEAL_S each endpoint re-reads its
# recent probes by time as well, whatever the ids did (a slice of the endpoints per sweep).
OVERLAP_IDS = 1000
HEAL_S = 300.0
READ_PAGE = 5000
# Sweeps hand the event loop back this often (endpoints), so probes keep their timings.
YIELD_EVERY = 25


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
        on_change: Callable[[set[str] | None], None] | None = None,
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
        self._cursor: int | None = None  # newest probe id read
        self._verdicts: dict[Key, dict[str, bool]] = {}  # location -> failing, per endpoint
        # Per endpoint, until when its state holds without new probes (sweeps skip it until then).
        self._valid_until: dict[Key, datetime | None] = {}
        self._heal_position = 0  # where the healing rotation goes on
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
        self._valid_until = {k: v for k, v in self._valid_until.items() if k in keep}
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
    async def load_open(self) -> None:
        """Read the open incidents (at start, before the first evaluation)."""
        self._open = {(i.model, i.provider): i for i in await self._store.list_incidents(open=True)}
        if self._metrics is not None:
            for model, endpoint in self._catalog.endpoints():
                self._metrics.set_incident_open(model.id, endpoint.provider, (model.id, endpoint.provider) in self._open)

    def touch(self, model: ModelConfig, endpoint: EndpointConfig, result: ProbeResult) -> None:
        """Runner listener: this process just recorded a probe of the endpoint."""
        self._dirty.add((model.id, endpoint.provider))
        self._wake.set()

    def _kept_s(self, endpoint: EndpointConfig) -> float:
        return max(self._window_s, (ACTIVE_INTERVALS + 1) * self._interval_of(endpoint))

    def _recheck_s(self, endpoint: EndpointConfig) -> float:
        """How far back a healing re-read goes: probes of other processes can land this late
        (a probe is stored after it ends, up to its timeout, then a buffer flush)."""
        return min(
            self._kept_s(endpoint),
            ACTIVE_INTERVALS * self._interval_of(endpoint) + endpoint.timeout_s + 60.0,
        )

    async def _load(self, model_id: str, endpoint: EndpointConfig, now: datetime, *, heal: bool) -> bool:
        """Read one endpoint's window (`heal`: only its last `recheck_s`, replacing that part).
        Returns whether its probes changed."""
        key = (model_id, endpoint.provider)
        horizon = now - timedelta(seconds=self._kept_s(endpoint))
        since = now - timedelta(seconds=self._recheck_s(endpoint)) if heal else horizon
        rows = await self._store.window_samples(model_id, endpoint.provider, since)
        kept = self._samples.get(key, [])
        older = [s for s in kept if horizon <= s.started_at < since]
        fresh = sorted(rows, key=lambda s: s.started_at, reverse=True)
        if heal and fresh == [s for s in kept if s.started_at >= since]:
            return False  # nothing missed: keep the objects (and the state) as they are
        self._samples[key] = fresh + older
        self._loaded.add(key)
        return True

    async def _refresh(
        self, endpoints: dict[Key, tuple[ModelConfig, EndpointConfig]], now: datetime, *, overlap: bool
    ) -> set[Key]:
        """Bring every endpoint's probes up to date; returns the endpoints that got new probes.

        Cheap on purpose: one primary-key range read of the rows stored since the last round
        (on sweeps, `overlap`, re-reading the newest OVERLAP_IDS ids again, deduplicated, for
        rows whose transaction committed after a higher id was read). Endpoints never loaded read their whole window;
        each sweep also re-reads a slice of the endpoints' last `recheck_s`, so that every one is
        re-read about every HEAL_S, which heals any row that missed the overlap; only a re-read
        that found something new marks the endpoint touched."""
        touched: set[Key] = set()
        if self._cursor is None:
            self._cursor = await self._store.max_result_id()  # before the loads: overlap deduplicated
        for key, (model, endpoint) in endpoints.items():
            if key not in self._loaded:
                await self._load(model.id, endpoint, now, heal=False)
                touched.add(key)
        # Healing re-reads go round the endpoints a slice per sweep, so that each is re-read
        # about every HEAL_S without a burst of thousands of reads at once.
        slice_size = max(1, math.ceil(len(endpoints) * self._sweep_s / HEAL_S)) if overlap else 0
        for key in self._heal_queue(endpoints, slice_size):
            model, endpoint = endpoints[key]
            if key in self._loaded and await self._load(model.id, endpoint, now, heal=True):
                touched.add(key)
        after = max(0, self._cursor - OVERLAP_IDS) if overlap else self._cursor
        while True:
            rows = await self._store.samples_after(after, READ_PAGE)
            for row_id, model_id, provider, sample in rows:
                key = (model_id, provider)
                after = row_id
                self._cursor = max(self._cursor, row_id)
                current = self._samples.get(key)
                if current is None or key not in self._loaded:
                    continue
                identity = (sample.started_at, sample.location, sample.trigger)
                if any((s.started_at, s.location, s.trigger) == identity for s in current if s.started_at == sample.started_at):
                    continue
                current.append(sample)
                touched.add(key)
            if len(rows) < READ_PAGE:
                break
        for key in touched:
            model, endpoint = endpoints[key]
            horizon = now - timedelta(seconds=self._kept_s(endpoint))
            self._samples[key] = sorted(
                (s for s in self._samples[key] if s.started_at >= horizon), key=lambda s: s.started_at, reverse=True
            )
        return touched

    def _heal_queue(self, endpoints: dict[Key, tuple[ModelConfig, EndpointConfig]], count: int) -> list[Key]:
        """The next `count` endpoints to re-read, in a fixed rotation over the catalog."""
        order = sorted(endpoints)
        if not order or count <= 0:
            return []
        start = self._heal_position % len(order)
        chosen = (order[start:] + order[:start])[: min(count, len(order))]
        self._heal_position = (start + len(chosen)) % len(order)
        return chosen

    async def evaluate(self, keys: Iterable[Key] | None = None) -> None:
        """Read what the database got since the last round, recompute states (of `keys` and of
        every endpoint with new probes; all when None) and impaired locations, and bring
        incidents and metrics in line."""
        now = self._clock()
        endpoints = {(m.id, e.provider): (m, e) for m, e in self._catalog.endpoints()}
        touched = await self._refresh(endpoints, now, overlap=keys is None)
        full = keys is None and self._last_sweep is None
        if full:
            chosen = list(endpoints)
        elif keys is None:  # a sweep: what new probes or the passing of time can have changed
            chosen = sorted(touched | self._due(endpoints, now))
        else:
            chosen = sorted({k for k in keys if k in endpoints} | touched)
        before_open = set(self._open)
        self._open = {(i.model, i.provider): i for i in await self._store.list_incidents(open=True)}
        # incidents another process opened or resolved since: their endpoints' figures change
        chosen = sorted(set(chosen) | ((before_open ^ set(self._open)) & set(endpoints)))

        for position, key in enumerate(chosen):
            self._verdicts[key] = self._failing_of(endpoints[key][1], self._samples.get(key, []), now)
            if position % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a sweep of thousands of endpoints must not stall probes
        for key in set(self._verdicts) - set(endpoints):
            del self._verdicts[key]
        impaired = impaired_locations(self._verdicts)
        before_impaired, self._impaired = self._impaired, impaired
        if impaired != before_impaired:
            chosen = list(endpoints)  # every endpoint's quorum changes
            for location in impaired - before_impaired:
                log.warning("location %s is impaired: its probes fail for every endpoint", location)
            for location in before_impaired - impaired:
                log.info("location %s is no longer impaired", location)

        changed: set[str] | None = None if impaired != before_impaired else set()
        for position, key in enumerate(chosen):
            if position % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            model, endpoint = endpoints[key]
            state = self._state(model.id, endpoint, self._samples[key], now)
            previous = self._states.get(key)
            self._states[key] = state
            self._valid_until[key] = state_valid_until(
                self._samples[key], now=now, window_s=self._window_s,
                rules=rules_of(endpoint, self._interval_of(endpoint)),
            )
            maintenance = self._maintenance_ref(*key, now)
            moved = (
                previous is None
                or (previous.state, previous.active, previous.failing) != (state.state, state.active, state.failing)
                or self._maintenance.get(key) != maintenance
            )
            self._maintenance[key] = maintenance
            if self._writes:
                moved |= await self._apply(
                    key, state, now, in_maintenance=maintenance is not None, new_probes=key in touched
                )
            if moved and changed is not None:
                changed.add(key[0])
            self._export(key, state, maintenance is not None)
        if self._metrics is not None:
            seen = {view.location for state in self._states.values() for view in state.locations if view.recent}
            self._metrics.set_impaired({location: location in impaired for location in seen | impaired})
        if keys is None:
            self._last_sweep = now
        if (changed is None or changed) and self.on_change is not None:
            self.on_change(changed)  # the models whose figures to recompute (None: all)

    def _due(self, endpoints: dict[Key, tuple[ModelConfig, EndpointConfig]], now: datetime) -> set[Key]:
        """Endpoints whose state may have changed with time alone: never evaluated, past their
        `state_valid_until`, or entering or leaving a maintenance window."""
        due = set()
        maintenance = bool(self._catalog.maintenance)
        for key in endpoints:
            if key not in self._states:
                due.add(key)
                continue
            until = self._valid_until.get(key)
            if until is not None and now > until:
                due.add(key)
            elif maintenance and self._maintenance_ref(*key, now) != self._maintenance.get(key):
                due.add(key)
        return due

    def _failing_of(self, endpoint: EndpointConfig, samples: list[ProbeSample], now: datetime) -> dict[str, bool]:
        """For impairment: whether each location that probed the endpoint recently has a
        provider failure as its newest judged probe (`endpoint_state.latest_failed`). Kept per
        endpoint between rounds; recomputed for the endpoints a round looks at."""
        rules = rules_of(endpoint, self._interval_of(endpoint))
        recent_since = now - timedelta(seconds=ACTIVE_INTERVALS * rules.interval_s)
        recent = [s for s in samples if recent_since <= s.started_at <= now]
        return {location: latest_failed(group) for location, group in by_location(recent).items()}

    async def _apply(
        self, key: Key, state: EndpointState, now: datetime, *, in_maintenance: bool, new_probes: bool
    ) -> bool:
        """Open / refresh (after new probes) / resolve the endpoint's incident; True when its open
        state changed."""
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
        if action == UPDATE and incident is not None and new_probes:
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
            due = 0.0  # the first round at once
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
