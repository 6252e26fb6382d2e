"""The dashboards built on grafana-foundation-sdk: every PromQL expression parses (promtool, on
the expressions with Grafana's variables filled in), every metric a panel reads is one the
monitor exports or a recording rule, and the outage, history, answer-check, cost and self-test
panels are there with their shape (state by location,
incidents, time to detect, answer checks, cost, self-test, long range, the 90-day uptime bar)."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.metrics import build_incident_metrics, build_metrics
from tests.observability.support import (
    GRAFANA_DIR,
    iter_panels,
    iter_promql_expressions,
    iter_rules,
    load_dashboards,
    require_binary,
    run_tool,
    substitute_grafana_variables,
)

DASHBOARDS = load_dashboards()
OVERVIEW = DASHBOARDS["llm-endpoints-overview.json"]
DETAIL = DASHBOARDS["llm-endpoint-detail.json"]
VARIABLES = {"model": "org/m", "provider": "P", "__interval": "5m", "__rate_interval": "1m", "__range": "1d"}

# PromQL words that look like metric names in the extraction below.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "max", "min", "count", "avg", "topk", "rate", "increase", "time", "vector", "histogram_quantile",
    "last_over_time", "le",
}


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_dashboards", GRAFANA_DIR / "generate_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (f"{e.source} :: {e.name}", substitute_grafana_variables(e.expr, VARIABLES))
        for e in iter_promql_expressions()
        if e.kind in ("panel", "variable")
    ]


def metric_names(expr: str) -> set[str]:
    """Series names an expression reads: identifiers followed by a selector, a range or the end,
    not by `(` (functions), outside label matchers and strings."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "[]", without_matchers)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges):
        name = match.group(0)
        if name in KEYWORDS or without_ranges[match.end():].lstrip().startswith("("):
            continue
        # label lists of by (...) / on (...) are not series
        before = without_ranges[: match.start()]
        if re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", before):
            continue
        names.add(name)
    return names


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    build_metrics(registry)
    build_incident_metrics(registry)
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_the_generator_builds_on_the_foundation_sdk():
    generator = load_generator()
    source = (GRAFANA_DIR / "generate_dashboards.py").read_text()
    assert "from grafana_foundation_sdk.builders import dashboard" in source
    for builder in generator.DASHBOARDS.values():
        board = builder()
        assert type(board).__module__ == "grafana_foundation_sdk.builders.dashboard"
    assert OVERVIEW["schemaVersion"] == DETAIL["schemaVersion"] == 41  # the SDK's Grafana 11.6 schema


def test_every_dashboard_expression_parses_with_promtool(tmp_path):
    """promtool parses every expression as a recording rule's expr (it refuses any that is not
    valid PromQL), with the Grafana variables filled in."""
    promtool = require_binary("promtool")
    expressions = dashboard_expressions()
    assert len(expressions) > 60
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:expr_{i}:check", "expr": expr} for i, (_, expr) in enumerate(expressions)
    ]}]}
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_tool([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_the_promtool_check_refuses_a_broken_expression(tmp_path):
    promtool = require_binary("promtool")
    path = tmp_path / "broken.yml"
    broken = dashboard_expressions()[-1][1].replace("(", "", 1)
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": broken}]}]}))
    assert run_tool([promtool, "check", "rules", str(path)]).returncode != 0


def test_metric_name_extraction():
    assert metric_names('sum by (model, le) (increase(a_total{x="y(z"}[5m])) / on (model) b:c:d > 2') == {"a_total", "b:c:d"}
    assert metric_names('count(ALERTS{alertstate="firing"}) or vector(0)') == {"ALERTS"}


def test_every_metric_name_is_known():
    known = exported_names() | {rule["record"] for _, _, rule in iter_rules() if "record" in rule} | {"ALERTS", "up"}
    unknown = {}
    for where, expr in dashboard_expressions():
        for name in metric_names(expr) - known:
            unknown.setdefault(name, where)
    assert not unknown, f"dashboards read metrics nobody exports: {unknown}"


def panels_of(board: dict) -> dict[str, dict]:
    return {p["title"]: p for p in iter_panels(board["panels"])}


def exprs_of(board: dict) -> str:
    return "\n".join(t["expr"] for p in iter_panels(board["panels"]) for t in p.get("targets", []))


@pytest.mark.parametrize("board", [OVERVIEW, DETAIL], ids=["overview", "detail"])
def test_state_incidents_answer_checks_cost_selftest_and_long_range_panels(board):
    text = exprs_of(board)
    for metric in (
        "llm_endpoint_state", "llm_location_endpoint_up", "llm_endpoint_incident_open",
        "llm_endpoint_answer_ok_ratio", "llm_tool_call_checks_total", "llm_probe_cost_usd_total",
        "llm_endpoint_cost_usd_per_month", "llm_probes_suspect_total",
        'llm_endpoint_uptime_ratio{', 'window="24h"', "llm_endpoint_ttft_p50_seconds{",
    ):
        assert metric in text, metric


def test_overview_has_time_to_detect_and_the_self_test():
    text = exprs_of(OVERVIEW)
    assert "histogram_quantile(0.5, sum by (le) (increase(llm_incident_time_to_detect_seconds_bucket" in text
    assert "histogram_quantile(0.95, sum by (le) (increase(llm_incident_time_to_detect_seconds_bucket" in text
    selftest = panels_of(OVERVIEW)["Self-test TTFT error"]
    assert [t["expr"] for t in selftest["targets"]] == [
        "max by (instance) (llm_monitor_selftest_ttft_error_seconds)",
        "max by (instance) (llm_monitor_selftest_max_error_seconds)",
    ]


@pytest.mark.parametrize("board", [OVERVIEW, DETAIL], ids=["overview", "detail"])
def test_the_uptime_bar_shows_one_coloured_cell_per_day_for_90_days(board):
    bar = panels_of(board)["Uptime, last 90 days"]
    assert bar["type"] == "status-history"
    assert bar["interval"] == "1d" and bar["timeFrom"] == "90d"
    (query,) = bar["targets"]
    assert 'last_over_time(llm_endpoint_uptime_ratio{' in query["expr"] and query["expr"].endswith('window="24h"}[1d]))')
    defaults = bar["fieldConfig"]["defaults"]
    assert defaults["unit"] == "percentunit" and defaults["color"]["mode"] == "thresholds"
    assert [(s["value"], s["color"]) for s in defaults["thresholds"]["steps"]] == [(None, "red"), (0.99, "orange"), (0.999, "green")]


@pytest.mark.parametrize("board", [OVERVIEW, DETAIL], ids=["overview", "detail"])
def test_long_range_panels_span_a_year(board):
    long_range = [p for p in iter_panels(board["panels"]) if "(long range)" in p["title"]]
    assert len(long_range) == 2
    for panel in long_range:
        assert panel["timeFrom"] == "365d"
        assert re.search(r'window=(~"7d\|30d\|90d"|"30d")', panel["targets"][0]["expr"])


def test_cost_panels_are_in_dollars():
    for board in (OVERVIEW, DETAIL):
        for panel in iter_panels(board["panels"]):
            if any("cost_usd" in t["expr"] for t in panel.get("targets", [])):
                assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUSD", panel["title"]


def test_every_target_has_a_ref_id_and_the_datasource():
    for board in (OVERVIEW, DETAIL):
        for panel in iter_panels(board["panels"]):
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert refs == [chr(ord("A") + i) for i in range(len(refs))], panel["title"]
            for t in panel.get("targets", []):
                assert t["datasource"] == {"type": "prometheus", "uid": "prometheus"}
