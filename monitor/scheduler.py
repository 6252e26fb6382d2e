"""APScheduler 3.x wiring: one interval job per catalog endpoint.

Each job has an explicit id (`job_id`: a JSON array of model id and provider, so no two
endpoints can share one), `max_instances=1`, coalescing, a misfire grace
of half an interval and jitter. First runs are spread over the first interval by a stable hash of
the job id (no burst at start), except for endpoints that can only fail with `config_error` (an
unset key or URL variable): those make no network call, so they run at once and the page shows
why they are down right away. After a restart an endpoint whose last probe is recent resumes at
`last_probe + interval`. Jobs look up their endpoint in the current catalog at run time, so a
config reload takes effect through `apply()`. `shutdown()` stops scheduling and waits, bounded,
for probes in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.catalog import Catalog, EndpointConfig
from monitor.metrics import Metrics
from monitor.runner import Runner

log = logging.getLogger(__name__)

MAX_JITTER_S = 60.0


def job_id(model_id: str, provider: str) -> str:
    """The endpoint's job id. A JSON array, not a join with a separator: model `a|b` with provider
    `c` and model `a` with provider `b|c` must stay two jobs."""
    return json.dumps([model_id, provider], ensure_ascii=False)


def spread_offset(key: str, interval_s: float) -> float:
    """A stable offset in [0, interval) for a job id: spreads first runs evenly, reproducibly."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval_s


def first_run_at(
    key: str, interval_s: float, now: datetime, last_probe_at: datetime | None, *, offline: bool = False
) -> datetime:
    """`offline`: the probe will fail with config_error without any network call."""
    if last_probe_at is not None:
        due = last_probe_at + timedelta(seconds=interval_s)
        if due > now:
            return due  # resume the old cadence: no extra probe because of a restart
    if offline:
        return now
    return now + timedelta(seconds=spread_offset(key, interval_s))


class ProbeScheduler:
    def __init__(
        self,
        runner: Runner,
        metrics: Metrics,
        *,
        interval_of: Callable[[EndpointConfig], float],
        is_offline: Callable[[EndpointConfig], bool] = lambda endpoint: False,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        """`is_offline(endpoint)`: its probes fail with config_error without a network call."""
        self._runner = runner
        self._metrics = metrics
        self._interval_of = interval_of
        self._is_offline = is_offline
        self._clock = clock
        self._catalog: Catalog | None = None
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._in_flight: set[asyncio.Task] = set()

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def start(self, catalog: Catalog, last_probe_at: Mapping[tuple[str, str], datetime]) -> None:
        """Must be called inside the running event loop."""
        self.apply(catalog, last_probe_at)
        self._scheduler.start()

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
                log.info("unscheduled %s (removed from config)", job.id)
        now = self._clock()
        for key, (model_id, endpoint) in wanted.items():
            interval = self._interval_of(endpoint)
            previous = None if old is None else _endpoint(old, model_id, endpoint.provider)
            existing = self._scheduler.get_job(key)
            if existing is not None and previous is not None and self._interval_of(previous) == interval:
                continue  # unchanged cadence: keep the job and its next run time
            if existing is not None:
                existing.remove()
            self._metrics.set_endpoint_interval(model_id, endpoint.provider, interval)
            self._scheduler.add_job(
                self._run_job,
                trigger=IntervalTrigger(seconds=interval, jitter=min(interval * 0.1, MAX_JITTER_S)),
                args=(model_id, endpoint.provider),
                id=key,
                name=key,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval / 2)),
                next_run_time=first_run_at(
                    key, interval, now, last_probe_at.get((model_id, endpoint.provider)),
                    offline=self._is_offline(endpoint),
                ),
            )

    async def run_now(self, model_id: str, provider: str):
        """Probe one endpoint immediately (admin "probe now"), outside its schedule."""
        assert self._catalog is not None
        model = self._catalog.find(model_id)
        endpoint = None if model is None else model.endpoint(provider)
        if model is None or endpoint is None:
            raise KeyError(f"{model_id}/{provider}")
        return await self._runner.probe_endpoint(model, endpoint)

    async def shutdown(self, grace_s: float) -> int:
        """Stop scheduling; wait up to grace_s for probes in flight. Returns how many were cut."""
        if not self._scheduler.running:
            return 0
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
        self._scheduler.shutdown(wait=False)
        return cut

    async def _run_job(self, model_id: str, provider: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            assert self._catalog is not None
            model = self._catalog.find(model_id)
            endpoint = None if model is None else model.endpoint(provider)
            if model is None or endpoint is None:
                return  # removed by a reload while this run was queued
            await self._runner.probe_endpoint(model, endpoint)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the job's future runs
            log.exception("probe job %s failed unexpectedly", job_id(model_id, provider))
        finally:
            self._in_flight.discard(task)

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            lag = (self._clock() - event.scheduled_run_times[-1]).total_seconds()
            self._metrics.set_scheduler_lag(max(0.0, lag))


def _endpoint(catalog: Catalog, model_id: str, provider: str) -> EndpointConfig | None:
    model = catalog.find(model_id)
    return None if model is None else model.endpoint(provider)
