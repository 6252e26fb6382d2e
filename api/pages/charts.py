"""Server-side SVG charts for the model page: TTFT/throughput lines and the 90-day uptime bar.

Why SVG drawn on the server rather than a charting library: the page must work offline and with
JavaScript off, the CSP stays `script-src 'none'`, there is nothing to vendor or keep patched,
and a chart of a few hundred points is a few kilobytes of markup that the browser paints with
the rest of the HTML (no layout shift, no second request). The price is no hover tooltips
beyond SVG `<title>` (which browsers and screen readers show) and no zooming.

Gaps are gaps: two points are joined only when they are consecutive steps and both have a
value; a missing step (no probes, or no ok probe) breaks the line. Every drawn value is one
`<circle class="pt">`, so tests count points against the history API.
Colours come from CSS classes (`s0`..`s3`, themed for light and dark); each series also has
its own dash pattern and a text legend, so colour is never the only signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 800, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 24, 28
DASHES = ("", "6 3", "2 3", "8 3 2 3")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[datetime, float | None]]  # oldest first


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _axis_value(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def line_chart(series: Sequence[Series], *, start: datetime, end: datetime, step: timedelta,
               unit: str, title: str) -> Markup:
    """One chart; `start`..`end` is the x range, `step` the history step (gap detection)."""
    values = [v for s in series for _, v in s.points if v is not None]
    drawn = len(values)
    top = max(values) * 1.1 if values else 1.0
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    span = max((end - start).total_seconds(), 1.0)

    def x_of(t: datetime) -> float:
        return PAD_LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0)

    def y_of(v: float) -> float:
        return PAD_TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {drawn} points" data-points="{drawn}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" y1="{_fmt(y)}" x2="{WIDTH - PAD_RIGHT}" y2="{_fmt(y)}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">'
            f"{_axis_value(top * fraction) if values else ''}</text>"
        )
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        moment = start + (end - start) * fraction
        parts.append(
            f'<text class="axis" x="{_fmt(PAD_LEFT + plot_w * fraction)}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}">{moment.astimezone(timezone.utc).strftime("%b %d %H:%M")}</text>'
        )
    parts.append(
        f'<text class="axis" x="{PAD_LEFT - 6}" y="12" text-anchor="end">{escape(unit)}</text>'
    )
    join_within = step.total_seconds() * 1.5
    for index, one in enumerate(series):
        css = f"s{index % 4}"
        path: list[str] = []
        previous: tuple[datetime, float | None] | None = None
        circles: list[str] = []
        for t, v in one.points:
            if v is not None:
                x, y = _fmt(x_of(t)), _fmt(y_of(v))
                joined = (previous is not None and previous[1] is not None
                          and (t - previous[0]).total_seconds() <= join_within)
                path.append(f"{'L' if joined else 'M'}{x} {y}")
                circles.append(
                    f'<circle class="pt {css}" cx="{x}" cy="{y}" r="2.5">'
                    f"<title>{escape(one.label)} {t.strftime('%Y-%m-%d %H:%M')} UTC: {_fmt(v)} {escape(unit)}</title></circle>"
                )
            previous = (t, v)
        dash = DASHES[index % len(DASHES)]
        if path:
            parts.append(
                f'<path class="line {css}" d="{" ".join(path)}"'
                + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
            )
        parts.extend(circles)
    if not values:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[Series]) -> Markup:
    items = []
    for index, one in enumerate(series):
        dash = DASHES[index % len(DASHES)]
        items.append(
            f'<li><svg class="key" viewBox="0 0 24 8" aria-hidden="true"><line class="line s{index % 4}" '
            f'x1="0" y1="4" x2="24" y2="4"' + (f' stroke-dasharray="{dash}"' if dash else "")
            + f"/></svg> {escape(one.label)}"
            + ("" if any(v is not None for _, v in one.points) else " (no data)") + "</li>"
        )
    return Markup('<ul class="legend">' + "".join(items) + "</ul>")


@dataclass(frozen=True)
class Day:
    day: datetime
    uptime: float | None
    samples: int


def uptime_level(uptime: float | None) -> str:
    if uptime is None:
        return "none"
    if uptime >= 0.995:
        return "good"
    if uptime >= 0.95:
        return "warn"
    return "bad"


UPTIME_FLOOR = 0.9  # a day at or below 90 % is drawn at the minimum height


def uptime_bar(days: Sequence[Day], *, label: str) -> Markup:
    """One bar per day, oldest left. Height follows uptime (90 % to 100 %) and each bar names its
    day and value in a `<title>`; a day without data is an outlined stub."""
    cell, gap, height = 6, 2, 32
    width = len(days) * (cell + gap)
    parts = [
        f'<svg class="uptime" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" data-days="{len(days)}"><title>{escape(label)}</title>'
    ]
    for index, day in enumerate(days):
        level = uptime_level(day.uptime)
        x = index * (cell + gap)
        when = day.day.strftime("%Y-%m-%d")
        if day.uptime is None:
            h = 4
            text = f"{when}: no data"
        else:
            share = (day.uptime - UPTIME_FLOOR) / (1 - UPTIME_FLOOR)
            h = max(6, round(height * min(max(share, 0.0), 1.0)))
            text = f"{when}: {day.uptime * 100:.2f} % uptime ({day.samples} probes)"
        parts.append(
            f'<rect class="day {level}" x="{x}" y="{height - h}" width="{cell}" height="{h}" rx="1">'
            f"<title>{text}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
