"""The settings that `defaults` and each endpoint may set beyond interval/timeout/max_tokens:
liveness, confirmation, quorum, degradation, workload, price, checks; and the top-level
retention, maintenance windows and budget."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from monitor.catalog import CatalogError, parse_catalog

ENDPOINT = """
      - provider: P
        protocol: openai
        base_url: http://127.0.0.1:9/v1
        model: m
"""


def catalog(defaults: str = "", endpoint: str = "", top: str = ""):
    text = (f"defaults:\n{defaults}\n" if defaults else "") + "models:\n  - id: a/b\n    endpoints:" + ENDPOINT
    text += "".join(f"        {line}\n" for line in endpoint.splitlines() if line)
    return parse_catalog(text + top)


def problems(**parts: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        catalog(**parts)
    return caught.value.problems


def test_built_in_defaults():
    cat = catalog()
    e = cat.models[0].endpoints[0]
    assert (e.liveness_interval_s, e.confirm_interval_s, e.confirm_failures) == (60.0, 60.0, 2)
    assert (e.quorum, e.degraded_ttft_s, e.input_tokens, e.price, e.checks) == (None, 5.0, 100, None, ("answer",))
    assert (e.answer_ok_min, e.keep_cold_starts) == (0.8, False)
    assert (cat.defaults.retention.raw_s, cat.defaults.retention.hourly_s) == (90 * 86400, 400 * 86400)
    assert cat.maintenance == () and cat.budget_per_month is None


def test_defaults_then_endpoint_override():
    cat = catalog(
        defaults="  liveness: {interval: 30s}\n  confirm: {interval: 20s, failures: 3}\n  quorum: 2\n"
                 "  degraded_ttft: 2s\n  input_tokens: 1000\n  checks: [answer, tool_call]\n"
                 "  retention: {raw: 30d, hourly: 200d}\n",
        endpoint="price: {input_per_mtok: 0.027, output_per_mtok: 1}\nliveness: {enabled: false}\n"
                 "quorum: majority\ninput_tokens: 10000\nanswer_ok_min: 0.5\nkeep_cold_starts: true",
    )
    e = cat.models[0].endpoints[0]
    assert e.liveness_interval_s is None  # turned off for this endpoint
    assert (e.confirm_interval_s, e.confirm_failures, e.degraded_ttft_s) == (20.0, 3, 2.0)
    assert e.quorum is None and e.input_tokens == 10000 and e.checks == ("answer", "tool_call")
    assert (e.price.input_per_mtok, e.price.output_per_mtok) == (0.027, 1.0)
    assert (e.answer_ok_min, e.keep_cold_starts) == (0.5, True)
    assert (cat.defaults.retention.raw_s, cat.defaults.retention.hourly_s) == (30 * 86400, 200 * 86400)
    assert cat.defaults.quorum == 2


def test_raising_raw_retention_alone_keeps_hourly_at_least_as_long():
    cat = catalog(defaults="  retention: {raw: 500d}")
    assert cat.defaults.retention.hourly_s == 500 * 86400


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        ({"endpoint": "input_tokens: 500"}, "input_tokens: expected one of 100, 1000, 10000"),
        ({"endpoint": "checks: [answer, spelling]"}, "unknown check 'spelling'"),
        ({"endpoint": "checks: [answer, answer]"}, "lists a check twice"),
        ({"endpoint": "quorum: 0"}, "quorum: expected 'majority' or a whole number"),
        ({"endpoint": "quorum: most"}, "quorum: expected 'majority'"),
        ({"endpoint": "confirm: {failures: 11}"}, "confirm.failures"),
        ({"endpoint": "liveness: {interval: 2h}"}, "must be at most 1h"),
        ({"endpoint": "price: {input_per_mtok: -1, output_per_mtok: 1}"}, "price.input_per_mtok"),
        ({"endpoint": "price: {input_per_mtok: 1}"}, "price.output_per_mtok: required field missing"),
        ({"endpoint": "retention: {raw: 30d}"}, "unknown key"),
        ({"defaults": "  retention: {raw: 30d, hourly: 10d}"}, "at least as long as retention.raw"),
        ({"defaults": "  retention: {raw: 2h}"}, "must be at least 1d"),
        ({"defaults": "  liveness: {intervall: 1m}"}, "defaults.liveness.intervall: unknown key (expected one of interval, enabled)"),
        ({"top": "budget_per_month: 0\n"}, "budget_per_month"),
        ({"top": "maintenance:\n  - {start: 2026-12-24T06:00:00Z, end: 2026-12-24T00:00:00Z}\n"}, "maintenance[0].end: must be after start"),
        ({"top": "maintenance:\n  - {start: 2026-12-24T00:00:00, end: 2026-12-24T06:00:00Z}\n"}, "needs a time zone"),
        ({"top": "maintenance:\n  - {start: 2026-12-24T00:00:00Z, end: 2026-12-24T06:00:00Z, model: x/y}\n"}, "maintenance[0].model: unknown model 'x/y'"),
        ({"top": "maintenance:\n  - {start: 2026-12-24T00:00:00Z, end: 2026-12-24T06:00:00Z, provider: Q}\n"}, "maintenance[0].provider: unknown provider 'Q'"),
    ],
)
def test_bad_values_are_refused_naming_the_field(parts, fragment):
    found = problems(**parts)
    assert any(fragment in line for line in found), found


def test_maintenance_windows_cover_what_they_name():
    cat = catalog(top="maintenance:\n  - {start: 2026-12-24T00:00:00Z, end: '2026-12-24T06:00:00+00:00', provider: P, reason: upgrade}\n")
    inside = datetime(2026, 12, 24, 5, 59, tzinfo=timezone.utc)
    window = cat.in_maintenance("a/b", "P", inside)
    assert window is not None and window.reason == "upgrade"
    assert cat.in_maintenance("a/b", "P", datetime(2026, 12, 24, 6, 0, tzinfo=timezone.utc)) is None  # end excluded
    assert cat.in_maintenance("a/b", "Other", inside) is None


@pytest.mark.parametrize(("locations", "quorum", "needed"), [
    (0, None, 1), (1, None, 1), (2, None, 2), (3, None, 2), (4, None, 3), (5, None, 3), (3, 3, 3), (2, 3, 2),
])
def test_quorum_is_a_strict_majority_or_the_configured_number(locations, quorum, needed):
    e = catalog(endpoint=f"quorum: {quorum}" if quorum else "").models[0].endpoints[0]
    assert e.quorum_of(locations) == needed


def test_price_turns_tokens_into_dollars():
    e = catalog(endpoint="price: {input_per_mtok: 0.027, output_per_mtok: 0.201}").models[0].endpoints[0]
    assert e.price.cost_usd(1_000_000, 0) == pytest.approx(0.027)
    assert e.price.cost_usd(40, 64) == pytest.approx((40 * 0.027 + 64 * 0.201) / 1e6)
