"""Retention: what the database keeps, and the background job that keeps the roll-ups current.

`prune(store, catalog, now=...)` applies the catalog's `defaults.retention`:
1. first absorbs every new probe into the roll-ups (so nothing is deleted unrolled);
2. deletes raw probes that started before the raw cutoff, in small batches (each its own short
   transaction, with a pause between them so the probe writer and the API get the database);
3. deletes hourly roll-ups that start before the hourly cutoff, the same way. Daily roll-ups
   are kept for ever.

The raw cutoff is the UTC midnight at or before now - max(`retention.raw`, `LIVE_WINDOW_MAX_S`,
2 x the longest probe interval): live figures (windows up to 90 days, `active` judged on the last
2 intervals) never lose a probe they show. It moves further back to the start of the oldest open
incident when the store can tell (the incidents work's `list_incidents(open=True)`; retention asks
for it when the store has it). Independently of the cutoff, the store never deletes
a probe the roll-ups have not absorbed (above the watermark, or a gap) nor the latest / latest-ok
probe of an endpoint (`endpoint_latest`, used to restore metrics after a restart).

`maintain(...)` is the service's loop: the roll-up job every `Settings.rollup_interval_s`,
`prune` every `Settings.prune_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.catalog import Catalog
from monitor.rollups import DAY, RollupRules, bucket_start
from monitor.store import Store

log = logging.getLogger(__name__)

LIVE_WINDOW_MAX_S = 90 * 86400.0  # the longest `?window=` of the live figures
PRUNE_BATCH = 2000
PRUNE_PAUSE_S = 0.05


@dataclass(frozen=True)
class PruneReport:
    absorbed: int
    raw_removed: int
    hourly_removed: int
    raw_cutoff: datetime
    hourly_cutoff: datetime

    def lines(self) -> list[str]:
        return [
            f"rolled up {self.absorbed} new probes",
            f"removed {self.raw_removed} raw probes started before {self.raw_cutoff.isoformat()}",
            f"removed {self.hourly_removed} hourly roll-ups before {self.hourly_cutoff.isoformat()}",
        ]


def raw_cutoff(catalog: Catalog, now: datetime, *, keep_since: datetime | None = None) -> datetime:
    """Raw probes started before this may go (see the module docstring)."""
    longest_interval = max((endpoint.interval_s for _, endpoint in catalog.endpoints()), default=0.0)
    keep_s = max(catalog.defaults.retention.raw_s, LIVE_WINDOW_MAX_S, 2 * longest_interval)
    cutoff = bucket_start(now - timedelta(seconds=keep_s), DAY)
    if keep_since is not None and keep_since < cutoff:
        cutoff = bucket_start(keep_since, DAY)
    return cutoff


def hourly_cutoff(catalog: Catalog, now: datetime) -> datetime:
    return bucket_start(now - timedelta(seconds=catalog.defaults.retention.hourly_s), DAY)


async def _open_incidents_since(store: Store) -> datetime | None:
    """Start of the oldest open incident, from the incidents work's store verbs when the store
    has them (`list_incidents(open=True)`), else None."""
    verb = getattr(store, "list_incidents", None)
    if verb is None:
        return None
    incidents = await verb(open=True, limit=100_000)
    return min((incident.started_at for incident in incidents), default=None)


async def prune(
    store: Store,
    catalog: Catalog,
    *,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
    pause_s: float = PRUNE_PAUSE_S,
) -> PruneReport:
    now = datetime.now(UTC) if now is None else now
    absorbed = await store.rollup(RollupRules.of(catalog))
    raw_at = raw_cutoff(catalog, now, keep_since=await _open_incidents_since(store))
    hourly_at = hourly_cutoff(catalog, now)
    raw_removed = hourly_removed = 0
    while True:
        removed = await store.prune_raw(raw_at, batch=batch)
        raw_removed += removed
        if removed < batch:
            break
        await asyncio.sleep(pause_s)
    while True:  # a batch may stop at a bucket-start boundary: go on until nothing is left
        removed = await store.prune_hourly(hourly_at, batch=batch)
        hourly_removed += removed
        if removed == 0:
            break
        await asyncio.sleep(pause_s)
    return PruneReport(absorbed, raw_removed, hourly_removed, raw_at, hourly_at)


async def maintain(
    store: Store,
    catalog_of: Callable[[], Catalog],
    *,
    prune_interval_s: float,
    rollup_interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    rolled_up: asyncio.Event | None = None,
) -> None:
    """Run for ever: roll-ups at once and then every `rollup_interval_s` (or `prune_interval_s`
    when shorter), retention (which rolls up first) every `prune_interval_s`, the first one a
    round after start. `rolled_up` is set after each round that succeeded (readers of roll-ups
    wait for the first). Failures are logged and retried next time."""
    tick_s = min(rollup_interval_s, prune_interval_s)
    next_prune = clock() + tick_s
    first = True
    while True:
        if not first:
            await asyncio.sleep(tick_s)
        first = False
        try:
            if clock() >= next_prune:
                next_prune = clock() + prune_interval_s
                report = await prune(store, catalog_of())
                if report.raw_removed or report.hourly_removed:
                    log.info("retention: %s", "; ".join(report.lines()))
            else:
                await store.rollup(RollupRules.of(catalog_of()))
            if rolled_up is not None:
                rolled_up.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be down: the next round retries
            log.warning("roll-up/retention round failed: %s", _describe(exc))


def _describe(exc: Any) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def prune_command(settings: Any) -> int:
    """`llm-monitor db prune`: roll up, prune, print what was removed. Exit 1 for a bad config
    or an unreachable database."""
    import sys

    from monitor.catalog import CatalogError, load_catalog
    from monitor.store import StoreError, open_store

    try:
        catalog = load_catalog(settings.config_path)
    except CatalogError as exc:
        print(f"{settings.config_path}: invalid config:\n{exc}", file=sys.stderr)
        return 1

    async def run() -> PruneReport:
        store = await open_store(settings.database_url)
        try:
            return await prune(store, catalog)
        finally:
            await store.close()

    try:
        report = asyncio.run(run())
    except (StoreError, ValueError) as exc:
        print(f"db prune failed: {_describe(exc)}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0
