"""APScheduler 3.x wiring: one interval job per catalog endpoint, and the schedule's own health.

Each job has an explicit id (`job_id`: a JSON array of model id and provider, so no two endpoints
can share one), `max_instances=1`, coalescing and a misfire grace of half an interval. Runs fall
on the endpoint's wall-clock slot grid (`monitor.coordination.SlotGrid`: slot starts at
`k * interval + phase`, the phase a stable hash of the job id, staggered by the location's place
in `locations`), the same grid in every process, so runs are spread over the interval (no burst
at start) and a restart resumes the cadence by itself. Endpoints that can only fail with
`config_error` (an unset key or URL variable) make no network call, so their first run is at once
(unless their last probe is recent) and the page shows why they are down right away. Jobs look up
their endpoint in the current catalog at run time, so a config reload takes effect through
`apply()`. `shutdown()` stops scheduling and waits, bounded, for probes in flight.

HA: at each run the job claims its slot (`SlotClaims`, built at the entrypoint: in-process for
SQLite, shared through PostgreSQL otherwise) and probes only when it won; a lost claim is counted
(`llm_monitor_slot_claims_total{outcome="claimed_elsewhere"}`), not a skipped run. With shared
claims a sweep every `sweep_s` takes over this location's slots whose winner died holding them
(lease expired, no probe stored in the slot) and probes them.
When the database cannot answer a claim the job probes anyway (`unavailable`): a duplicate is
possible then, a gap is not.

When probes cannot keep up (more endpoints than the concurrency bound serves in an interval),
APScheduler skips runs: `max_instances` while the endpoint's previous run still waits or probes,
`misfire` when a run comes due longer than the grace ago. Each skipped run is counted
(`llm_monitor_skipped_runs_total{reason}`) and reported in one log line per `SKIP_LOG_PERIOD_S`
instead of APScheduler's line per run.

Lag (`llm_monitor_scheduler_lag_seconds`) is how late a probe really started: from the oldest
scheduled run of its endpoint that no probe has served yet to the moment the probe gets its
concurrency slot. A run is served by the first probe of the endpoint that starts after it; a
skipped run is not, so each one makes the endpoint's next probe an interval later. The gauge
holds the latest started probe's lag.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Sequence

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.probes.base import DEFAULT_LOCATION, Trigger
from monitor.catalog import Catalog, EndpointConfig, ModelConfig
from monitor.coordination import LocalClaims, SlotClaims, SlotGrid, SlotKey
from monitor.metrics import SKIP_MAX_INSTANCES, SKIP_MISFIRE, SKIP_REASONS, Metrics
from monitor.runner import Runner

log = logging.getLogger(__name__)

# A claim's lease: the probe's timeout plus this margin (queueing for a concurrency slot, storing).
LEASE_MARGIN_S = 10.0
# The take-over sweep runs every quarter of the shortest interval, within these bounds.
SWEEP_MIN_S = 0.25
SWEEP_MAX_S = 5.0
# "the database could not answer a claim" is logged at most once per this many seconds.
CLAIM_ERROR_LOG_PERIOD_S = 60.0
# Skipped runs are logged as one summary line per this many seconds at most.
SKIP_LOG_PERIOD_S = 10.0
# The summary names this many of the endpoints with the most skipped runs.
SKIP_LOG_TOP = 3


def job_id(model_id: str, provider: str) -> str:
    """The endpoint's job id. A JSON array, not a join with a separator: model `a|b` with provider
    `c` and model `a` with provider `b|c` must stay two jobs."""
    return json.dumps([model_id, provider], ensure_ascii=False)


class _WithoutPerRunSkipLines(logging.Filter):
    """Drops APScheduler's warning per skipped run (thousands a minute under overload); the
    scheduler counts those runs and logs a summary instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        max_instances = (
            message.startswith("Execution of job") and "maximum number of running instances" in message
        )
        misfire = message.startswith("Run time of job") and "was missed by" in message
        return not (max_instances or misfire)


