"""What the model page reads besides live figures: history roll-ups, incidents, maintenance.

History rows and incidents are built with the API's own response models (`/history` items,
`/v1/incidents` items) from the same store verbs, so the page and the API agree on every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from api.pages.charts import Day
from api.routes.history import HistoryBucketOut
from api.routes.incidents import IncidentOut
from monitor.rollups import bucket_start, bucket_starts

# Ranges the page draws: name -> (days, step seconds).
RANGES = {"7d": (7, 3600), "30d": (30, 86400), "90d": (90, 86400)}


@dataclass(frozen=True)
class Row:
    t: datetime
    values: dict[str, Any]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass
class History:
    """History items per (provider, range), oldest first."""

    by_range: dict[tuple[str, str], list[Row]] = field(default_factory=dict)
    starts: dict[str, datetime] = field(default_factory=dict)  # range -> first bucket start

    def start(self, range_name: str) -> str:
        return self.starts[range_name].isoformat()

    def add(self, provider: str, range_name: str, items: Iterable[dict[str, Any]]) -> None:
        rows = [Row(_as_datetime(item["t"]), dict(item)) for item in items]
        self.by_range[(provider, range_name)] = sorted(rows, key=lambda r: r.t)

    def rows(self, provider: str, range_name: str) -> list[Row]:
        return self.by_range.get((provider, range_name), [])

    def uptime(self, provider: str, days: int) -> float | None:
        """ok / (ok + failed) summed over the range's rows (rate_limited in neither)."""
        range_name = {7: "7d", 30: "30d", 90: "90d"}[days]
        ok = sum(int(r.values.get("ok") or 0) for r in self.rows(provider, range_name))
        failed = sum(int(r.values.get("failed") or 0) for r in self.rows(provider, range_name))
        return ok / (ok + failed) if ok + failed else None

    def days(self, provider: str, *, now: datetime) -> list[Day]:
        """The 90 daily cells, oldest first, today last; a day without a row has no data."""
        by_day = {r.t.date(): r for r in self.rows(provider, "90d")}
        today = now.astimezone(timezone.utc).date()
        cells = []
        for back in range(89, -1, -1):
            day = today - timedelta(days=back)
            row = by_day.get(day)
            moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            if row is None:
                cells.append(Day(moment, None, 0))
            else:
                cells.append(Day(moment, row.values.get("uptime"), int(row.values.get("samples") or 0)))
        return cells


async def model_history(store: Any, model_id: str, providers: Sequence[str], *, now: datetime) -> History:
    """Roll-up history of each endpoint for the page's ranges, as `/history` serves it
    (`HistoryBucketOut` items: every bucket present, empty ones with null figures)."""
    history = History()
    for provider in providers:
        for range_name, (days, step_s) in RANGES.items():
            end = now
            first = bucket_start(end - timedelta(days=days), step_s)
            history.starts[range_name] = first
            stored = await store.rollup_buckets(model_id, provider, step_s, first, end)
            history.add(provider, range_name, [
                HistoryBucketOut.of(t, stored.get(t)).model_dump(mode="json", by_alias=True)
                for t in bucket_starts(first, end, step_s)
            ])
    return history


async def model_incidents(store: Any, model_id: str, *, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Open incidents and those open at some moment since `since`, newest first, as
    `/v1/incidents?model=...&since=...` lists them."""
    found = await store.list_incidents(model_id=model_id, since=since, limit=100)
    items = []
    for incident in found:
        item = IncidentOut.of(incident).model_dump(mode="json")
        end = incident.resolved_at or now
        item.update(
            open=incident.open, started_at_iso=item["started_at"], resolved_at_iso=item["resolved_at"],
            started_at=incident.started_at, resolved_at=incident.resolved_at,
            duration=duration_text((end - incident.started_at).total_seconds()),
            error_kinds=sorted(item["error_kinds"].items(), key=lambda kv: (-kv[1], kv[0])),
        )
        items.append(item)
    return items


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days {hours % 24} h"


def maintenance_windows(catalog: Any, model_id: str, *, now: datetime) -> list[dict[str, Any]]:
    """The configured windows that apply to the model (or to every model) and have not ended."""
    windows = []
    for window in getattr(catalog, "maintenance", ()):
        if window.model not in (None, model_id) or window.end <= now:
            continue
        scope = [f"provider {window.provider}" if window.provider else "every provider"]
        if window.location:
            scope.append(f"location {window.location}")
        windows.append({
            "start": window.start, "end": window.end, "start_iso": window.start.isoformat(),
            "end_iso": window.end.isoformat(), "reason": window.reason, "scope": ", ".join(scope),
            "now": window.start <= now < window.end,
        })
    return sorted(windows, key=lambda w: w["start"])
