"""What the model page reads besides live figures: history roll-ups, incidents, maintenance.

History rows and incidents have the contract's JSON shapes (`/history` items, `/v1/incidents`
items), so the page and the API agree on every value. Each fetch returns None while its source
does not exist in this build (the page then says "no data yet"), a list (maybe empty) once it
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from api.pages.charts import Day

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


async def model_history(store: Any, model_id: str, providers: Sequence[str], *, now: datetime) -> History | None:
    """Roll-up history of each endpoint for the page's ranges; None while this build has no
    history store verb (the roll-ups work)."""
    return None


async def model_incidents(store: Any, model_id: str, *, since: datetime, now: datetime) -> list[dict[str, Any]] | None:
    """Open incidents and those resolved since `since`, newest first; None while this build has
    no incidents."""
    return None


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
