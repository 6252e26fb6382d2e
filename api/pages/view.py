"""What the status pages show, derived from the live figures the API serves (no I/O).

Every card is built from `ModelLiveOut.of(figures)` dumped to JSON types: exactly the body of
`GET /v1/models/{id}/live`, so a page can never show a number the API does not. Fields that
later branches add to that body (`state`, `locations`, intervals, `open_incident`, ...) appear
in the dict when they exist; the templates render what is there and "no data yet" otherwise.

The dict of a model is cached by the IDENTITY of its immutable figures object (replaced, never
mutated, when a probe lands), so a page of 50 cards converts nothing until figures change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from api.schemas import ModelLiveOut

PAGE_SIZE = 50
MAX_QUERY_CHARS = 200
FILTERS = ("all", "down", "degraded")

# Endpoint states of the contract, with the text and icon shown beside each (colour is never
# the only signal). Without a `state` field (before the incidents work lands) an endpoint is
# shown by its `active` flag.
STATE_LABELS: dict[str, tuple[str, str]] = {
    "up": ("Up", "\u2714"),
    "degraded": ("Degraded", "\u26a0"),
    "regional": ("Regional outage", "\u25d0"),
    "down": ("Down", "\u2716"),
    "misconfigured": ("Misconfigured", "\u2699"),
    "unknown": ("No data yet", "?"),
    "active": ("Active", "\u2714"),
    "inactive": ("Not active", "\u2716"),
}
MODEL_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "up": ("All endpoints active", "\u2714"),
    "degraded": ("Degraded", "\u26a0"),
    "down": ("Down", "\u2716"),
    "unknown": ("No data yet", "?"),
}
DEGRADED_STATES = frozenset({"degraded", "regional"})


def model_path(model_id: str) -> str:
    """The model id as URL path segments: every character that could end or change the path
    (`?`, `#`, `%`, quotes, `<`, spaces) is percent-encoded; `/` stays a separator unless a
    segment is empty or a dot segment, which a browser would normalise away (then `/` is
    encoded too; the server decodes `%2F` back, so `{model_id:path}` still matches)."""
    segments = model_id.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return quote(model_id, safe="")
    return quote(model_id, safe="/")


def humanize_seconds(seconds: float) -> str:
    """1800 -> "30 minutes", 3600 -> "hour", 86400 -> "24 hours", 5 -> "5 seconds",
    90 -> "90 seconds"; days only from 2 days on."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        count = seconds / size
        if unit == "day" and count < 2:
            continue
        if count >= 1 and math.isclose(count, round(count), abs_tol=1e-9):
            count = int(round(count))
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def relative_time(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    if seconds < -5:
        return "in the future"  # clock skew between processes
    if seconds < 60:
        # Not "N s ago": a text that changes every second would defeat the embed's cache.
        return "under a minute ago"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            if unit == "day":
                return f"{count} day{'s' if count != 1 else ''} ago"
            return f"{count} {unit} ago"
    return "under a minute ago"  # unreachable


def relative_time_changes_at(moment: datetime | None, now: datetime) -> datetime | None:
    """When `relative_time(moment, now)` will next read differently (None: never, or not
    knowable: "never", "in the future")."""
    if moment is None:
        return None
    seconds = (now - moment).total_seconds()
    if seconds < -5:
        return None
    if seconds < 60:
        return moment + timedelta(seconds=60)
    for size in (86400, 3600, 60):
        if seconds >= size:
            return moment + timedelta(seconds=(seconds // size + 1) * size)
    return None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_text(moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ms(value: float | None) -> str:
    if value is None:
        return "no data yet"
    return f"{value:,.1f} ms" if value < 10 else f"{value:,.0f} ms"


def format_tps(value: float | None) -> str:
    if value is None:
        return "no data yet"
    return f"{value:,.1f} tok/s" if value < 10 else f"{value:,.0f} tok/s"


def format_ratio(value: float | None) -> str:
    if value is None:
        return "no data yet"
    percent = value * 100
    return "100 %" if percent >= 100 else f"{math.floor(percent * 10) / 10:.1f} %"


def endpoint_state(endpoint: Mapping[str, Any]) -> str:
    """The contract's `state` when the figures carry it; else active / inactive / no data."""
    state = endpoint.get("state")
    if isinstance(state, str) and state in STATE_LABELS:
        return state
    if endpoint.get("last_probe_at") is None:
        return "unknown"
    return "active" if endpoint.get("active") else "inactive"


def model_status(live: Mapping[str, Any]) -> str:
    """One word for the whole model, used by the filters:
    down = no endpoint active although some has probed; degraded = some but not all active, or
    an endpoint in a degraded/regional state; unknown = no probe yet; up otherwise."""
    endpoints = live.get("endpoints") or []
    if not any(e.get("last_probe_at") for e in endpoints):
        return "unknown"
    active, total = live.get("active_endpoints", 0), live.get("total_endpoints", 0)
    if active == 0:
        return "down"
    if active < total or any(e.get("state") in DEGRADED_STATES for e in endpoints):
        return "degraded"
    return "up"


@dataclass(frozen=True)
class Card:
    """One model as the catalog's "Live Performance" card."""

    id: str
    name: str
    path: str
    live: dict[str, Any]  # the /live body
    status: str
    interval_s: float | None  # the shortest probe interval of the model's endpoints
    search_text: str

    @property
    def updated_at(self) -> datetime | None:
        return parse_time(self.live.get("updated_at"))


class CardCache:
    """Cards keyed by model id, rebuilt when the figures object or the model config changes."""

    def __init__(self) -> None:
        self._cards: dict[str, tuple[object, object, float | None, Card]] = {}

    def card(self, model: Any, figures: Any, interval_s: float | None) -> Card:
        entry = self._cards.get(model.id)
        if entry is not None and entry[0] is figures and entry[1] is model and entry[2] == interval_s:
            return entry[3]
        live = ModelLiveOut.of(figures).model_dump(mode="json")
        card = Card(
            id=model.id,
            name=model.name,
            path=model_path(model.id),
            live=live,
            status=model_status(live),
            interval_s=interval_s,
            search_text=" ".join([model.id, model.name, *live["available_via"]]).casefold(),
        )
        self._cards[model.id] = (figures, model, interval_s, card)
        return card

    def forget_except(self, model_ids: Iterable[str]) -> None:
        keep = set(model_ids)
        for model_id in [m for m in self._cards if m not in keep]:
            del self._cards[model_id]


@dataclass(frozen=True)
class Listing:
    """One page of the /status listing."""

    cards: list[Card]
    query: str
    filter: str
    page: int
    pages: int
    matched: int
    total: int
    counts: dict[str, int]  # model status -> how many models, over the whole catalog


def listing(cards: list[Card], *, query: str, filter: str, page: int, page_size: int = PAGE_SIZE) -> Listing:
    """Search (case-insensitive substring of id, name or provider; every word must match),
    filter by model status, then one page. A page past the end shows the last page."""
    counts = {status: 0 for status in MODEL_STATUS_LABELS}
    for card in cards:
        counts[card.status] += 1
    words = query.casefold().split()
    matched = [
        c for c in cards
        if (filter == "all" or c.status == filter) and all(w in c.search_text for w in words)
    ]
    pages = max(1, math.ceil(len(matched) / page_size))
    page = min(max(page, 1), pages)
    start = (page - 1) * page_size
    return Listing(matched[start : start + page_size], query, filter, page, pages, len(matched), len(cards), counts)