_PER_RUN_SKIP_FILTER = _WithoutPerRunSkipLines()
# The loggers APScheduler 3.x writes those lines to: the scheduler's and the default executor's.
_APSCHEDULER_SKIP_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


class SkipSummary:
    """Collects skipped runs and logs them as one warning per period: the first skip of a quiet
    spell starts the period, its end (or `flush()`) writes the line."""

    def __init__(self, period_s: float = SKIP_LOG_PERIOD_S) -> None:
        self._period_s = period_s
        self._by_reason: Counter[str] = Counter()
        self._by_job: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._since: float | None = None

    def add(self, reason: str, job: str, count: int) -> None:
        self._by_reason[reason] += count
        self._by_job[job] += count
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._since = loop.time()
            self._timer = loop.call_later(self._period_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        total = sum(self._by_reason.values())
        if total:
            elapsed = asyncio.get_running_loop().time() - (self._since or 0.0)
            reasons = ", ".join(f"{reason} {self._by_reason[reason]}" for reason in SKIP_REASONS
                                if self._by_reason[reason])
            most = ", ".join(f"{job} {count}" for job, count in self._by_job.most_common(SKIP_LOG_TOP))
            log.warning(
                "skipped %d scheduled probe run%s in the last %.0f s (%s): probes do not keep up "
                "with their intervals; most skipped: %s",
                total, "" if total == 1 else "s", elapsed, reasons, most,
            )
        self._by_reason.clear()
        self._by_job.clear()
        self._since = None


def spread_offset(key: str, interval_s: float) -> float:
    """A stable offset in [0, interval) for a job id: spreads first runs evenly, reproducibly."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval_s


def first_run_at(
    grid: SlotGrid, now: datetime, last_probe_at: datetime | None, *, offline: bool = False
) -> datetime:
    """The first run: the next slot start on the endpoint's grid. `offline`: the probe will fail
    with config_error without any network call, so it runs at once unless its last probe is
    recent (then the grid decides too: no extra probe because of a restart)."""
    if offline and (last_probe_at is None or last_probe_at + timedelta(seconds=grid.interval_s) <= now):
        return now
    return grid.next_start(now)


class ProbeScheduler:
    def __init__(
        self,
        runner: Runner,
        metrics: Metrics,
        *,
        interval_of: Callable[[EndpointConfig], float],
        is_offline: Callable[[EndpointConfig], bool] = lambda endpoint: False,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        claims: SlotClaims | None = None,
        location: str | None = None,
        locations: Sequence[str] = (),
        lease_margin_s: float = LEASE_MARGIN_S,
    ) -> None:
        """`is_offline(endpoint)`: its probes fail with config_error without a network call.
        `claims`: who probes which slot (default: in-process). `location`: this process's
        (default: the runner's); `locations`: every location, in one agreed order (staggering;
        default: this one alone)."""
        self._claims: SlotClaims = claims if claims is not None else LocalClaims()
        self._location = location or getattr(runner, "location", DEFAULT_LOCATION)
        order = list(locations) or [self._location]
        if self._location not in order:
            raise ValueError(f"locations: {self._location!r} (this location) is not in the list {order}")
        self._stagger = (order.index(self._location), len(order))
        self._lease_margin_s = lease_margin_s
        self._grids: dict[str, SlotGrid] = {}
        # Per job id: the scheduled time of its latest submitted run (which slot a run is for).
        self._due_at: dict[str, datetime] = {}
        self._sweep_s = SWEEP_MAX_S
        self._sweeper: asyncio.Task | None = None
        self._claim_error_logged = float("-inf")
        self._runner = runner
        self._metrics = metrics
        self._interval_of = interval_of
        self._is_offline = is_offline
        self._clock = clock
        self._catalog: Catalog | None = None
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        for name in _APSCHEDULER_SKIP_LOGGERS:
            logging.getLogger(name).addFilter(_PER_RUN_SKIP_FILTER)  # once: addFilter dedupes
        self._skips = SkipSummary()
        # Per job id: the scheduled time of its oldest run that no probe has served yet.
        self._unserved_since: dict[str, datetime] = {}
        self._in_flight: set[asyncio.Task] = set()

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def start(self, catalog: Catalog, last_probe_at: Mapping[tuple[str, str], datetime]) -> None:
        """Must be called inside the running event loop."""
        self.apply(catalog, last_probe_at)
        self._scheduler.start()
        if getattr(self._claims, "shared", False):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="slot-take-over")

    def apply(self, catalog: Catalog, last_probe_at: Mapping[tuple[str, str], datetime]) -> None:
        """Make the jobs match `catalog`: add new endpoints, reschedule changed, drop removed."""
        old = self._catalog
        self._catalog = catalog
        wanted: dict[str, tuple[str, EndpointConfig]] = {
            job_id(m.id, e.provider): (m.id, e) for m, e in catalog.endpoints()
        }
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
                self._unserved_since.pop(job.id, None)
                self._grids.pop(job.id, None)
                log.info("unscheduled %s (removed from config)", job.id)
        now = self._clock()
        for key, (model_id, endpoint) in wanted.items():
            interval = self._interval_of(endpoint)
            previous = None if old is None else _endpoint(old, model_id, endpoint.provider)[1]
            # Before start() APScheduler looks pending jobs up by a linear scan: none exist yet.
            existing = None if old is None else self._scheduler.get_job(key)
            if existing is not None and previous is not None and self._interval_of(previous) == interval:
                continue  # unchanged cadence: keep the job and its next run time
            if existing is not None:
                existing.remove()
                self._unserved_since.pop(key, None)  # a new cadence starts afresh
            self._metrics.set_endpoint_interval(model_id, endpoint.provider, interval)
            grid = SlotGrid.of(key, interval, location_index=self._stagger[0], locations=self._stagger[1])
            self._grids[key] = grid
            self._scheduler.add_job(
                self._run_job,
                # No jitter: every process fires on the same grid, and the claim picks one.
                trigger=IntervalTrigger(seconds=grid.interval_s, start_date=grid.anchor, timezone=timezone.utc),
                args=(model_id, endpoint.provider),
                id=key,
                name=key,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval / 2)),
                next_run_time=first_run_at(
                    grid, now, last_probe_at.get((model_id, endpoint.provider)),
                    offline=self._is_offline(endpoint),
                ),
            )
        if self._grids:
            shortest = min(grid.interval_s for grid in self._grids.values())
            self._sweep_s = min(SWEEP_MAX_S, max(SWEEP_MIN_S, shortest / 4))

    async def run_now(self, model_id: str, provider: str):
        """Probe one endpoint immediately (admin "probe now"), outside its schedule."""
        assert self._catalog is not None
        model, endpoint = _endpoint(self._catalog, model_id, provider)
        if model is None or endpoint is None:
            raise KeyError(f"{model_id}/{provider}")
        return await self._runner.probe_endpoint(model, endpoint, trigger=Trigger.MANUAL)

    async def shutdown(self, grace_s: float) -> int:
        """Stop scheduling; wait up to grace_s for probes in flight. Returns how many were cut."""
        if not self._scheduler.running:
            return 0
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        # Pause first: APScheduler's shutdown cancels running coroutine jobs, and the probes in
        # flight must be allowed to finish (and be stored) within the grace period.
        self._scheduler.pause()
        cut = 0
        pending = {task for task in self._in_flight if not task.done()}
        if pending:
            log.info("waiting up to %.0fs for %d probes in flight", grace_s, len(pending))
            _, still = await asyncio.wait(pending, timeout=grace_s)
            cut = len(still)
            if still:
                log.warning("abandoned %d probes still running after %.0fs", cut, grace_s)
                for task in still:
                    task.cancel()
                await asyncio.gather(*still, return_exceptions=True)
        self._skips.flush()
        self._scheduler.shutdown(wait=False)
        return cut

    async def _run_job(self, model_id: str, provider: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        key = job_id(model_id, provider)
        try:
            assert self._catalog is not None
            model, endpoint = _endpoint(self._catalog, model_id, provider)
            grid = self._grids.get(key)
            if model is None or endpoint is None or grid is None:
                self._unserved_since.pop(key, None)
                return  # removed by a reload while this run was queued
            slot = grid.slot_of(self._due_at.pop(key, None) or self._clock())
            try:
                won = await self._claims.claim(
                    model_id, provider, self._location, slot,
                    interval_s=grid.interval_s, lease_s=endpoint.timeout_s + self._lease_margin_s,
                )
                outcome = "won" if won else "claimed_elsewhere"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                won, outcome = True, "unavailable"
                self._log_claim_error(exc)
            self._metrics.inc_slot_claim(outcome)
            if not won:
                self._unserved_since.pop(key, None)  # served, by another process
                return
            await self._probe_slot(model, endpoint, on_start=lambda: self._started(key))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the job's future runs
            log.exception("probe job %s failed unexpectedly", key)
        finally:
            self._in_flight.discard(task)

    async def _probe_slot(
        self, model: ModelConfig, endpoint: EndpointConfig, on_start: Callable[[], None] | None = None,
    ) -> None:
        if on_start is None:
            await self._runner.probe_endpoint(model, endpoint)
        else:
            await self._runner.probe_endpoint(model, endpoint, on_start=on_start)

    async def _sweep_loop(self) -> None:
        """Shared claims: take over this location's slots whose winner died holding them."""
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                taken = await self._claims.take_over(self._location)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log_claim_error(exc)
                continue
            for slot_key in taken:
                self._start_taken_over(slot_key)

    def _start_taken_over(self, slot_key: SlotKey) -> None:
        assert self._catalog is not None
        model, endpoint = _endpoint(self._catalog, slot_key.model_id, slot_key.provider)
        if model is None or endpoint is None or slot_key.kind != "scheduled":
            return
        log.info("took over slot %s of %s/%s at %s: its prober stopped before finishing",
                 slot_key.slot.isoformat(), slot_key.model_id, slot_key.provider, self._location)
        self._metrics.inc_slot_claim("taken_over")

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await self._probe_slot(model, endpoint)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taken-over probe of %s/%s failed unexpectedly", model.id, endpoint.provider)
            finally:
                self._in_flight.discard(task)

        asyncio.get_running_loop().create_task(run(), name="slot-taken-over")

    def _log_claim_error(self, exc: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._claim_error_logged >= CLAIM_ERROR_LOG_PERIOD_S:
            self._claim_error_logged = now
            log.warning(
                "slot claims unavailable (%s): probing without a claim, so another scheduler of "
                "this location may probe the same slot until the database answers again",
                type(exc).__name__,
            )

    def _started(self, key: str) -> None:
        """The job's probe got its concurrency slot: it serves every run scheduled so far."""
        since = self._unserved_since.pop(key, None)
        if since is not None:
            self._metrics.set_scheduler_lag(max(0.0, (self._clock() - since).total_seconds()))

    def _owe(self, key: str, run_times: list[datetime]) -> None:
        if run_times:
            self._unserved_since.setdefault(key, min(run_times))  # keep the oldest

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            self._due_at[event.job_id] = max(event.scheduled_run_times)
        self._owe(event.job_id, event.scheduled_run_times)

    def _on_skipped(self, event: JobSubmissionEvent | JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            reason, run_times = SKIP_MAX_INSTANCES, list(event.scheduled_run_times)
        else:  # EVENT_JOB_MISSED: submitted (and so already owed), found too late to run
            reason, run_times = SKIP_MISFIRE, [event.scheduled_run_time]
        self._owe(event.job_id, run_times)
        self._metrics.inc_skipped(reason, len(run_times))
        self._skips.add(reason, event.job_id, len(run_times))


def _endpoint(
    catalog: Catalog, model_id: str, provider: str
) -> tuple[ModelConfig | None, EndpointConfig | None]:
    model = catalog.find(model_id)
    return model, None if model is None else model.endpoint(provider)
