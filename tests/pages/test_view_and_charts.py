"""Pure parts of the pages: URL paths of model ids, formatting, model status, SVG charts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pytest

from api.pages.charts import Day, Series, line_chart, uptime_bar
from api.pages.view import (
    format_ms, format_ratio, format_tps, humanize_seconds, model_path, model_status, relative_time,
    relative_time_changes_at,
)

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("model_id, path", [
    ("meta-llama/llama-3.2-1b-instruct", "meta-llama/llama-3.2-1b-instruct"),
    ('evil/<script>"x\'?#%', "evil/%3Cscript%3E%22x%27%3F%23%25"),
    ("a/../b", "a%2F..%2Fb"),  # a dot segment would be normalised away by the browser
    ("a//b", "a%2F%2Fb"),
    ("with space", "with%20space"),
])
def test_model_path_encodes_everything_but_plain_separators(model_id, path):
    assert model_path(model_id) == path
    assert unquote(path) == model_id


@pytest.mark.parametrize("seconds, text", [
    (1, "second"), (3, "3 seconds"), (60, "minute"), (90, "90 seconds"), (1800, "30 minutes"),
    (3600, "hour"), (5400, "90 minutes"), (86400, "24 hours"), (7 * 86400, "7 days"), (0.5, "0.5 seconds"),
])
def test_humanized_interval(seconds, text):
    assert humanize_seconds(seconds) == text


def test_formats():
    assert format_ms(243.6) == "244 ms" and format_ms(7.25) == "7.2 ms" and format_ms(None) == "no data yet"
    assert format_tps(57.4) == "57 tok/s" and format_tps(1234.0) == "1,234 tok/s"
    assert format_ratio(1.0) == "100 %" and format_ratio(0.99996) == "99.9 %"  # never rounded up to 100
    assert format_ratio(0.0) == "0.0 %" and format_ratio(None) == "no data yet"
    assert relative_time(T0 - timedelta(seconds=59), T0) == "under a minute ago"
    assert relative_time(T0 - timedelta(minutes=3, seconds=5), T0) == "3 min ago"
    assert relative_time(T0 - timedelta(days=2, hours=1), T0) == "2 days ago"
    assert relative_time(None, T0) == "never"


@pytest.mark.parametrize("age_s, changes_after_s", [
    (0, 60), (59, 1), (60, 60), (185, 55), (3599, 1), (3600, 3600), (7300, 3500), (86400, 86400),
    (2 * 86400 + 5, 86395),
])
def test_relative_time_reads_the_same_until_it_changes(age_s, changes_after_s):
    """The embed's cache keeps a body while its relative time reads the same: exactly until
    `relative_time_changes_at`, when the text changes."""
    moment = T0 - timedelta(seconds=age_s)
    changes = relative_time_changes_at(moment, T0)
    assert changes == T0 + timedelta(seconds=changes_after_s)
    text = relative_time(moment, T0)
    assert relative_time(moment, changes - timedelta(microseconds=1)) == text
    assert relative_time(moment, changes) != text
    assert relative_time_changes_at(None, T0) is None
    assert relative_time_changes_at(T0 + timedelta(minutes=1), T0) is None  # "in the future"


def endpoint(active: bool, *, probed: bool = True, state: str | None = None) -> dict:
    e = {"active": active, "last_probe_at": "2026-12-01T00:00:00Z" if probed else None}
    if state:
        e["state"] = state
    return e


@pytest.mark.parametrize("endpoints, status", [
    ([endpoint(False, probed=False)], "unknown"),
    ([endpoint(True), endpoint(True)], "up"),
    ([endpoint(True), endpoint(False)], "degraded"),
    ([endpoint(True, state="degraded")], "degraded"),
    ([endpoint(True, state="regional")], "degraded"),
    ([endpoint(False), endpoint(False)], "down"),
])
def test_model_status(endpoints, status):
    live = {"endpoints": endpoints, "active_endpoints": sum(e["active"] for e in endpoints),
            "total_endpoints": len(endpoints)}
    assert model_status(live) == status


def test_line_chart_joins_consecutive_steps_only_and_escapes_labels():
    step = timedelta(hours=1)
    points = [(T0 + step * i, v) for i, v in enumerate([1.0, 2.0, None, 3.0, 4.0, 5.0])]
    points.append((T0 + step * 9, 6.0))  # three steps missing: a gap although both have values
    svg = str(line_chart([Series("<b>P</b>", points)], start=T0, end=T0 + step * 10, step=step, unit="ms", title="t"))
    assert svg.count("<circle") == 6 and 'data-points="6"' in svg
    path = re.search(r'<path class="line s0" d="([^"]+)"', svg).group(1)
    assert [c[0] for c in path.split(" ") if c[0] in "ML"] == ["M", "L", "M", "L", "L", "M"]
    assert "<b>" not in svg and "&lt;b&gt;P&lt;/b&gt;" in svg


def test_empty_chart_says_so():
    svg = str(line_chart([Series("P", [(T0, None)])], start=T0, end=T0 + timedelta(days=1),
                         step=timedelta(hours=1), unit="ms", title="t"))
    assert "no data yet" in svg and "<circle" not in svg and "<path" not in svg


def test_uptime_bar_height_and_titles():
    days = [Day(T0, None, 0), Day(T0 + timedelta(days=1), 1.0, 48), Day(T0 + timedelta(days=2), 0.95, 48)]
    svg = str(uptime_bar(days, label="x"))
    heights = [int(h) for h in re.findall(r'height="(\d+)" rx', svg)]
    assert heights == [4, 32, 16]
    assert "2026-12-01: no data" in svg and "2026-12-02: 100.00 % uptime (48 probes)" in svg
    assert 'class="day none"' in svg and 'class="day good"' in svg and 'class="day warn"' in svg
