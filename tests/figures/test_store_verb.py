"""`Store.window_figure_rows` on memory, SQLite and PostgreSQL: the window's bounds, scheduled
probes of one profile only, maintenance spans (with and without a location), one endpoint only."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.probes.base import Trigger
from monitor.stats import figures_of, inputs_from_rows
from tests.figures.test_windows import MODEL, NOW, result


async def test_window_figure_rows(store):
    base = result(0, "Alpha")  # ok, scheduled, 100 tokens
    probes = {
        "in": replace(base, started_at=NOW - timedelta(hours=1), location="us"),
        "edge": replace(base, started_at=NOW - timedelta(days=7), location="eu"),
        "too-old": replace(base, started_at=NOW - timedelta(days=7, seconds=1)),
        "future": replace(base, started_at=NOW + timedelta(seconds=1)),
        "confirm": replace(base, started_at=NOW - timedelta(hours=2), trigger=Trigger.CONFIRM),
        "profile": replace(base, started_at=NOW - timedelta(hours=3), input_tokens=1000),
        "maint-us": replace(base, started_at=NOW - timedelta(hours=4), location="us", cold_start=True, answer_ok=False),
        "maint-eu": replace(base, started_at=NOW - timedelta(hours=4, minutes=1), location="eu"),
    }
    await store.insert_results([(MODEL, "Alpha", r) for r in probes.values()])
    await store.insert_results([(MODEL, "Bravo", probes["in"]), ("other/model", "Alpha", probes["in"])])
    spans = [(NOW - timedelta(hours=5), NOW - timedelta(hours=3, minutes=30), "us")]
    rows = await store.window_figure_rows(
        MODEL, "Alpha", NOW - timedelta(days=7), NOW, input_tokens=100, maintenance=spans
    )
    by_ttft = sorted((tuple(row[:6]), bool(row[6])) for row in rows)
    expected = sorted(
        ((r.ok, None, r.ttft_s, r.tokens_per_second, r.cold_start, r.answer_ok), name == "maint-us")
        for name, r in probes.items() if name in ("in", "edge", "maint-us", "maint-eu")
    )
    assert by_ttft == expected
    # A span for every location covers both; none gives no maintenance at all.
    everywhere = await store.window_figure_rows(
        MODEL, "Alpha", NOW - timedelta(days=7), NOW, input_tokens=100, maintenance=[(*spans[0][:2], None)]
    )
    assert sum(bool(row[6]) for row in everywhere) == 2
    plain = await store.window_figure_rows(MODEL, "Alpha", NOW - timedelta(days=7), NOW, input_tokens=100)
    assert [bool(row[6]) for row in plain] == [False] * 4
    thousand = await store.window_figure_rows(MODEL, "Alpha", NOW - timedelta(days=7), NOW, input_tokens=1000)
    assert len(thousand) == 1
    figures = figures_of(inputs_from_rows(rows))
    assert (figures["samples"], figures["ok_samples"], figures["uptime"]) == (4, 4, 1.0)
    assert len(inputs_from_rows(rows).ttfts_s) == 3  # the cold start is out
    assert figures["answer_ok_ratio"] is not None


async def test_window_figure_rows_refuses_naive_times(store):
    with pytest.raises(ValueError):
        await store.window_figure_rows(MODEL, "Alpha", NOW.replace(tzinfo=None), NOW, input_tokens=100)
