"""Endpoint state as a table: per-location failing, quorum, regional/down, degraded, misconfigured,
unknown, impaired locations, activity by quorum, and the incident decisions."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from monitor.endpoint_state import (
    NOTHING,
    OPEN,
    RESOLVE,
    UPDATE,
    Incident,
    StateRules,
    by_location,
    endpoint_state,
    impaired_locations,
    incident_action,
    is_failing,
    latest_failed,
    location_view,
    state_valid_until,
)
from monitor.stats import is_active
from tests.outage.incidents_support import T0, sample

RULES = StateRules(interval_s=600.0)  # 10-minute probes; minutes below
NOW = T0 + timedelta(minutes=30)


def state_of(*samples, rules: StateRules = RULES, impaired: frozenset[str] = frozenset(), now=NOW):
    return endpoint_state(list(samples), now=now, window_s=86400.0, rules=rules, impaired=impaired)


def fails(loc: str, *minutes: float, kind: str = "connect_error"):
    return [sample(m, False, kind=kind, location=loc) for m in minutes]


def oks(loc: str, *minutes: float, ttft: float = 0.2):
    return [sample(m, True, location=loc, ttft=ttft) for m in minutes]


@pytest.mark.parametrize("probes, failing", [
    ([], False),
    (fails("a", 29), False),                                     # one failure: not yet confirmed
    (fails("a", 28, 29), True),                                  # two in a row
    (fails("a", 27, 28) + oks("a", 29), False),                  # a success after them
    (oks("a", 26) + fails("a", 27) + fails("a", 28, kind="rate_limited") + fails("a", 29), True),  # skipped
    (fails("a", 27) + fails("a", 28, 29, kind="config_error"), False),  # config_error does not count
    (fails("a", 27, 28, 29, kind="timeout"), True),
])
def test_failing_needs_confirm_failures_provider_failures_in_a_row(probes, failing) -> None:
    assert is_failing(probes, 2) is failing


@pytest.mark.parametrize("probes, state, active, reason", [
    ([], "unknown", False, None),
    (oks("local", 29), "up", True, None),
    (oks("local", 1), "unknown", False, "no probe within 2 intervals"),
    (oks("local", 20) + fails("local", 29), "up", False, None),        # unconfirmed: inactive, not down
    (oks("local", 20) + fails("local", 28, 29), "down", False, "failing from 1 of 1 locations (local)"),
    (fails("local", 28, 29, kind="rate_limited"), "unknown", False, "only rate-limited probes"),
    (fails("local", 29, kind="config_error"), "misconfigured", False, "config_error: an API key or URL variable is unset"),
    # two locations, one failing: regional, still active (strict majority of 2 is 2)
    (oks("a", 29) + fails("b", 28, 29), "regional", True, "failing from 1 of 2 locations (b)"),
    (fails("a", 28, 29) + fails("b", 28, 29), "down", False, "failing from 2 of 2 locations (a, b)"),
    # three locations: 2 of 3 is the quorum
    (oks("a", 29) + oks("b", 29) + fails("c", 28, 29), "regional", True, "failing from 1 of 3 locations (c)"),
    (oks("a", 29) + fails("b", 28, 29) + fails("c", 28, 29), "down", False, "failing from 2 of 3 locations (b, c)"),
    # a location that stopped probing 2 intervals ago no longer votes
    (fails("a", 1, 2) + oks("b", 29), "up", True, None),
    # slow: the window's TTFT median above degraded_ttft
    (oks("local", 10, 20, 29, ttft=6.2), "degraded", True, "TTFT median 6.2 s above 5 s"),
])
def test_state_table(probes, state, active, reason) -> None:
    got = state_of(*probes)
    assert (got.state, got.active, got.state_reason) == (state, active, reason)


def test_one_location_active_is_exactly_todays_rule() -> None:
    for probes in ([], oks("local", 29), fails("local", 29), oks("local", 5), oks("local", 29) + fails("local", 29.5)):
        assert state_of(*probes).active == is_active(probes, now=NOW, interval_s=RULES.interval_s)


def test_answer_check_failing_is_degraded_with_counts() -> None:
    probes = [sample(m, True, answer_ok=m < 3) for m in range(10)]
    got = state_of(*probes, now=T0 + timedelta(minutes=10))
    assert (got.state, got.state_reason) == ("degraded", "answer check failing: 3 of 10 ok")
    probes = [sample(m, True, answer_ok=m != 0) for m in range(10)]
    assert state_of(*probes, now=T0 + timedelta(minutes=10)).state == "up"  # 9 of 10 >= 0.8


def test_explicit_quorum_one_makes_any_failing_location_down() -> None:
    rules = StateRules(interval_s=600.0, quorum_of=lambda n: min(1, n))
    assert state_of(*oks("a", 29), *fails("b", 28, 29), rules=rules).state == "down"


def test_confirm_probes_count_for_failing_but_not_for_the_published_medians() -> None:
    probes = oks("a", 10) + [sample(28, False, location="a"), sample(29, False, location="a", trigger="confirm")]
    assert state_of(*probes).state == "down"
    view = location_view("a", [sample(10, True, location="a", ttft=0.1), sample(20, True, location="a", trigger="confirm", ttft=9.0)],
                         now=NOW, window_s=86400.0, rules=RULES)
    assert (view.ttft_ms_p50, view.samples, view.active) == (100.0, 1, True)


def test_down_records_its_start_and_error_kinds() -> None:
    got = state_of(*oks("a", 10), *fails("a", 27, kind="timeout"), *fails("a", 28, 29),
                   *fails("b", 29, kind="timeout"), *fails("b", 29.5, kind="http_error"))
    assert got.state == "down" and got.started_at == T0 + timedelta(minutes=27)
    assert dict(got.error_kinds) == {"timeout": 2, "connect_error": 2, "http_error": 1}


def test_impaired_location_does_not_vote_but_shows_regional() -> None:
    assert state_of(*oks("a", 29), *fails("b", 28, 29), impaired=frozenset({"b"})).state == "regional"
    only = state_of(*fails("b", 28, 29), impaired=frozenset({"b"}))
    assert (only.state, only.active) == ("unknown", False)
    # with b left out, a alone decides: a failing too is down
    assert state_of(*fails("a", 28, 29), *fails("b", 28, 29), impaired=frozenset({"b"})).state == "down"


def test_impaired_locations_need_every_endpoint_of_two_providers_failing() -> None:
    assert impaired_locations({("m", "P1"): {"a": False, "b": True}, ("m", "P2"): {"a": False, "b": True}}) == {"b"}
    assert impaired_locations({("m", "P1"): {"b": True}, ("m", "P2"): {"b": False}}) == set()
    assert impaired_locations({("m", "P1"): {"b": True}}) == set()  # one endpoint: could be the provider
    assert impaired_locations({("m1", "P1"): {"b": True}, ("m2", "P1"): {"b": True}}) == set()  # one provider


def test_recovery_needs_quorum_and_dates_from_the_first_success() -> None:
    probes = fails("a", 20, 21) + fails("b", 20, 21) + oks("b", 25, 29)
    got = state_of(*probes)
    assert (got.state, got.recovered) == ("regional", False)  # 1 of 2 back: the incident stays open
    got = state_of(*probes, *oks("a", 27, 29.5))
    assert got.recovered and got.recovered_at == T0 + timedelta(minutes=27)


def _incident(open_: bool = True) -> Incident:
    return Incident(1, "m", "p", T0, T0, None if open_ else T0, {}, ("a",))


def test_incident_actions() -> None:
    down = state_of(*fails("a", 28, 29))
    up = state_of(*oks("a", 29))
    assert incident_action(down, None, in_maintenance=False) == OPEN
    assert incident_action(down, None, in_maintenance=True) == NOTHING  # maintenance opens none
    assert incident_action(down, _incident(), in_maintenance=False) == UPDATE
    assert incident_action(up, _incident(), in_maintenance=False) == RESOLVE
    assert incident_action(up, None, in_maintenance=False) == NOTHING
    regional = state_of(*oks("a", 29), *fails("b", 28, 29))
    assert incident_action(regional, None, in_maintenance=False) == NOTHING


def test_latest_failed_skips_rate_limits_and_config_errors() -> None:
    from monitor.endpoint_state import latest_failed

    assert latest_failed(fails("a", 29))
    assert not latest_failed(oks("a", 28) + fails("a", 29, kind="rate_limited"))
    assert latest_failed(fails("a", 28) + fails("a", 29, kind="config_error"))
    assert not latest_failed([])


# ------------------------------------------------------------------ how long a state holds


def _verdicts(samples, now, rules):
    """What impairment reads per location: latest_failed over the recent probes."""
    recent_since = now - timedelta(seconds=2 * rules.interval_s)
    recent = [s for s in samples if recent_since <= s.started_at <= now]
    return {loc: latest_failed(group) for loc, group in by_location(recent).items()}


def test_state_valid_until_is_the_first_change_of_a_single_probe() -> None:
    rules = StateRules(interval_s=600.0)
    probes = oks("local", 29)
    # Probed at minute 29: active until minute 49 (2 intervals), in the 24 h window longer.
    until = state_valid_until(probes, now=NOW, window_s=86400.0, rules=rules)
    assert until == T0 + timedelta(minutes=49)
    assert state_of(*probes, now=until).active
    assert not state_of(*probes, now=until + timedelta(microseconds=1)).active
    assert state_valid_until([], now=NOW, window_s=86400.0, rules=rules) is None
    future = oks("local", 45)  # stamped after now (another process's clock): visible at minute 45
    assert state_valid_until(probes + future, now=NOW, window_s=86400.0, rules=rules) == (
        T0 + timedelta(minutes=45) - timedelta(microseconds=1))


def test_nothing_changes_before_state_valid_until() -> None:
    """Random probes of three locations: at any moment up to the bound the state and the
    impairment verdicts equal those at `now`; and the bound is tight (right after it, nearly
    always something has changed), so sweeps do not re-evaluate for nothing."""
    rng = random.Random(7)
    bounded = tight = 0
    rules = StateRules(interval_s=600.0, degraded_ttft_s=0.5)
    window_s = 3 * 3600.0
    for case in range(300):
        probes = []
        for _ in range(rng.randint(0, 12)):
            minute = rng.uniform(-200, 40)
            kind = rng.choice(["connect_error", "timeout", "rate_limited", "config_error"])
            location = rng.choice(["eu", "us", "ap"])
            probes.append(sample(minute, False, kind=kind, location=location) if rng.random() < 0.4
                          else sample(minute, True, location=location, ttft=rng.choice([0.2, 0.9])))
        until = state_valid_until(probes, now=NOW, window_s=window_s, rules=rules)
        horizon = until if until is not None else NOW + timedelta(days=2)
        before = endpoint_state(probes, now=NOW, window_s=window_s, rules=rules)
        for moment in (horizon, NOW + (horizon - NOW) * rng.random()):
            assert endpoint_state(probes, now=moment, window_s=window_s, rules=rules) == before, case
            assert _verdicts(probes, moment, rules) == _verdicts(probes, NOW, rules), case
        if until is not None:
            bounded += 1
            after = until + timedelta(microseconds=1)
            tight += (endpoint_state(probes, now=after, window_s=window_s, rules=rules) != before
                      or _verdicts(probes, after, rules) != _verdicts(probes, NOW, rules))
    assert bounded > 250 and tight >= 0.9 * bounded
