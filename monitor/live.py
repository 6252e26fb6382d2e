"""Live figures held in memory: per-endpoint window samples and the derived ModelLive per model.

The runner feeds every finished probe in (`add`); API requests read `model()` / `models()` and
never query history. `load()` fills the window from the database at start-up, so figures are
back right after a restart; an API-only process calls `follow()` periodically to apply what the
scheduler process has stored since. Figures also change with time alone (activity lapses 2
intervals after the latest usable probe, old probes leave the window): each model knows when
that next happens, and `wait_until_due()` sleeps exactly until then for `recompute()`.

Each endpoint keeps its probes of the window, or of 2 intervals when that is longer, so that
`active` can be judged on the latest probe even for an endpoint probed less often than twice
per window.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from typing import Callable

from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.probes.base import ProbeResult
from monitor.stats import (
    ACTIVE_INTERVALS,
    EndpointLive,
    ModelLive,
    SAMPLE_FIELDS,
    ProbeSample,
    active_until,
    endpoint_live,
    model_live,
)
from monitor.store import Store


NEVER = datetime.max.replace(tzinfo=timezone.utc)
# Wake this long after a due moment, so that "at most 2 intervals old" (inclusive) has lapsed.
DUE_MARGIN = timedelta(milliseconds=2)


# (model_id, endpoint, figures, the endpoint's kept samples newest first, now) -> figures with the
# endpoint state set (`IncidentTracker.annotate`): sets `active` to "up by quorum" as well.
Annotator = Callable[[str, EndpointConfig, EndpointLive, list[ProbeSample], datetime], EndpointLive]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sample_of(result: ProbeResult) -> ProbeSample:
    values = {name: getattr(result, name) for name in SAMPLE_FIELDS}
    values["error_kind"] = result.error_kind.value if result.error_kind else None
    values["trigger"] = result.trigger.value
    return ProbeSample(**values)


class LiveFigures:
    """Implements the API's LiveView over an in-memory window of samples per endpoint."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        window_s: float,
        interval_of: Callable[[EndpointConfig], float],
        clock: Callable[[], datetime] = _utcnow,
        annotate: Annotator | None = None,
    ) -> None:
        self._window_s = window_s
        self.annotate = annotate  # endpoint state, locations, incident, maintenance (monitor.incidents)
        self._interval_of = interval_of
        self._clock = clock
        self._samples: dict[tuple[str, str], deque[ProbeSample]] = {}
        self._live: dict[str, ModelLive] = {}
        # When each model's figures next change by the passage of time alone (see _due_at).
        self._due: dict[str, datetime] = {}
        self._cursor: int | None = None  # follow(): id of the newest stored probe applied
        # wait_until_due(): when the waiter plans to wake, and how to wake it sooner.
        self._wake_at = NEVER
        self._wake = asyncio.Event()
        self.set_catalog(catalog)

    # --- LiveView (read side, used by the API) ---
    def models(self) -> list[tuple[ModelConfig, ModelLive]]:
        return [(model, self._live[model.id]) for model in self._catalog.models]

    def model(self, model_id: str) -> ModelLive | None:
        return self._live.get(model_id)

    def providers(self, model_id: str) -> tuple[str, ...] | None:
        model = self._catalog.find(model_id)
        return None if model is None else tuple(e.provider for e in model.endpoints)

    # --- what long windows and other profiles are computed from (monitor/windows.py) ---
    @property
    def window_s(self) -> float:
        return self._window_s

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def now(self) -> datetime:
        return self._clock()

    def samples_of(self, model_id: str, provider: str) -> list[ProbeSample]:
        """The endpoint's probes held in memory (the window, or 2 intervals when longer), newest first."""
        return list(self._samples.get((model_id, provider), ()))

    def maintenance_spans(self, model_id: str, provider: str) -> list[tuple[datetime, datetime, str | None]]:
        """(start, end, location or None) of the maintenance windows that cover this endpoint."""
        return [
            (w.start, w.end, w.location)
            for w in self._catalog.maintenance
            if w.model in (None, model_id) and w.provider in (None, provider)
        ]

    def maintenance_test(self, model_id: str, provider: str) -> Callable[[ProbeSample], bool] | None:
        """Whether a probe of this endpoint falls in a maintenance window; None when none applies."""
        if not self.maintenance_spans(model_id, provider):
            return None
        catalog = self._catalog
        return lambda s: catalog.in_maintenance(model_id, provider, s.started_at, s.location) is not None

    # --- write side ---
    def set_catalog(self, catalog: Catalog) -> None:
        """Adopt a (re)loaded catalog: keep samples of endpoints that still exist."""
        self._catalog = catalog
        self._cursor = None  # new endpoints need their window: the next follow() loads it all
        keep = {(m.id, e.provider) for m, e in catalog.endpoints()}
        self._samples = {key: self._samples.get(key, deque()) for key in keep}
        self._live = {}  # a model dropped from the catalog must stop being served
        self._due = {}
        self.recompute(force=True)

    def add(self, model_id: str, provider: str, result: ProbeResult) -> ModelLive | None:
        """Record a finished probe; returns the model's new figures (None if not in the catalog)."""
        if not self._add_sample(model_id, provider, sample_of(result)):
            return None
        return self._recompute_model(model_id)

    def _add_sample(self, model_id: str, provider: str, sample: ProbeSample) -> bool:
        samples = self._samples.get((model_id, provider))
        if samples is None:
            return False
        # Newest first. Probes can finish out of order (a "probe now" beside a scheduled one), so
        # walk past newer samples; an equal start time is the same probe seen twice (a follow()
        # overlapping the initial load) and is skipped.
        position = 0
        for existing in samples:
            if existing.started_at < sample.started_at:
                break
            if existing.started_at == sample.started_at:
                return True
            position += 1
        samples.insert(position, sample)
        return True

    async def follow(self, store: Store, *, page: int = 5000) -> None:
        """API replicas: apply the probes stored since the last call, then recompute.

        The first call loads the whole window; later calls read only rows with a larger id
        (a primary-key range), so a refresh costs what was written since, not the history."""
        if self._cursor is None:
            cursor = await store.max_result_id()  # before the load: overlap is deduplicated
            await self.load(store)
            self._cursor = cursor
            return
        touched: set[str] = set()
        while True:
            rows = await store.samples_after(self._cursor, page)
            for row_id, model_id, provider, sample in rows:
                if self._add_sample(model_id, provider, sample):
                    touched.add(model_id)
                self._cursor = row_id
            if len(rows) < page:
                break
        for model_id in touched:
            self._recompute_model(model_id)
        self.recompute()

    async def load(self, store: Store) -> None:
        """Replace the in-memory window with what the database holds."""
        now = self._clock()
        for model, endpoint in self._catalog.endpoints():
            since = now - timedelta(seconds=self._kept_s(endpoint))
            rows = await store.window_samples(model.id, endpoint.provider, since)
            self._samples[(model.id, endpoint.provider)] = deque(
                sorted(rows, key=lambda s: s.started_at, reverse=True)
            )
        self.recompute(force=True)

    def _kept_s(self, endpoint: EndpointConfig) -> float:
        """How far back an endpoint's probes matter: the window, or 2 intervals when longer."""
        return max(self._window_s, ACTIVE_INTERVALS * self._interval_of(endpoint))

    async def wait_until_due(self, max_s: float) -> None:
        """Sleep until the earliest model's figures change with time (or `max_s`), waking sooner
        when a probe that lands meanwhile brings a due moment forward."""
        due = min(self._due.values(), default=NEVER)
        now = self._clock()
        delay = max_s if due == NEVER else min(max_s, max(0.0, (due + DUE_MARGIN - now).total_seconds()))
        self._wake_at = now + timedelta(seconds=delay)
        self._wake.clear()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._wake_at = NEVER

    def recompute(self, *, force: bool = False) -> list[ModelLive]:
        """Refresh figures that time alone has changed (all of them with `force`).

        Returns the models recomputed. Cheap when nothing is due: one comparison per model, so a
        catalog of thousands of endpoints is not re-derived every few seconds."""
        now = self._clock()
        changed = []
        for model in self._catalog.models:
            due = self._due.get(model.id)
            if force or due is None or due <= now:
                live = self._recompute_model(model.id)
                if live is not None:
                    changed.append(live)
        return changed

    def _recompute_model(self, model_id: str) -> ModelLive | None:
        model = self._catalog.find(model_id)
        if model is None:
            return None
        now = self._clock()
        lives: list[EndpointLive] = []
        for endpoint in model.endpoints:
            samples = self._samples[(model.id, endpoint.provider)]
            horizon = now - timedelta(seconds=self._kept_s(endpoint))
            while samples and samples[-1].started_at < horizon:
                samples.pop()  # the oldest stop mattering
            figures = endpoint_live(
                endpoint.provider,
                list(samples),
                now=now,
                interval_s=self._interval_of(endpoint),
                window_s=self._window_s,
                input_tokens=endpoint.input_tokens,
                keep_cold_starts=endpoint.keep_cold_starts,
                in_maintenance=self.maintenance_test(model.id, endpoint.provider),
            )
            if self.annotate is not None:
                figures = self.annotate(model.id, endpoint, figures, list(samples), now)
            lives.append(figures)
        live = model_live(
            model.id, [e.provider for e in model.endpoints], lives, window_s=self._window_s
        )
        self._live[model.id] = live
        due = self._due[model.id] = self._due_at(model, now)
        if due < self._wake_at - DUE_MARGIN:
            self._wake.set()  # the waiter would wake too late for this model
        return live

    def _due_at(self, model: ModelConfig, now: datetime) -> datetime:
        """The first moment the model's figures can change with no new probe: an endpoint's
        activity lapsing (2 intervals after its latest probe that was not rate_limited) or its
        oldest probe in the window leaving it (medians, uptime and samples change), or a
        probe stamped ahead of this clock coming due. Earlier is harmless, later would be wrong."""
        horizon = NEVER  # no samples: nothing changes until a probe lands (add/follow recompute)
        window_start = now - timedelta(seconds=self._window_s)
        for endpoint in model.endpoints:
            samples = self._samples[(model.id, endpoint.provider)]
            if not samples:
                continue
            in_window = [s.started_at for s in samples if s.started_at >= window_start]
            judged = [s for s in samples if s.started_at <= now]
            moments = [
                active_until(judged, interval_s=self._interval_of(endpoint)),
                min(in_window) + timedelta(seconds=self._window_s) if in_window else None,
                samples[0].started_at,  # ahead of `now` only with clock skew between processes
            ]
            for moment in moments:
                if moment is not None and now < moment < horizon:
                    horizon = moment
        return horizon
