"""`GET /v1/models/{model_id}/badge.svg?metric=ttft|throughput|active|uptime`: a shields-style badge.

The badge shows the same figure as `/v1/models/{id}/live` (formatted as on the status page),
rendered once per figures version: the cache is keyed by the ETag of the model's /live body, so
a request for unchanged figures only picks prebuilt bytes (strong ETag,
`If-None-Match` -> 304, Cache-Control as the live route, gzip form compressed once).

Metrics: `ttft` = best_ttft_ms, `throughput` = best_throughput_tps, `active` = N/M active
endpoints, `uptime` = the best endpoint uptime in the window (as best_* take the best endpoint).
The colour follows the model's status (green all active, amber degraded, red down, grey no data)
and the text says the value, so colour is never the only signal; `<title>` and `aria-label`
carry "label: value" for screen readers. Text is escaped (a model has no say in it anyway:
labels are fixed and values are numbers).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from markupsafe import escape

from api.caching import live_entry
from api.deps import LiveDep, SettingsDep
from api.pages.rendering import Body, VersionedCache, build, respond
from api.pages.view import format_ms, format_ratio, format_tps, model_status
from api.routes.models import CACHED, NOT_FOUND, ModelIdPath, unknown_model
from api.schemas import ModelLiveOut

router = APIRouter(prefix="/v1/models", tags=["badges"])


class BadgeMetric(str, Enum):
    ttft = "ttft"
    throughput = "throughput"
    active = "active"
    uptime = "uptime"


LABELS = {"ttft": "TTFT", "throughput": "throughput", "active": "active", "uptime": "uptime"}
# Background colours: white text on each has a contrast of at least 4.5:1 (WCAG AA).
COLOURS = {"up": "#2e7d32", "degraded": "#8a5300", "down": "#c62828", "unknown": "#5f5f5f"}
LABEL_COLOUR = "#4a4a4a"
NARROW, WIDE = set("il.,:;|!'/ ()[]1jtfr"), set("mwMW%@")


def text_width(text: str) -> float:
    """Rough width in px of `text` at 11 px Verdana/DejaVu Sans (badges need no more)."""
    return sum(4.0 if ch in NARROW else 10.0 if ch in WIDE else 7.0 for ch in text)


def badge_value(live: dict, metric: str) -> str:
    if metric == "ttft":
        return format_ms(live["best_ttft_ms"]).replace("no data yet", "no data")
    if metric == "throughput":
        return format_tps(live["best_throughput_tps"]).replace("no data yet", "no data")
    if metric == "active":
        return f"{live['active_endpoints']}/{live['total_endpoints']}"
    uptimes = [e["uptime"] for e in live["endpoints"] if e.get("uptime") is not None]
    return format_ratio(max(uptimes)).replace(" %", "%") if uptimes else "no data"


def badge_svg(label: str, value: str, colour: str) -> bytes:
    left = round(text_width(label) + 12)
    right = round(text_width(value) + 12)
    width = left + right
    label_e, value_e = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_e}: {value_e}"><title>{label_e}: {value_e}</title>'
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        f'<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:g}" y="14">{label_e}</text>'
        f'<text class="value" x="{left + right / 2:g}" y="14">{value_e}</text></g></svg>'
    ).encode()


def render_badge(live: dict, metric: str, max_age_s: int) -> Body:
    value = badge_value(live, metric)
    colour = COLOURS[model_status(live)]
    return build(badge_svg(LABELS[metric], value, colour), content_type="image/svg+xml", max_age_s=max_age_s)


@router.get(
    "/{model_id:path}/badge.svg",
    responses={**NOT_FOUND, **CACHED, 200: {"content": {"image/svg+xml": {}}, "description": "The badge"}},
    response_class=Response,
    summary="A shields-style SVG badge of one live figure",
)
async def model_badge(
    request: Request,
    model_id: ModelIdPath,
    live: LiveDep,
    settings: SettingsDep,
    metric: Annotated[BadgeMetric, Query(description="Which figure the badge shows.")] = BadgeMetric.ttft,
) -> Response:
    body = badge_body(request.app.state, live, model_id, metric.value, settings.cache_max_age_s)
    if body is None:
        raise unknown_model(model_id)
    return respond(request, body)


def badge_body(state: Any, live: Any, model_id: str, metric: str, max_age_s: int) -> Body | None:
    """The model's badge for `metric`, rendered once per figures version (shared by the route
    and the fast path); None for an unknown model."""
    figures = live.model(model_id)
    if figures is None:
        return None
    cache: VersionedCache | None = getattr(state, "badges", None)
    if cache is None:
        cache = state.badges = VersionedCache()
    # Keyed by the ETag of the model's /live body (rendered once per figures object anyway):
    # figures recomputed to equal values (every model is, when an incident state changes) keep
    # their badges.
    return cache.get(
        (model_id, metric), live_entry(model_id, live, state.rendered).etag,
        lambda: render_badge(ModelLiveOut.of(figures).model_dump(mode="json"), metric, max_age_s),
    )


__all__ = ["router", "BadgeMetric", "badge_body", "badge_svg", "badge_value"]
