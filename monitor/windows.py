"""Live figures over other windows (`?window=7d|30d|90d`) and other workload profiles
(`?input_tokens=`), next to the default figures `monitor.live.LiveFigures` keeps in memory.

A figure's identity is (model, window, profile). The default (the live window, each endpoint's
configured profile) is `LiveFigures.model()` itself. The others are derived from it: `active`,
and whatever other modules set on the endpoints (such as `state`), stay the default figures';
the window fields (`stats.WINDOW_FIELDS`) are recomputed, and `best_*` with them.
- The live window with another profile: from the samples already in memory.
- A longer window: from the database (`Store.window_figure_rows`: one index range per endpoint,
  small rows, no per-row objects), then cached. An entry is reused while the default figures
  of its model are the same object (they are replaced whenever a probe lands or a figure
  changes with time) and for at most `cache_s` seconds, so a window figure is never older than
  the default figures it was built beside, nor than `cache_s`.
Concurrent requests for the same uncached figure share one computation.

Why the database and not 90 days of samples in memory: 1,000 endpoints at a 30-minute cadence
hold 4.3 M probes over 90 days, which every process (scheduler and each API replica) would load at
start and keep; read on demand, a 30-day figure costs one range read of ~1,440 rows per endpoint.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from typing import Callable

from monitor.catalog import EndpointConfig, ModelConfig
from monitor.catalog.schema import INPUT_TOKEN_PROFILES
from monitor.live import LiveFigures
from monitor.stats import (
    WINDOWS,
    EndpointLive,
    ModelLive,
    best_figures,
    figures_of,
    in_window,
    inputs_from_rows,
    window_figures,
    window_name,
)

__all__ = ["PROFILES", "WINDOWS", "WindowFigures", "window_name"]
from monitor.store import Store

# The workload profiles the API accepts (`?input_tokens=`): the catalog's.
PROFILES: tuple[int, ...] = INPUT_TOKEN_PROFILES

Key = tuple[str, float, "int | None"]


class WindowFigures:
    """Figures of any (model, window, profile): the default ones straight from `LiveFigures`,
    the others computed and cached as the module docstring says."""

    def __init__(
        self, live: LiveFigures, store: Store, *, cache_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live = live
        self._store = store
        self._cache_s = cache_s
        self._monotonic = monotonic
        # key -> (default figures it was derived from, when computed, figures)
        self._cache: dict[Key, tuple[ModelLive, float, ModelLive]] = {}
        self._pending: dict[Key, asyncio.Future[ModelLive | None]] = {}

    def is_default(self, window_s: float | None, input_tokens: int | None) -> bool:
        return (window_s is None or window_s == self._live.window_s) and input_tokens is None

    def cached(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        """The figures when they are at hand without I/O (the default ones, or a current cache
        entry); None otherwise, or for an unknown model."""
        base = self._live.model(model_id)
        if base is None or self.is_default(window_s, input_tokens):
            return base
        key = (model_id, float(window_s or self._live.window_s), input_tokens)
        entry = self._cache.get(key)
        if entry is None or entry[0] is not base:
            return None
        if key[1] != self._live.window_s and self._monotonic() - entry[1] > self._cache_s:
            return None
        return entry[2]

    async def model(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        """The figures of one model (None for an unknown model). Raises StoreUnavailableError
        for a longer window while the database is down."""
        hit = self.cached(model_id, window_s, input_tokens)
        if hit is not None or self._live.model(model_id) is None:
            return hit
        key = (model_id, float(window_s or self._live.window_s), input_tokens)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ModelLive | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            figures = await self._compute(model_id, key[1], input_tokens)
            future.set_result(figures)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so a future nobody else awaited logs nothing
            raise
        finally:
            del self._pending[key]
        return figures

    async def models(self, window_s: float | None = None, input_tokens: int | None = None) -> list[tuple[ModelConfig, ModelLive]]:
        """Every catalog model with its figures, in catalog order."""
        out = []
        for model, _ in self._live.models():
            figures = await self.model(model.id, window_s, input_tokens)
            if figures is not None:
                out.append((model, figures))
        return out

    async def _compute(self, model_id: str, window_s: float, input_tokens: int | None) -> ModelLive | None:
        live = self._live
        base = live.model(model_id)
        model = live.catalog.find(model_id)
        if base is None or model is None:
            return None
        started = self._monotonic()
        now = live.now()
        since = now - timedelta(seconds=window_s)

        async def one(endpoint: EndpointConfig, current: EndpointLive) -> EndpointLive:
            profile = input_tokens or endpoint.input_tokens
            if window_s == live.window_s:
                samples = [s for s in live.samples_of(model_id, endpoint.provider) if s.started_at <= now]
                figures = window_figures(
                    in_window(samples, now=now, window_s=window_s), input_tokens=profile,
                    keep_cold_starts=endpoint.keep_cold_starts,
                    in_maintenance=live.maintenance_test(model_id, endpoint.provider),
                )
            else:
                rows = await self._store.window_figure_rows(
                    model_id, endpoint.provider, since, now, input_tokens=profile,
                    maintenance=live.maintenance_spans(model_id, endpoint.provider),
                )
                figures = figures_of(inputs_from_rows(rows, keep_cold_starts=endpoint.keep_cold_starts))
                figures.update(await self._latest(model_id, endpoint.provider, current, since, now))
            return replace(current, **figures)

        # On a database server the endpoints' reads run side by side (one pooled connection
        # each), so one model's figures take about one endpoint's read, not the sum; on SQLite
        # one after the other, which is faster (bench.windows).
        pairs = list(zip(model.endpoints, base.endpoints))
        if self._store.concurrent_reads:
            endpoints = list(await asyncio.gather(*(one(e, c) for e, c in pairs)))
        else:
            endpoints = [await one(e, c) for e, c in pairs]
        best_ttft_ms, best_throughput_tps = best_figures(endpoints)
        probe_times = [e.last_probe_at for e in endpoints if e.last_probe_at is not None]
        figures = replace(
            base, best_ttft_ms=best_ttft_ms, best_throughput_tps=best_throughput_tps,
            updated_at=max(probe_times) if probe_times else None, window_s=window_s,
            endpoints=tuple(endpoints),
        )
        if len(self._cache) > 2 * len(WINDOWS) * (len(PROFILES) + 1) * max(1, len(live.catalog.models)):
            self.prune()
        if live.model(model_id) is base:  # else a probe landed meanwhile: do not keep it
            self._cache[(model_id, window_s, input_tokens)] = (base, started, figures)
        return figures

    async def _latest(self, model_id: str, provider: str, current: EndpointLive, since, now) -> dict[str, object]:
        """The newest probe of the window: the live window's when it has one (fresher than the
        database while writes are buffered), else the database's newest if inside the window."""
        if current.last_probe_at is not None:
            return {"last_probe_at": current.last_probe_at, "last_error_kind": current.last_error_kind}
        newest = await self._store.recent_results(model_id, provider, 1)
        if newest and since <= newest[0].started_at <= now:
            result = newest[0]
            return {
                "last_probe_at": result.started_at,
                "last_error_kind": None if result.ok or result.error_kind is None else result.error_kind.value,
            }
        return {"last_probe_at": None, "last_error_kind": None}

    def prune(self) -> None:
        """Drop entries whose model's default figures have changed (or whose model is gone)."""
        for key, (base, _, _) in list(self._cache.items()):
            if self._live.model(key[0]) is not base:
                del self._cache[key]
