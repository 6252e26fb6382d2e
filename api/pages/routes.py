"""HTML routes: `/status`, `/status/models/{id}`, `/embed/models/{id}` and the stylesheet.

Server-rendered with Jinja2 (autoescaping on: model ids, names and provider names are user data
and are escaped in text and attributes; in links the id is percent-encoded by `view.model_path`).
No JavaScript at all: search, filters and paging are a GET form and links, so everything works
with scripts off, and the CSP forbids scripts. Figures come from the same in-memory live state
as `/v1/models/{id}/live` (`view.CardCache`); history and incidents from `api.pages.sources`.

Headers: the API's security headers (api/middleware.py) plus a page CSP; the embed's
`frame-ancestors` lists the configured CORS origins ('none' when there are none) and it sends no
X-Frame-Options. Every page has a strong ETag (304 on If-None-Match) and the API's
Cache-Control; the stylesheet is addressed by its hash and cached as immutable.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Query, Request, Response, status
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from api.caching import live_entry
from api.deps import LiveDep, StoreDep, WindowsDep
from api.pages import sources
from api.pages.charts import Series, legend, line_chart, uptime_bar
from api.pages.rendering import Body, VersionedCache, build, respond
from api.pages.view import (
    MAX_QUERY_CHARS,
    MODEL_STATUS_LABELS,
    PAGE_SIZE,
    STATE_LABELS,
    Card,
    CardCache,
    endpoint_state,
    format_ms,
    format_ratio,
    format_tps,
    humanize_seconds,
    listing,
    parse_time,
    relative_time,
    utc_text,
)
from monitor.settings import Settings

HERE = Path(__file__).parent
CSS_NAME = "pages.css"
ICON_NAME = "favicon.svg"
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
INCIDENT_DAYS = 30
LISTING_REUSE_S = 10
LISTING_CACHE_ENTRIES = 256
INCIDENT_LABELS = {"open": ("Open", "\u2716"), "resolved": ("Resolved", "\u2714")}
MAINTENANCE_LABELS = {"now": ("In progress", "\u2699"), "planned": ("Scheduled", "\u25f7")}

router = APIRouter(include_in_schema=False)

Theme = Annotated[Literal["light", "dark"] | None, Query(description="Force a theme; default follows the browser.")]
ModelId = Annotated[str, PathParam(description="Model id; may contain '/'.")]


def embed_csp(settings: Settings) -> str:
    """frame-ancestors from the CORS origins: the catalog site that may fetch the figures may
    also frame the card. Origins are validated by Settings; anything that could break out of
    the directive (`;`, `,`, quotes, spaces) is dropped rather than sent."""
    origins = [o for o in settings.cors_origins if o and not any(ch in o for ch in " ;,'\"\t\r\n")]
    ancestors = " ".join(origins) if origins else "'none'"
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors {ancestors}"
    )


class Pages:
    """The Jinja environment, the stylesheet and the card cache: built once per application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        css = (HERE / "static" / CSS_NAME).read_bytes()
        self.css_url = f"/status/static/{CSS_NAME}?v={hashlib.sha256(css).hexdigest()[:12]}"
        self.css = build(
            css, content_type="text/css; charset=utf-8", max_age_s=settings.cache_max_age_s,
            cache_control="public, max-age=31536000, immutable",
        )
        icon = (HERE / "static" / ICON_NAME).read_bytes()
        self.icon_url = f"/status/static/{ICON_NAME}?v={hashlib.sha256(icon).hexdigest()[:12]}"
        self.icon = build(
            icon, content_type="image/svg+xml", max_age_s=settings.cache_max_age_s,
            cache_control="public, max-age=31536000, immutable",
        )
        self.cards = CardCache()
        self.embeds = VersionedCache()
        self.embed_html = VersionedCache()
        self.listings: dict[tuple[Any, ...], tuple[tuple[object, ...], int, Body]] = {}
        self.env.globals.update(
            format_ms=format_ms, format_tps=format_tps, format_ratio=format_ratio, humanize=humanize_seconds,
            relative=relative_time, utc_text=utc_text, model_labels=MODEL_STATUS_LABELS,
            state_labels=STATE_LABELS, css_url=self.css_url, icon_url=self.icon_url, page_size=PAGE_SIZE, max_query=MAX_QUERY_CHARS,
            incident_labels=INCIDENT_LABELS, maintenance_labels=MAINTENANCE_LABELS,
            incident_days=INCIDENT_DAYS, window_text=humanize_seconds(settings.window_s),
        )
        self.embed_csp = embed_csp(settings)

    def interval_of(self, model: Any) -> float | None:
        endpoints = getattr(model, "endpoints", None)
        if not endpoints:
            return None
        override = self.settings.interval_override_s
        return min(override or e.interval_s for e in endpoints)

    def all_cards(self, live: Any) -> list[Card]:
        pairs = live.models()
        cards = [self.cards.card(model, figures, self.interval_of(model)) for model, figures in pairs]
        if len(self.cards._cards) > len(cards):
            self.cards.forget_except(c.id for c in cards)
        return cards

    def card_of(self, live: Any, model_id: str) -> tuple[Card, Any] | None:
        figures = live.model(model_id)
        if figures is None:
            return None
        model = find_model(live, model_id)
        if model is None:
            return None
        return self.cards.card(model, figures, self.interval_of(model)), model

    def render(self, template: str, *, csp: str, now: datetime | None = None, **context: Any) -> Body:
        html = self.env.get_template(template).render(now=now or datetime.now(timezone.utc), **context).encode()
        return build(
            html, content_type="text/html; charset=utf-8", max_age_s=self.settings.cache_max_age_s,
            headers={"content-security-policy": csp},
        )

    def page(self, request: Request, template: str, *, csp: str, **context: Any) -> Response:
        return respond(request, self.render(template, csp=csp, **context))

    def embed_body(self, live: Any, rendered: Any, model_id: str, theme: str | None) -> Body | None:
        """The embed of a model (so the route and the fast path answer from bytes); None for an
        unknown model. The HTML is rendered once per figures version with a placeholder for the
        relative time, and the finished body (hash, gzip) made once per shown relative time, so
        a catalog of thousands of models is not re-rendered every minute."""
        found = self.card_of(live, model_id)
        if found is None:
            return None
        card = found[0]
        # The figures' version is the ETag of their /live body: figures recomputed to equal
        # values keep their embed. Name and interval come from the catalog (a reload).
        version = live_entry(model_id, live, rendered).etag
        config = f"{card.name}\n{card.interval_s}"
        template = self.embed_html.get(
            (model_id, theme), version,
            lambda: self.render("embed.html", csp=self.embed_csp, c=card, theme=theme, relative=_placeholder),
            text=config,
        )
        shown = relative_time(card.updated_at, datetime.now(timezone.utc))
        return self.embeds.get(
            (model_id, theme), version,
            lambda: build(
                template.body.replace(RELATIVE_PLACEHOLDER, str(escape(shown)).encode()),
                content_type="text/html; charset=utf-8", max_age_s=self.settings.cache_max_age_s,
                headers={"content-security-policy": self.embed_csp},
            ),
            text=f"{shown}\n{config}",
        )


