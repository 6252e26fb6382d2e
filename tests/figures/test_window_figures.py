"""`stats.window_figures` / `endpoint_live` on literal values: n, p5/p95, the intervals, and which
probes count (scheduled only, the workload profile, cold starts, maintenance), at n = 0, 1, 2
and beyond."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from monitor.stats import (
    WINDOW_FIELDS,
    EndpointLive,
    ProbeSample,
    best_figures,
    endpoint_live,
    published,
    uptime_counts,
    window_figures,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def ok(minutes_ago: float, ttft_s: float | None = 0.2, tps: float | None = 50.0, **extra) -> ProbeSample:
    return ProbeSample(at(minutes_ago), True, None, ttft_s, tps, **extra)


def failed(minutes_ago: float, kind: str = "timeout", **extra) -> ProbeSample:
    return ProbeSample(at(minutes_ago), False, kind, None, None, **extra)


def figures(samples, **kwargs):
    return window_figures(sorted(samples, key=lambda s: s.started_at), **kwargs)


def test_window_fields_are_endpoint_live_fields():
    names = set(EndpointLive.__dataclass_fields__)
    assert set(WINDOW_FIELDS) <= names
    assert set(window_figures([])) == set(WINDOW_FIELDS)


def test_n0_no_data_at_all():
    assert figures([]) == {
        "last_probe_at": None, "last_error_kind": None, "ttft_ms_p50": None, "throughput_tps_p50": None,
        "uptime": None, "samples": 0, "ok_samples": 0, "ttft_ms_p5": None, "ttft_ms_p95": None,
        "ttft_ms_p50_ci": None, "throughput_tps_p50_ci": None, "uptime_ci": None, "answer_ok_ratio": None,
    }


def test_n1_one_ok_probe_is_every_quantile_and_has_no_median_interval():
    got = figures([ok(5, 0.2, 50.0, answer_ok=True)])
    assert got == {
        "last_probe_at": at(5), "last_error_kind": None, "ttft_ms_p50": 200.0, "throughput_tps_p50": 50.0,
        "uptime": 1.0, "samples": 1, "ok_samples": 1, "ttft_ms_p5": 200.0, "ttft_ms_p95": 200.0,
        "ttft_ms_p50_ci": None, "throughput_tps_p50_ci": None,
        # Wilson at 1 of 1: [1 / (1 + z^2), 1]
        "uptime_ci": (0.20654931437723745, 1.0), "answer_ok_ratio": 1.0,
    }


def test_n1_one_failed_probe():
    got = figures([failed(5, "http_error")])
    assert got["samples"] == 1 and got["ok_samples"] == 0
    assert got["last_error_kind"] == "http_error"
    assert got["uptime"] == 0.0
    assert got["uptime_ci"] == (0.0, 0.7934506856227626)
    assert got["ttft_ms_p50"] is got["ttft_ms_p5"] is got["ttft_ms_p50_ci"] is None


def test_n2_interpolated_spread_and_no_median_interval():
    got = figures([ok(35, 0.1, 40.0, answer_ok=True), ok(5, 0.3, 60.0, answer_ok=False)])
    assert got["ttft_ms_p50"] == pytest.approx(200.0)
    assert got["ttft_ms_p5"] == pytest.approx(110.0)  # 0.1 + 0.05 * (0.3 - 0.1), type 7
    assert got["ttft_ms_p95"] == pytest.approx(290.0)
    assert got["throughput_tps_p50"] == 50.0
    assert got["ttft_ms_p50_ci"] is None and got["throughput_tps_p50_ci"] is None  # n <= 5
    assert got["uptime_ci"] == (0.34238022750665303, 1.0)  # 2 of 2: [2 / (2 + z^2), 1]
    assert got["answer_ok_ratio"] == 0.5
    assert (got["samples"], got["ok_samples"]) == (2, 2)


def test_n2_one_ok_one_failed():
    got = figures([ok(35, 0.1, 40.0), failed(5)])
    assert got["uptime"] == 0.5
    assert got["uptime_ci"] == (0.09453120573423074, 0.9054687942657693)
    assert (got["samples"], got["ok_samples"]) == (2, 1)


def test_n6_first_median_interval_is_min_to_max():
    ttfts = [0.6, 0.1, 0.5, 0.2, 0.4, 0.3]
    got = figures([ok(10 * i, t, 10.0 * (i + 1)) for i, t in enumerate(ttfts)])
    assert got["ttft_ms_p50_ci"] == (100.0, 600.0)  # ranks (1, 6): 96.9 %
    assert got["throughput_tps_p50_ci"] == (10.0, 60.0)
    assert got["ttft_ms_p50"] == pytest.approx(350.0)


def test_n10_median_interval_is_second_to_ninth():
    got = figures([ok(10 * i, (i + 1) / 10, float(i + 1)) for i in range(10)])
    assert got["ttft_ms_p50_ci"] == (200.0, 900.0)  # ranks (2, 9): 97.9 %
    assert got["throughput_tps_p50_ci"] == (2.0, 9.0)
    assert got["ttft_ms_p5"] == pytest.approx(145.0)  # 0.1 + 0.45 * 0.1
    assert got["ttft_ms_p95"] == pytest.approx(955.0)
    assert got["uptime_ci"] == (0.7224672001371107, 1.0)  # 10 / (10 + z^2)


def test_only_scheduled_probes_are_published_but_the_latest_probe_is_any():
    samples = [
        ok(60, 0.2, 50.0),
        failed(30, trigger="confirm"),
        failed(20, trigger="confirm"),
        ok(10, 9.9, 1.0, trigger="manual"),
    ]
    got = figures(samples)
    assert (got["samples"], got["ok_samples"]) == (1, 1)
    assert got["uptime"] == 1.0 and got["ttft_ms_p50"] == 200.0 and got["throughput_tps_p50"] == 50.0
    assert got["last_probe_at"] == at(10) and got["last_error_kind"] is None


def test_workload_profile_selects_the_probes():
    samples = [ok(40, 0.2, 50.0), ok(30, 1.5, 45.0, input_tokens=1000), failed(20, input_tokens=1000)]
    assert figures(samples, input_tokens=100)["ttft_ms_p50"] == 200.0
    thousand = figures(samples, input_tokens=1000)
    assert thousand["ttft_ms_p50"] == 1500.0 and thousand["uptime"] == 0.5
    assert (thousand["samples"], thousand["ok_samples"]) == (2, 1)
    assert figures(samples, input_tokens=10000)["samples"] == 0
    assert figures(samples)["samples"] == 3  # None: every profile


def test_cold_starts_leave_ttft_but_not_throughput_nor_uptime():
    samples = [ok(30, 0.2, 50.0), ok(20, 0.4, 70.0), ok(10, 12.0, 60.0, cold_start=True)]
    got = figures(samples)
    assert got["ttft_ms_p50"] == pytest.approx(300.0)  # 0.2 and 0.4 only
    assert got["ttft_ms_p95"] == pytest.approx(390.0)
    assert got["throughput_tps_p50"] == 60.0  # all three
    assert (got["samples"], got["ok_samples"], got["uptime"]) == (3, 3, 1.0)
    kept = figures(samples, keep_cold_starts=True)
    assert kept["ttft_ms_p50"] == pytest.approx(400.0)
    assert kept["ttft_ms_p95"] == pytest.approx(10840.0)  # h = 1.9: 0.4 + 0.9 * 11.6


def test_maintenance_leaves_uptime_only():
    samples = [ok(50, 0.2), failed(40), failed(30), ok(20, 0.4)]
    planned = {at(40), at(30), at(20)}
    got = figures(samples, in_maintenance=lambda s: s.started_at in planned)
    assert got["uptime"] == 1.0 and got["uptime_ci"] == (0.20654931437723745, 1.0)  # 1 of 1
    assert got["samples"] == 4 and got["ttft_ms_p50"] == pytest.approx(300.0)
    assert uptime_counts(samples, in_maintenance=lambda s: s.started_at in planned) == (1, 0)
    assert uptime_counts(samples) == (2, 2)


def test_rate_limited_counts_as_a_sample_only():
    got = figures([ok(30), failed(20, "rate_limited"), failed(10, "rate_limited")])
    assert (got["samples"], got["ok_samples"], got["uptime"]) == (3, 1, 1.0)
    assert got["last_error_kind"] == "rate_limited"


def test_published_keeps_order_and_filters():
    a, b, c = ok(3), ok(2, trigger="confirm"), ok(1, input_tokens=1000)
    assert published([a, b, c]) == [a, c]
    assert published([a, b, c], input_tokens=1000) == [c]


def test_endpoint_live_judges_activity_on_every_probe():
    # The only scheduled probe is a failure; a later ok confirmation makes the endpoint active,
    # but published uptime is the scheduled probe's.
    samples = [failed(40), ok(10, 0.3, trigger="confirm")]
    live = endpoint_live("P", samples, now=NOW, interval_s=1800, window_s=86400)
    assert live.active is True
    assert (live.uptime, live.samples, live.ok_samples) == (0.0, 1, 0)
    assert live.last_probe_at == at(10)


def test_best_figures_prefers_active_endpoints():
    base = EndpointLive("A", True, NOW, None, 300.0, 40.0, 1.0, 3)
    fast_inactive = replace(base, provider="B", active=False, ttft_ms_p50=100.0, throughput_tps_p50=90.0)
    assert best_figures([base, fast_inactive]) == (300.0, 40.0)
    assert best_figures([replace(base, active=False), fast_inactive]) == (100.0, 90.0)
    assert best_figures([]) == (None, None)
