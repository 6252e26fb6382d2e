"""The long-running process: builds store, metrics, live figures, HTTP client, runner, scheduler
and the API app, restores state from the database, serves until SIGTERM/SIGINT, then drains.

Modes (`ProcessMode`): `run` (everything in one process), `scheduler` (probing + the same app for
/metrics and health), `api` (no probing; live figures re-read from the database every
`live_refresh_s`). SIGHUP re-reads the config file.
Shutdown order: stop accepting requests, stop scheduling, let in-flight probes finish (bounded by
`shutdown_grace_s`), flush buffered results, close the client and the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any, Coroutine, Mapping

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from api.app import create_app
from api.server import build_server
from llm_monitor.modes import ProcessMode
from monitor.catalog import Catalog, CatalogError, EndpointConfig, catalog_warnings, load_catalog
from monitor.confirm import ConfirmManager
from monitor.incidents import IncidentTracker
from monitor.liveness import LivenessChecker
from monitor.coordination import ProbingLockHeld, open_claims
from monitor.live import LiveFigures
from monitor.metrics import Metrics, build_incident_metrics, build_metrics
from monitor.probes.meters import LoopLagMonitor
from monitor.probes.transport import build_client
from monitor.retention import maintain
from monitor.rollups import DAY, bucket_start, window_aggregates
from monitor.runner import ResultBuffer, Runner
from monitor.scheduler import ProbeScheduler
from monitor.selftest import SelfTest
from monitor.settings import Settings
from monitor.store import Store, StoreUnavailableError, open_store
from monitor.windows import WINDOWS, WindowFigures

log = logging.getLogger(__name__)

# The collector's thresholds once start-up is done (Python's defaults: 700, 10, 10). A roll-up
# batch keeps tens of thousands of objects alive for a moment; at the defaults, with little else
# left in the collector's sight after `gc.freeze`, they trigger full collections over all of them,
# each a pause of the event loop (`bench.rollups` reports the longest pause). Young collections
# every 50,000 net allocations make those rare; garbage without cycles is freed at once whatever
# the thresholds.
GC_THRESHOLDS = (50_000, 20, 20)


def settle_collector() -> None:
    """Everything loaded so far (catalog, live windows, restored state) lives for the whole run:
    move it out of the collector's sight (`gc.freeze`), so that full collections stay short
    instead of pausing the loop for hundreds of milliseconds (which would delay token reads),
    then collect less often (`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


READINESS_TIMEOUT_S = 3.0
# The recompute loop wakes when a model is due, and at least this often (a safety net).
LIVE_RECOMPUTE_MAX_S = 60.0


async def restore_metrics(store: Store, metrics: Metrics, live: LiveFigures, catalog: Catalog) -> None:
    """Re-expose the last known values right after a restart, before any new probe lands; only
    for configured endpoints (the database also holds endpoints removed from the config)."""
    configured = {(model.id, endpoint.provider) for model, endpoint in catalog.endpoints()}

    def only_configured(values: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
        return {key: value for key, value in values.items() if key in configured}

    metrics.restore(
        only_configured(await store.latest_results()),
        only_configured(await store.latest_ok_results()),
        only_configured(await store.consecutive_failures()),
    )
    for _, model_live in live.models():
        metrics.set_model_live(model_live)


class Service:
    """Holds the running process's parts so admin hooks, signals and shutdown can reach them."""

    def __init__(self, settings: Settings, catalog: Catalog, *, mode: ProcessMode, environ: Mapping[str, str]):
        """`environ` is where endpoint keys and `${VAR}` placeholders are read from."""
        self.settings = settings
        self.catalog = catalog
        self.mode = mode
        self.environ = environ
        # /metrics: this process's own collectors (CPU, memory, GC, ...) in every mode; the probe,
        # figure and scheduler metrics only where probing happens, so in a split deployment each
        # series has one source and an API replica never shows a scheduler gauge stuck at 0.
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.metrics = build_metrics(self.registry if mode.probes else CollectorRegistry())
        self.incident_metrics = build_incident_metrics(self.registry if mode.probes else CollectorRegistry())
        self.incidents: IncidentTracker | None = None
        self.live = LiveFigures(catalog, window_s=settings.window_s, interval_of=self.interval_of)
        self.store: Store | None = None
        self.buffer: ResultBuffer | None = None
        self.scheduler: ProbeScheduler | None = None
        self.selftest: SelfTest | None = None
        self.liveness: LivenessChecker | None = None
        self.confirm: ConfirmManager | None = None
        self._reload_lock = asyncio.Lock()
        # Tasks started from callbacks (signal handlers): the loop keeps only weak references.
        self._callback_tasks: set[asyncio.Task[Any]] = set()

    def interval_of(self, endpoint: EndpointConfig) -> float:
        return self.settings.interval_override_s or endpoint.interval_s

    # --- readiness and admin hooks (used by the API) ---
    async def readiness(self) -> dict[str, Any]:
        database = False
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.ping(), timeout=READINESS_TIMEOUT_S)
                database = True
            except Exception:
                database = False
        status: dict[str, Any] = {"database": database}
        if self.buffer is not None:
            status.update(self.buffer.readiness())  # writes succeed, the writer task runs
        status["scheduler"] = None if self.scheduler is None else self.scheduler.running
        return status

    async def probe_now(self, model_id: str, provider: str) -> dict[str, Any]:
        if self.scheduler is None:
            raise RuntimeError("this process does not probe (api mode)")
        result = await self.scheduler.run_now(model_id, provider)
        return result.to_dict()

    async def reload(self) -> dict[str, Any]:
        """Apply the config file again. The file is read and validated in a worker thread, so a
        huge or pathological file never stalls probes or the API; on any failure (invalid file,
        unreadable file, longer than `reload_timeout_s`) the running config stays and one log
        line says why."""
        async with self._reload_lock:
            try:
                catalog = await asyncio.wait_for(
                    asyncio.to_thread(load_catalog, self.settings.config_path), self.settings.reload_timeout_s
                )
            except CatalogError as exc:
                return self._reload_rejected("; ".join(str(exc).splitlines()))
            except TimeoutError:
                return self._reload_rejected(f"reading the file took more than {self.settings.reload_timeout_s:g} s")
            except Exception as exc:  # unreadable file, out of memory, ...: never the running config
                return self._reload_rejected(f"{type(exc).__name__}: {exc}".splitlines()[0])
            for warning in catalog_warnings(catalog, self.environ):
                log.warning("%s", warning)
            old = {(m.id, e.provider) for m, e in self.catalog.endpoints()}
            new = {(m.id, e.provider) for m, e in catalog.endpoints()}
            for model_id, provider in old - new:
                self.metrics.remove_endpoint(model_id, provider)
            for model_id in {m.id for m in self.catalog.models} - {m.id for m in catalog.models}:
                self.metrics.remove_model(model_id)
            self.catalog = catalog
            if self.incidents is not None:
                self.incidents.set_catalog(catalog)
            self.live.set_catalog(catalog)
            for _, model_live in self.live.models():
                self.metrics.set_model_live(model_live)
            if self.scheduler is not None:
                self.scheduler.apply(catalog, {})
            if self.confirm is not None:
                self.confirm.apply(catalog)
            if self.liveness is not None:
                self.liveness.apply(catalog)
            log.info("config reloaded: %d models, %d endpoints", len(catalog.models), len(new))
            return {"reloaded": True, "models": len(catalog.models), "endpoints": len(new)}

    def _reload_rejected(self, reason: str) -> dict[str, Any]:
        log.error("config reload rejected, keeping the running config: %s", reason)
        return {"reloaded": False, "error": reason}

    # --- lifecycle ---
    async def serve(self) -> int:
        settings = self.settings
        for warning in catalog_warnings(self.catalog, self.environ):
            log.warning("%s", warning)
        try:
            self.store = await open_store(settings.database_url)
        except Exception as exc:
            log.error("cannot open the database: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return 1
        probing = self.mode.probes
        claims = probing_lock = None
        if probing:
            try:
                claims, probing_lock = open_claims(self.store)
            except ProbingLockHeld as exc:
                log.error("refusing to start %s: %s", self.mode, exc)
                await self.store.close()
                return 1
        await self._start_incidents(self.store, probing)
        await (self.live.load(self.store) if probing else self.live.follow(self.store))
        if probing:
            await restore_metrics(self.store, self.metrics, self.live, self.catalog)
        background: list[asyncio.Task] = []
        client = build_client() if probing else None
        # Liveness checks get their own client: a connection they kept open would hide the
        # probes' cold connection phases (and their own checks want a fresh connection anyway).
        liveness_client = build_client(max_connections=64, pool_shards=1) if probing else None
        lag_monitor = LoopLagMonitor() if probing else None
        try:
            if probing:
                assert client is not None and lag_monitor is not None
                lag_monitor.start()
                self.buffer = ResultBuffer(self.store, self.metrics, capacity=settings.buffer_size)
                background.append(asyncio.create_task(self.buffer.run(), name="result-writer"))
                self.selftest = SelfTest(
                    client=client, metrics=self.metrics.ops, lag_monitor=lag_monitor,
                    max_error_s=settings.selftest_max_error_s, interval_s=settings.selftest_interval_s,
                )
                self.selftest.start()
                background.append(asyncio.create_task(self.selftest.run(), name="self-test"))
                runner = Runner(
                    client=client,
                    metrics=self.metrics,
                    live=self.live,
                    buffer=self.buffer,
                    environ=self.environ,
                    max_concurrent=settings.max_concurrent_probes,
                    lag_monitor=lag_monitor,
                    location=settings.location,
                    is_suspect=self.selftest.is_suspect,
                )
                assert claims is not None
                self.scheduler = ProbeScheduler(
                    runner, self.metrics, interval_of=self.interval_of,
                    is_offline=lambda endpoint: endpoint.to_target(self.environ).config_error is not None,
                    claims=claims, location=settings.location, locations=settings.locations,
                    lease_margin_s=settings.claim_lease_margin_s,
                )
                runner.add_listener(self.incidents.touch)
                if getattr(claims, "shared", False):  # other schedulers' probes count here too
                    background.append(asyncio.create_task(self._reload_from_db_loop(export=True), name="live-follow"))
                latest = await self.store.latest_results()
                self.scheduler.start(self.catalog, {k: r.started_at for k, r in latest.items()})
                # Confirmation probes and liveness checks (monitor.confirm, monitor.liveness);
                # confirmations are claimed like scheduled slots (kind "confirm").
                self.confirm = ConfirmManager(runner.probe_endpoint, self.metrics, claims,
                                              location=settings.location)
                runner.add_listener(self.confirm.on_result)
                self.confirm.start(self.catalog, await self.store.consecutive_failures())
                assert liveness_client is not None
                self.liveness = LivenessChecker(
                    liveness_client, self.metrics, environ=self.environ,
                    on_failure=self.confirm.on_liveness_failure, on_recovered=self.confirm.on_liveness_recovered,
                )
                self.liveness.start(self.catalog)
                rolled_up = asyncio.Event()
                background.append(asyncio.create_task(maintain(
                    self.store, lambda: self.catalog, prune_interval_s=settings.prune_interval_s,
                    rollup_interval_s=settings.rollup_interval_s, rolled_up=rolled_up,
                ), name="rollups-retention"))
                background.append(asyncio.create_task(self._window_metrics_loop(rolled_up), name="window-metrics"))
            else:
                background.append(asyncio.create_task(self._reload_from_db_loop(), name="live-refresh"))
            background.append(asyncio.create_task(self._recompute_loop(export=probing), name="live-recompute"))
            background.append(asyncio.create_task(
                self.incidents.run(self.buffer.flush if self.buffer is not None else None), name="incidents"
            ))
            loop = asyncio.get_running_loop()
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, lambda: self._start_callback_task(self.reload(), "reload"))
            windows = WindowFigures(self.live, self.store, cache_s=settings.window_cache_s)
            app = create_app(
                settings=settings,
                store=self.store,
                live=self.live,
                registry=self.registry,
                readiness=self.readiness,
                admin=self if probing else None,
                windows=windows,
            )
            server = build_server(app, settings)
            settle_collector()
            log.info(
                "llm-monitor %s: %d models, %d endpoints, API on http://%s:%d",
                self.mode, len(self.catalog.models),
                sum(len(m.endpoints) for m in self.catalog.models), settings.host, settings.port,
            )
            await server.serve()
            if not server.started:
                log.error("the HTTP server could not start (is port %d free?)", settings.port)
                return 1
            log.info("shutting down")
            return 0
        finally:
            if self.liveness is not None:
                await self.liveness.shutdown()
            if self.confirm is not None:
                await self.confirm.shutdown()
            if self.scheduler is not None:
                await self.scheduler.shutdown(settings.shutdown_grace_s)
            if self.buffer is not None and self.buffer.pending:
                if not await self.buffer.flush():
                    log.error("could not save %d buffered results: database unavailable", self.buffer.pending)
            pending = [*background, *self._callback_tasks]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if lag_monitor is not None:
                await lag_monitor.stop()
            if self.selftest is not None:
                self.selftest.stop()
            if client is not None:
                await client.aclose()
            if liveness_client is not None:
                await liveness_client.aclose()
            if claims is not None:
                await claims.close()
            if probing_lock is not None:
                probing_lock.release()
            await self.store.close()

    async def _start_incidents(self, store: Store, probing: bool) -> None:
        """Endpoint state and incidents from the shared database (monitor/incidents.py): opened
        and resolved by probing processes, read by all; annotates the live figures."""
        self.incidents = IncidentTracker(
            store, self.catalog, interval_of=self.interval_of, window_s=self.settings.window_s,
            writes=probing, metrics=self.incident_metrics, on_change=self._incidents_changed,
            sweep_s=self.settings.incident_sweep_s,
        )
        self.live.annotate = self.incidents.annotate
        # The first evaluation (every endpoint's window, like the live figures' load) runs before
        # probing starts: its one-off CPU (query compilation, the windows) would otherwise land
        # in the middle of the first probes and distort their timings.
        try:
            await self.incidents.evaluate()
        except Exception as exc:  # the database may come back later: the task retries
            log.warning("first incident evaluation failed: %s", type(exc).__name__)

    def _incidents_changed(self, model_ids: set[str] | None) -> None:
        for model_live in self.live.recompute_models(model_ids):
            if self.mode.probes:
                self.metrics.set_model_live(model_live)

    def _start_callback_task(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._callback_tasks.add(task)
        task.add_done_callback(self._callback_tasks.discard)

    async def _recompute_loop(self, *, export: bool) -> None:
        """Figures change with time alone (activity lapses 2 intervals after the latest probe,
        old probes leave the window): recompute each model when that moment comes. `export`:
        this process owns the figure metrics (not an API replica)."""
        while True:
            await self.live.wait_until_due(LIVE_RECOMPUTE_MAX_S)
            for model_live in self.live.recompute():
                if export:
                    self.metrics.set_model_live(model_live)

    async def _window_metrics_loop(self, rolled_up: asyncio.Event) -> None:
        """Long-range metrics (`llm_endpoint_uptime_ratio{window}`, ...) for the windows longer
        than the live one, from the daily roll-ups (`rollups.window_aggregates`: the window's
        UTC days, today included), after the first roll-up round and then every
        `window_metrics_s`. One endpoint read at a time, paced so that a pass spreads over
        half the interval: the API and the probes sharing the loop never wait behind it (the
        live window's metrics are exported with every figures change)."""
        assert self.store is not None
        long_windows = {name: round(seconds / DAY) for name, seconds in WINDOWS.items()
                        if seconds != self.live.window_s}
        if not long_windows:
            return
        longest = max(long_windows.values())
        await rolled_up.wait()
        while True:
            started = time.monotonic()
            models = [model for model, _ in self.live.models()]
            pause_s = min(1.0, self.settings.window_metrics_s / 2 / max(1, len(models)))
            try:
                for model in models:
                    for endpoint in model.endpoints:
                        now = self.live.now()
                        today = bucket_start(now, DAY)
                        daily = await self.store.rollup_buckets(
                            model.id, endpoint.provider, DAY, today - timedelta(days=longest - 1),
                            today + timedelta(days=1), input_tokens=endpoint.input_tokens,
                        )
                        for name, merged in window_aggregates(daily, now, long_windows).items():
                            ttft_ms = merged.ttft_ms(0.5)
                            self.metrics.set_long_window(model.id, endpoint.provider, name, merged.uptime,
                                                         None if ttft_ms is None else ttft_ms / 1000.0)
                    await asyncio.sleep(pause_s)
            except StoreUnavailableError as exc:
                log.warning("long-window metrics not refreshed: %s", exc)
            await asyncio.sleep(max(0.0, self.settings.window_metrics_s - (time.monotonic() - started)))

    async def _reload_from_db_loop(self, *, export: bool = False) -> None:
        """Apply what other processes stored (API replicas: the scheduler's probes; HA
        schedulers: each other's), every `live_refresh_s`; `export` re-exports the figure gauges
        so they describe every probe of the endpoint, not only this process's slots."""
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.live_refresh_s)
            try:
                await self.live.follow(self.store)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live figures refresh from the database failed: %s", type(exc).__name__)
                continue
            if export:
                for _, model_live in self.live.models():
                    self.metrics.set_model_live(model_live)


async def serve(settings: Settings, catalog: Catalog, *, mode: ProcessMode, environ: Mapping[str, str]) -> int:
    return await Service(settings, catalog, mode=mode, environ=environ).serve()
