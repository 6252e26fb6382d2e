"""The alerting rules' conventions: labels, annotations, runbook anchors, severities, and that the
promtool unit tests give every alert the three checks (fires, ignores a blip, resolves)."""

from __future__ import annotations

import re

import pytest

from tests.observability.support import (
    PROMTOOL_TESTS,
    RUNBOOKS,
    iter_alert_rules,
    iter_rules,
    load_yaml,
)

RUNBOOK_PREFIX = "https://github.com/llm-endpoint-monitor/llm-endpoint-monitor/blob/main/docs/runbooks.md#"
ALERTS = {rule["alert"]: rule for rule in iter_alert_rules()}
NEVER_PAGE = {"LLMEndpointTTFTRegression", "LLMEndpointRateLimited"}


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", RUNBOOKS.read_text(), re.M)}


def test_down_stale_regression_and_rate_limit_alerts_exist() -> None:
    expected = {
        "LLMEndpointDown", "LLMModelDown", "LLMEndpointProbesStale", "LLMMonitorDown",
        "LLMEndpointTTFTRegression", "LLMEndpointRateLimited",
    }
    assert expected <= set(ALERTS)


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in iter_alert_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_has_severity_and_annotations(name: str) -> None:
    rule = ALERTS[name]
    assert rule["labels"]["severity"] in {"page", "warning"}
    for key in ("summary", "description", "runbook_url"):
        assert rule["annotations"].get(key), f"{name}: annotation {key} missing"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_url_points_at_its_own_section(name: str) -> None:
    url = ALERTS[name]["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX)
    anchor = url.removeprefix(RUNBOOK_PREFIX)
    assert anchor == name.lower()
    assert anchor in runbook_anchors(), f"docs/runbooks.md has no section for #{anchor}"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = {github_anchor(m.group(1)) for m in re.finditer(r"^## (.+)$", RUNBOOKS.read_text(), re.M)}
    assert sections == {name.lower() for name in ALERTS}


def test_operator_side_problems_never_page() -> None:
    """A missing credential and a slow or overloaded scheduler need someone at work, not someone
    woken up."""
    for name in ("LLMEndpointMisconfigured", "LLMMonitorSchedulerLagging", "LLMMonitorOverloaded"):
        assert ALERTS[name]["labels"]["severity"] == "warning"
    # The pages on endpoint / model health leave misconfigured endpoints to the warning.
    for name in ("LLMEndpointDown", "LLMModelDown"):
        assert "llm_endpoint_misconfigured" in ALERTS[name]["expr"], name


def test_latency_and_rate_limit_alerts_never_page() -> None:
    for name in NEVER_PAGE:
        assert ALERTS[name]["labels"]["severity"] == "warning"


def test_endpoint_down_and_monitor_down_are_distinct_conditions() -> None:
    assert "up{" not in ALERTS["LLMEndpointDown"]["expr"]
    assert "llm_endpoint" not in ALERTS["LLMMonitorDown"]["expr"]
    assert "absent(up{" in ALERTS["LLMMonitorDown"]["expr"]


def test_recording_rules_follow_the_naming_convention() -> None:
    records = [rule["record"] for _, _, rule in iter_rules() if "record" in rule]
    assert records
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name


def _alert_checks() -> dict[str, list[tuple[int, bool]]]:
    """alertname -> [(eval minutes, fires?)] in file order, over every promtool test file."""
    checks: dict[str, list[tuple[int, bool]]] = {}
    for path in PROMTOOL_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                minutes = int(str(check["eval_time"]).removesuffix("m"))
                checks.setdefault(check["alertname"], []).append((minutes, bool(check.get("exp_alerts"))))
    return checks


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_is_unit_tested_fire_blip_resolve(name: str) -> None:
    sequence = sorted(_alert_checks().get(name, []))
    assert sequence, f"{name} has no promtool alert_rule_test"
    fired_at = [t for t, fires in sequence if fires]
    assert fired_at, f"{name}: no check where it fires"
    quiet_before = [t for t, fires in sequence if not fires and t < fired_at[0]]
    quiet_after = [t for t, fires in sequence if not fires and t > fired_at[-1]]
    assert quiet_before, f"{name}: no check that it stays quiet (the blip) before it fires"
    assert quiet_after, f"{name}: no check that it resolves after firing"