RELATIVE_PLACEHOLDER = b"\x00relative-time\x00"


def _placeholder(moment: Any, now: Any) -> Markup:
    return Markup(RELATIVE_PLACEHOLDER.decode())


def find_model(live: Any, model_id: str) -> Any | None:
    catalog = getattr(live, "catalog", None)
    if catalog is not None:
        return catalog.find(model_id)
    return next((m for m, _ in live.models() if m.id == model_id), None)  # a LiveView without a catalog


async def get_pages(request: Request) -> Pages:
    return pages_of(request.app.state)


def pages_of(state: Any) -> Pages:
    """The application's Pages, built on first use (shared by the routes and the fast path)."""
    pages = getattr(state, "pages", None)
    if pages is None:
        pages = state.pages = Pages(state.settings)
    return pages


PagesDep = Annotated[Pages, Depends(get_pages)]


@router.get("/status/static/pages.css")
async def stylesheet(request: Request, pages: PagesDep) -> Response:
    return respond(request, pages.css)


@router.get("/status/static/favicon.svg")
async def favicon(request: Request, pages: PagesDep) -> Response:
    return respond(request, pages.icon)


@router.get("/status", response_class=Response)
async def status_page(
    request: Request,
    pages: PagesDep,
    live: LiveDep,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="Words that id, name or a provider must contain.")] = "",
    filter: Annotated[Literal["all", "down", "degraded"], Query(description="Only models in this status.")] = "all",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    theme: Theme = None,
) -> Response:
    pairs = live.models()
    versions = tuple(figures for _, figures in pairs)
    key = (q.strip(), filter, page, theme)
    # Relative times are shown to the minute: a rendering is reused for at most 10 s, and only
    # while every model's figures are the same objects (none changed).
    moment = int(time.time() // LISTING_REUSE_S)
    cached = pages.listings.get(key)
    if cached is not None and cached[1] == moment and len(cached[0]) == len(versions) and all(
        a is b for a, b in zip(cached[0], versions)
    ):
        return respond(request, cached[2])
    result = listing(pages.all_cards(live), query=key[0], filter=filter, page=page)

    def page_url(number: int) -> str:
        params = {k: v for k, v in (("q", result.query), ("filter", result.filter if result.filter != "all" else ""),
                                    ("page", str(number)), ("theme", theme or "")) if v}
        return "/status?" + urlencode(params)

    body = pages.render("status.html", csp=PAGE_CSP, listing=result, page_url=page_url, theme=theme)
    if len(pages.listings) >= LISTING_CACHE_ENTRIES and key not in pages.listings:
        pages.listings.pop(next(iter(pages.listings)))  # queries are the client's: bounded
    pages.listings[key] = (versions, moment, body)
    return respond(request, body)


@router.get("/embed/models/{model_id:path}", response_class=Response)
async def embed_page(request: Request, model_id: ModelId, pages: PagesDep, live: LiveDep, theme: Theme = None) -> Response:
    body = pages.embed_body(live, request.app.state.rendered, model_id, theme)
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model: {model_id}")
    return respond(request, body)


@router.get("/status/models/{model_id:path}", response_class=Response)
async def model_page(
    request: Request, model_id: ModelId, pages: PagesDep, live: LiveDep, windows: WindowsDep, store: StoreDep,
    theme: Theme = None,
) -> Response:
    found = pages.card_of(live, model_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model: {model_id}")
    card, model = found
    now = datetime.now(timezone.utc)
    providers = list(card.live["available_via"])
    # Uptime over 7 and 30 days: the figures of /live?window=7d|30d.
    uptimes: dict[int, dict[str, float | None]] = {}
    for days in (7, 30):
        figures = await windows.model(model_id, days * 86400.0)
        uptimes[days] = {e.provider: e.uptime for e in figures.endpoints} if figures is not None else {}
    history = await sources.model_history(store, model_id, providers, now=now)
    incidents = await sources.model_incidents(store, model_id, since=now - timedelta(days=INCIDENT_DAYS), now=now)
    catalog = getattr(live, "catalog", None)
    windows_now = sources.maintenance_windows(catalog, model_id, now=now) if catalog is not None else []
    rows = [endpoint_row(e, uptimes) for e in card.live["endpoints"]]
    return pages.page(
        request, "model.html", csp=PAGE_CSP, c=card, endpoints=rows, theme=theme,
        history=charts_of(history, providers, now), incidents=incidents, maintenance=windows_now,
    )


def _interval_text(ci: Any, fmt: Any) -> str | None:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        return f"95 %: {fmt(ci[0])} – {fmt(ci[1])}"
    return None


def endpoint_row(endpoint: dict[str, Any], uptimes: dict[int, dict[str, float | None]]) -> dict[str, Any]:
    """One row of the endpoint table from the live body's endpoint (plus the 7 and 30 day uptimes)."""
    row = dict(endpoint)
    row["state"] = endpoint_state(endpoint)
    row["last_probe_at_iso"] = endpoint.get("last_probe_at")
    row["last_probe_at"] = parse_time(endpoint.get("last_probe_at"))
    row["ttft_ci"] = _interval_text(endpoint.get("ttft_ms_p50_ci"), format_ms)
    row["tps_ci"] = _interval_text(endpoint.get("throughput_tps_p50_ci"), format_tps)
    row["uptime_ci"] = _interval_text(endpoint.get("uptime_ci"), format_ratio)
    row["state_reason"] = endpoint.get("state_reason")
    locations = endpoint.get("locations") or []
    row["locations"] = [{"location": loc.get("location", "?"), "state": endpoint_state(loc)} for loc in locations
                        if isinstance(loc, dict)]
    for days in (7, 30):
        row[f"uptime_{days}d"] = uptimes.get(days, {}).get(endpoint["provider"])
    return row


@dataclass(frozen=True)
class Chart:
    metric: str
    range: str
    step: str
    start: str  # the `from` and `to` of the /history query that gives the same points
    end: str
    title: str
    svg: Any
    legend: Any


def charts_of(history: sources.History, providers: list[str], now: datetime) -> dict[str, Any]:
    charts = []
    for range_name, days, step in (("7d", 7, timedelta(hours=1)), ("30d", 30, timedelta(days=1))):
        start = history.starts[range_name]
        step_name = "1h" if step < timedelta(days=1) else "1d"
        for metric, field, unit, label in (
            ("ttft", "ttft_ms_p50", "ms", "Time to first token (median)"),
            ("throughput", "throughput_tps_p50", "tok/s", "Throughput (median)"),
        ):
            series = [
                Series(p, [(r.t, r.values.get(field)) for r in history.rows(p, range_name)]) for p in providers
            ]
            title = f"{label}, last {days} days, per {'hour' if step < timedelta(days=1) else 'day'}"
            charts.append(Chart(metric, range_name, step_name, history.start(range_name), now.isoformat(), title,
                                line_chart(series, start=start, end=now, step=step, unit=unit, title=title),
                                legend(series)))
    bars = []
    for provider in providers:
        days = history.days(provider, now=now)
        known = [d for d in days if d.uptime is not None]
        summary = (f"{format_ratio(history.uptime(provider, 90))} over 90 days, "
                   f"{sum(1 for d in known if d.uptime < 0.995)} of {len(known)} days with data below 99.5 %"
                   if known else "no data yet")
        bars.append({"provider": provider, "summary": summary,
                     "svg": uptime_bar(days, label=f"{provider}: daily uptime, last 90 days; {summary}")})
    return {"charts": charts, "bars": bars}
