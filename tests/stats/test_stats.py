"""Live figures: table-driven tests with hand-computed literal expectations.

Every case uses interval 30 min (so "2 intervals" = 60 min) and a 24 h window unless it says
otherwise. Ages are minutes before NOW.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from monitor.stats import (
    EndpointLive,
    ModelLive,
    ProbeSample,
    endpoint_live,
    active_until,
    in_window,
    is_active,
    median,
    model_live,
    uptime,
)

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)
INTERVAL_S = 1800.0
WINDOW_S = 86400.0


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def ok(minutes_ago: float, ttft_s: float | None = 0.25, tps: float | None = 50.0) -> ProbeSample:
    return ProbeSample(started_at=at(minutes_ago), ok=True, error_kind=None, ttft_s=ttft_s, tokens_per_second=tps)


def failed(minutes_ago: float, kind: str = "timeout") -> ProbeSample:
    return ProbeSample(started_at=at(minutes_ago), ok=False, error_kind=kind, ttft_s=None, tokens_per_second=None)


def limited(minutes_ago: float) -> ProbeSample:
    return failed(minutes_ago, "rate_limited")


# ------------------------------------------------------------------------------------- median


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([7.0], 7.0),
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([0.1, 0.4], 0.25),
        ([5, 5, 1, 9, 5], 5.0),
        ([-1.0, 1.0], 0.0),
        ([10.0, 20.0, 30.0, 1000.0], 25.0),
    ],
)
def test_median(values: list[float], expected: float | None) -> None:
    assert median(values) == expected


def test_median_accepts_a_generator() -> None:
    assert median(v for v in (9.0, 1.0, 5.0)) == 5.0


# ------------------------------------------------------------------------------------- uptime


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),
        ([limited(1), limited(2)], None),
        ([ok(1), ok(2), ok(3)], 1.0),
        ([failed(1), failed(2, "auth_error")], 0.0),
        ([ok(1), failed(2), ok(3), ok(4)], 0.75),
        ([ok(1), limited(2), limited(3), failed(4, "config_error")], 0.5),
        ([ok(1), ok(2), failed(3)], 2 / 3),
    ],
    ids=["none", "only-rate-limited", "all-ok", "all-failed", "3-of-4", "rate-limited-in-neither", "2-of-3"],
)
def test_uptime(samples: list[ProbeSample], expected: float | None) -> None:
    assert uptime(samples) == expected


# ------------------------------------------------------------------------------------- active


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], False),
        ([ok(5)], True),
        ([ok(60)], True),  # exactly 2 intervals old: still active (inclusive boundary)
        ([ok(60.01)], False),  # just past 2 intervals: stale
        ([ok(90)], False),
        ([failed(5)], False),
        ([failed(5), ok(10)], False),  # latest is a failure
        ([ok(5), failed(10)], True),  # recovered
        ([limited(5), ok(10)], True),  # rate_limited is skipped: the ok before it decides
        ([limited(5), limited(8), ok(10)], True),
        ([limited(5), failed(10), ok(20)], False),
        ([limited(5), ok(70)], False),  # the ok behind the rate limit is itself stale
        ([limited(5), limited(10)], False),  # nothing but rate limits
    ],
    ids=[
        "no-samples", "fresh-ok", "ok-exactly-2-intervals", "ok-just-past-2-intervals", "stale-ok",
        "failed", "latest-failed", "recovered", "latest-rate-limited-previous-ok", "two-rate-limits-then-ok",
        "latest-rate-limited-previous-failed", "rate-limited-then-stale-ok", "only-rate-limited",
    ],
)
def test_is_active(samples: list[ProbeSample], expected: bool) -> None:
    assert is_active(samples, now=NOW, interval_s=INTERVAL_S) is expected
    assert is_active(list(reversed(samples)), now=NOW, interval_s=INTERVAL_S) is expected  # order-free


def test_is_active_scales_with_the_interval() -> None:
    assert is_active([ok(3)], now=NOW, interval_s=60.0) is False  # 3 min > 2 x 1 min
    assert is_active([ok(2)], now=NOW, interval_s=60.0) is True


# ------------------------------------------------------------------------------------- window


def test_window_includes_both_ends_and_drops_the_future() -> None:
    edge = ok(24 * 60)  # exactly window_s old
    too_old = ProbeSample(NOW - timedelta(seconds=WINDOW_S + 1), True, None, 0.5, 10.0)
    current = ok(0)
    future = ProbeSample(NOW + timedelta(seconds=1), True, None, 0.5, 10.0)
    assert in_window([future, current, too_old, edge], now=NOW, window_s=WINDOW_S) == [edge, current]


# ------------------------------------------------------------------------------------- endpoint


ENDPOINT_CASES = {
    "no-samples": (
        [],
        EndpointLive("P", active=False, last_probe_at=None, last_error_kind=None,
                     ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=0),
    ),
    "all-rate-limited": (
        [limited(1), limited(31), limited(61)],
        EndpointLive("P", active=False, last_probe_at=at(1), last_error_kind="rate_limited",
                     ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=3),
    ),
    "latest-rate-limited-previous-ok": (
        [limited(10), ok(40, ttft_s=0.3, tps=40.0)],
        EndpointLive("P", active=True, last_probe_at=at(10), last_error_kind="rate_limited",
                     ttft_ms_p50=300.0, throughput_tps_p50=40.0, uptime=1.0, samples=2),
    ),
    "stale-ok": (
        [ok(61, ttft_s=0.2, tps=80.0)],
        EndpointLive("P", active=False, last_probe_at=at(61), last_error_kind=None,
                     ttft_ms_p50=200.0, throughput_tps_p50=80.0, uptime=1.0, samples=1),
    ),
    "odd-medians": (
        [ok(5, 0.3, 50.0), ok(35, 0.1, 70.0), ok(65, 0.2, 60.0)],
        EndpointLive("P", active=True, last_probe_at=at(5), last_error_kind=None,
                     ttft_ms_p50=200.0, throughput_tps_p50=60.0, uptime=1.0, samples=3),
    ),
    "even-medians": (
        [ok(5, 0.1, 40.0), ok(35, 0.2, 10.0), ok(65, 0.3, 30.0), ok(95, 0.5, 20.0)],
        EndpointLive("P", active=True, last_probe_at=at(5), last_error_kind=None,
                     ttft_ms_p50=250.0, throughput_tps_p50=25.0, uptime=1.0, samples=4),
    ),
    "failures-and-rate-limits-are-not-in-the-medians": (
        [failed(5, "http_error"), limited(20), ok(35, 0.4, 20.0), limited(50), ok(65, 0.2, 40.0),
         failed(95, "stream_error"), ok(125, 0.3, 30.0)],
        EndpointLive("P", active=False, last_probe_at=at(5), last_error_kind="http_error",
                     ttft_ms_p50=300.0, throughput_tps_p50=30.0, uptime=0.6, samples=7),
    ),
    "ok-without-throughput-only-leaves-the-throughput-median": (
        [ok(5, 0.1, None), ok(35, 0.3, 40.0)],
        EndpointLive("P", active=True, last_probe_at=at(5), last_error_kind=None,
                     ttft_ms_p50=200.0, throughput_tps_p50=40.0, uptime=1.0, samples=2),
    ),
    "config-error-every-probe": (
        [failed(1, "config_error"), failed(31, "config_error")],
        EndpointLive("P", active=False, last_probe_at=at(1), last_error_kind="config_error",
                     ttft_ms_p50=None, throughput_tps_p50=None, uptime=0.0, samples=2),
    ),
    "window-boundary": (
        # 24 h exactly is in; a day and a minute is out (its failure must not count anywhere).
        [ok(5, 0.2, 20.0), ok(24 * 60, 0.4, 60.0), failed(24 * 60 + 1, "timeout")],
        EndpointLive("P", active=True, last_probe_at=at(5), last_error_kind=None,
                     ttft_ms_p50=300.0, throughput_tps_p50=40.0, uptime=1.0, samples=2),
    ),
    "only-samples-outside-the-window": (
        [ok(24 * 60 + 1), failed(-1, "timeout")],  # one too old, one in the future
        EndpointLive("P", active=False, last_probe_at=None, last_error_kind=None,
                     ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=0),
    ),
}


@pytest.mark.parametrize(("samples", "expected"), ENDPOINT_CASES.values(), ids=ENDPOINT_CASES.keys())
def test_endpoint_live(samples: list[ProbeSample], expected: EndpointLive) -> None:
    got = endpoint_live("P", samples, now=NOW, interval_s=INTERVAL_S, window_s=WINDOW_S)
    assert_live_equal(got, expected)
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)  # the store and the in-memory window hand samples in any order
    assert_live_equal(endpoint_live("P", shuffled, now=NOW, interval_s=INTERVAL_S, window_s=WINDOW_S), expected)


def assert_live_equal(got: EndpointLive, expected: EndpointLive) -> None:
    """Exact on everything but the float medians (ms conversion), which get 1e-9 relative slack."""
    for name in ("ttft_ms_p50", "throughput_tps_p50", "uptime"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), (name, a, b)
        if a is not None:
            assert a == pytest.approx(b, rel=1e-9), (name, a, b)
    for name in ("provider", "active", "last_probe_at", "last_error_kind", "samples"):
        assert getattr(got, name) == getattr(expected, name), (name, getattr(got, name), getattr(expected, name))


def test_activity_does_not_depend_on_the_window() -> None:
    # Window 30 min, interval 30 min: the ok 40 min ago is outside the window (no sample, no
    # latest probe, no medians) but within 2 intervals, so the endpoint is still active.
    live = endpoint_live("P", [ok(40)], now=NOW, interval_s=INTERVAL_S, window_s=1800.0)
    assert (live.active, live.samples, live.last_probe_at, live.ttft_ms_p50) == (True, 0, None, None)
    assert endpoint_live("P", [ok(61)], now=NOW, interval_s=INTERVAL_S, window_s=1800.0).active is False


def test_active_until_is_judged_on_the_latest_probe_that_was_not_rate_limited() -> None:
    assert active_until([ok(10)], interval_s=INTERVAL_S) == NOW + timedelta(minutes=50)
    # A later rate-limited probe neither ends nor extends the activity of the ok before it.
    assert active_until([ok(10), limited(5)], interval_s=INTERVAL_S) == NOW + timedelta(minutes=50)
    assert active_until([ok(10), failed(5)], interval_s=INTERVAL_S) is None
    assert active_until([limited(5)], interval_s=INTERVAL_S) is None
    assert active_until([], interval_s=INTERVAL_S) is None


# ------------------------------------------------------------------------------------- model


def endpoint(provider: str, *, active: bool, ttft: float | None, tps: float | None,
             last: datetime | None = None) -> EndpointLive:
    return EndpointLive(provider, active=active, last_probe_at=last, last_error_kind=None if active else "timeout",
                        ttft_ms_p50=ttft, throughput_tps_p50=tps, uptime=None, samples=0 if last is None else 1)


def test_model_with_no_data_at_all() -> None:
    lives = [endpoint("A", active=False, ttft=None, tps=None), endpoint("B", active=False, ttft=None, tps=None)]
    assert model_live("m", ["A", "B"], lives, window_s=WINDOW_S) == ModelLive(
        model="m", best_ttft_ms=None, best_throughput_tps=None, active_endpoints=0, total_endpoints=2,
        available_via=("A", "B"), updated_at=None, window_s=WINDOW_S, endpoints=tuple(lives),
    )


MODEL_CASES = {
    # (endpoint lives, expected best_ttft_ms, best_throughput_tps, active_endpoints)
    "none-active-falls-back-to-all-with-data": (
        [endpoint("Cloudflare", active=False, ttft=244.0, tps=57.0, last=at(90))],
        244.0, 57.0, 0,
    ),
    "none-active-best-of-several": (
        [endpoint("A", active=False, ttft=300.0, tps=20.0, last=at(90)),
         endpoint("B", active=False, ttft=None, tps=None),
         endpoint("C", active=False, ttft=150.0, tps=10.0, last=at(95))],
        150.0, 20.0, 0,
    ),
    "one-active-worse-than-an-inactive-one-active-wins": (
        [endpoint("A", active=True, ttft=500.0, tps=20.0, last=at(5)),
         endpoint("B", active=False, ttft=200.0, tps=90.0, last=at(70))],
        500.0, 20.0, 1,
    ),
    "two-active-best-figures-may-come-from-different-endpoints": (
        [endpoint("A", active=True, ttft=300.0, tps=80.0, last=at(5)),
         endpoint("B", active=True, ttft=200.0, tps=40.0, last=at(6)),
         endpoint("C", active=False, ttft=100.0, tps=200.0, last=at(300))],
        200.0, 80.0, 2,
    ),
    "active-without-throughput-does-not-borrow-from-inactive": (
        [endpoint("A", active=True, ttft=400.0, tps=None, last=at(5)),
         endpoint("B", active=False, ttft=100.0, tps=90.0, last=at(300))],
        400.0, None, 1,
    ),
}


@pytest.mark.parametrize(("lives", "ttft", "tps", "active"), MODEL_CASES.values(), ids=MODEL_CASES.keys())
def test_model_best_of(lives: list[EndpointLive], ttft: float | None, tps: float | None, active: int) -> None:
    providers = [live.provider for live in lives]
    got = model_live("m", providers, lives, window_s=WINDOW_S)
    assert (got.best_ttft_ms, got.best_throughput_tps, got.active_endpoints) == (ttft, tps, active)
    assert got.total_endpoints == len(providers)
    assert got.available_via == tuple(providers)


def test_model_lists_every_configured_provider_in_config_order() -> None:
    lives = [
        endpoint("Groq", active=True, ttft=90.0, tps=300.0, last=at(3)),
        endpoint("Unconfigured", active=True, ttft=1.0, tps=9999.0, last=at(0)),  # not in config: ignored
        endpoint("Cloudflare", active=False, ttft=244.0, tps=57.0, last=at(45)),
    ]
    got = model_live("meta-llama/llama-3.2-1b-instruct", ["Cloudflare", "Together", "Groq"], lives, window_s=3600.0)
    assert got.available_via == ("Cloudflare", "Together", "Groq")
    assert [e.provider for e in got.endpoints] == ["Cloudflare", "Together", "Groq"]
    assert got.endpoints[1] == EndpointLive("Together", active=False, last_probe_at=None, last_error_kind=None,
                                            ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=0)
    assert (got.total_endpoints, got.active_endpoints) == (3, 1)
    assert (got.best_ttft_ms, got.best_throughput_tps) == (90.0, 300.0)
    assert got.updated_at == at(3)  # newest configured endpoint's probe
    assert got.window_s == 3600.0
    assert got.model == "meta-llama/llama-3.2-1b-instruct"


def test_end_to_end_from_samples_the_catalog_example() -> None:
    """The catalog's "244 ms, 57 tok/s, 0/1 active": data in the window, but the endpoint is stale."""
    samples = [ok(24 * 60 - 10, 0.244, 57.0), ok(120, 0.200, 50.0), ok(100, 0.300, 64.0)]
    live = endpoint_live("Cloudflare", samples, now=NOW, interval_s=INTERVAL_S, window_s=WINDOW_S)
    model = model_live("meta-llama/llama-3.2-1b-instruct", ["Cloudflare"], [live], window_s=WINDOW_S)
    assert model.best_ttft_ms == pytest.approx(244.0)
    assert model.best_throughput_tps == 57.0
    assert (model.active_endpoints, model.total_endpoints) == (0, 1)
    assert model.updated_at == at(100)
