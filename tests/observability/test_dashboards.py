"""Grafana provisioning and dashboards: valid JSON equal to the generator's output, fixed uids,
every datasource reference = the provisioned uid, `model`/`provider` variables, no import-time
placeholders, and the expressions' extraction helper itself."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.observability.support import (
    DASHBOARD_FILES,
    GRAFANA_DIR,
    REPO,
    iter_panels,
    iter_promql_expressions,
    load_dashboards,
    load_yaml,
    substitute_grafana_variables,
    variable_selector,
)

DASHBOARDS = load_dashboards()
EXPECTED_UIDS = {"llm-endpoints-overview.json": "llm-endpoints-overview", "llm-endpoint-detail.json": "llm-endpoint-detail"}


def provisioned_datasource() -> dict:
    (source,) = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    return source


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_dashboards", GRAFANA_DIR / "generate_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def datasource_refs(node: object) -> list[object]:
    """Every value of a `datasource` key anywhere in the JSON."""
    found: list[object] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(datasource_refs(item))
    return found


def test_both_dashboards_exist() -> None:
    assert set(DASHBOARDS) == set(EXPECTED_UIDS)


def test_committed_json_is_the_generator_output(tmp_path: Path) -> None:
    generator = load_generator()
    assert generator.main(["generate_dashboards.py", str(tmp_path)]) == 0
    for path in DASHBOARD_FILES:
        fresh = (tmp_path / path.name).read_text(encoding="utf-8")
        assert path.read_text(encoding="utf-8") == fresh, (
            f"{path.name} differs from the generator output: run python grafana/generate_dashboards.py"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in DASHBOARD_FILES)


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_dashboard_has_fixed_uid_and_title(name: str) -> None:
    board = DASHBOARDS[name]
    assert board["uid"] == EXPECTED_UIDS[name]
    assert board["title"]
    assert "id" not in board or board["id"] is None  # provisioning assigns the numeric id


def test_uids_and_titles_are_unique() -> None:
    assert len({b["uid"] for b in DASHBOARDS.values()}) == len(DASHBOARDS)
    assert len({b["title"] for b in DASHBOARDS.values()}) == len(DASHBOARDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_no_import_placeholders(name: str) -> None:
    text = (GRAFANA_DIR / "dashboards" / name).read_text()
    assert "__inputs" not in DASHBOARDS[name]
    assert "${DS_" not in text and "$DS_" not in text


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_every_datasource_reference_is_the_provisioned_uid(name: str) -> None:
    datasource = provisioned_datasource()
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    refs = datasource_refs(DASHBOARDS[name]["panels"]) + datasource_refs(DASHBOARDS[name]["templating"])
    assert refs
    for ref in refs:
        assert ref == {"type": "prometheus", "uid": datasource["uid"]}, ref


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_model_and_provider_variables_query_the_datasource(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert {"model", "provider"} <= set(variables)
    for var_name in ("model", "provider"):
        variable = variables[var_name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == provisioned_datasource()["uid"]
        query = variable["query"]
        # The SDK's VariableModel has no `definition` (Grafana's editor fills it in); if a
        # dashboard carries one, it must say the same as the query.
        assert variable.get("definition", query) == query
        assert query.startswith("label_values(") and query.rstrip(")").endswith(var_name)
    # The provider list follows the chosen model.
    assert "$model" in variables["provider"]["query"]


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_panels_have_unique_ids_and_fit_the_grid(name: str) -> None:
    panels = list(iter_panels(DASHBOARDS[name]["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']}: no query"


def test_every_panel_filters_by_the_variables_where_it_shows_endpoint_data() -> None:
    for expression in iter_promql_expressions():
        if expression.kind != "panel":
            continue
        if re.search(r"\bllm_(endpoint|probe)", expression.expr) or "llm:endpoint" in expression.expr:
            assert "$model" in expression.expr and "$provider" in expression.expr, expression


def test_overview_shows_availability_best_figures_and_failures() -> None:
    exprs = " ".join(e.expr for e in iter_promql_expressions() if "overview" in e.source)
    for metric in (
        "llm_model_active_endpoints", "llm_model_endpoints", "llm_model_best_ttft_seconds",
        "llm_model_best_output_tokens_per_second", "llm:endpoint_success_ratio:24h",
        "llm_endpoint_up", "llm_endpoint_consecutive_failures", 'outcome!="ok"',
    ):
        assert metric in exprs, metric


def test_detail_shows_latency_throughput_outcomes_phases_and_freshness() -> None:
    exprs = " ".join(e.expr for e in iter_promql_expressions() if "detail" in e.source)
    for needle in (
        "llm_endpoint_ttft_seconds", "llm_endpoint_output_tokens_per_second", "by (outcome) (increase(llm_probes_total",
        "llm_endpoint_probe_phase_seconds", "llm_endpoint_last_probe_timestamp_seconds",
    ):
        assert needle in exprs, needle


def test_dashboard_provider_points_at_the_mounted_dashboards_folder() -> None:
    (provider,) = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "llm-monitor.yml")["providers"]
    assert provider["type"] == "file"
    grafana = load_yaml(REPO / "docker-compose.yml")["services"]["grafana"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_datasource_url_is_the_compose_prometheus() -> None:
    services = load_yaml(REPO / "docker-compose.yml")["services"]
    assert "prometheus" in services
    assert provisioned_datasource()["url"] == "http://prometheus:9090"


# --------------------------------------------------------------------------- the extraction helper
def test_extraction_covers_rules_panels_and_variables() -> None:
    expressions = list(iter_promql_expressions())
    kinds = {e.kind for e in expressions}
    assert kinds == {"record", "alert", "panel", "variable"}
    panel_targets = sum(
        len(p.get("targets", [])) for b in DASHBOARDS.values() for p in iter_panels(b["panels"])
    )
    assert sum(1 for e in expressions if e.kind == "panel") == panel_targets
    assert all(e.expr.strip() for e in expressions)


def test_variable_selector_and_substitution() -> None:
    assert variable_selector('label_values(llm_endpoint_up{model=~"$model"}, provider)') == 'llm_endpoint_up{model=~"$model"}'
    assert variable_selector("query_result(up)") is None
    values = {"model": "m/1", "__range": "5m", "__rate_interval": "1m"}
    assert (
        substitute_grafana_variables('x{model="$model"}[$__range] y[${__rate_interval}]', values)
        == 'x{model="m/1"}[5m] y[1m]'
    )


def test_json_files_are_pretty_printed_and_end_with_newline() -> None:
    for path in DASHBOARD_FILES:
        text = path.read_text()
        assert text.endswith("\n")
        assert json.loads(text)
