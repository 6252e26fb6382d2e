"""Generates the Grafana dashboards in grafana/dashboards/ (the committed JSON is this script's output).

Run `python grafana/generate_dashboards.py` after editing; tests/observability checks that the
committed files equal a fresh run. Dashboards are code here because panel JSON is mostly
boilerplate: what is worth reviewing is the list of panels and their PromQL, which reads better
in this file than in 1,500 lines of JSON.

Every panel queries the provisioned datasource by its fixed uid (`prometheus`); there are no
import-time `${DS_...}` inputs. Template variables: `model`, `provider`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
GRID_WIDTH = 24

Json = dict[str, Any]


# --------------------------------------------------------------------------- building blocks
def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False) -> Json:
    out: Json = {"datasource": DATASOURCE, "refId": ref, "expr": expr}
    if instant:
        out.update(instant=True, range=False, format="table")
    else:
        out.update(range=True, legendFormat=legend or "__auto")
    return out


def table_targets(exprs: Iterable[str]) -> list[Json]:
    return [target(expr, ref=chr(ord("A") + i), instant=True) for i, expr in enumerate(exprs)]


def query_variable(name: str, label: str, query: str, *, multi: bool) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        # The plain-string form: every Grafana version reads it (newer ones migrate it on load).
        "query": query,
        "refresh": 2,  # on time range change: endpoints come and go with the config
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        **({"allValue": ".*"} if multi else {}),
        "current": {},
        "options": [],
        "hide": 0,
    }


def field_defaults(unit: str | None = None, **extra: Any) -> Json:
    defaults: Json = {"color": {"mode": "palette-classic"}, **extra}
    if unit:
        defaults["unit"] = unit
    return {"defaults": defaults, "overrides": []}


STATE_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "ACTIVE", "color": "green", "index": 1},
        },
    }
]


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": value, "color": color} for value, color in steps]}


def stat(title: str, expr: str, *, unit: str | None = None, description: str = "", **defaults: Any) -> Json:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, instant=False)],
        "fieldConfig": field_defaults(unit, **defaults),
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }


def timeseries(
    title: str,
    targets: list[Json],
    *,
    unit: str | None = None,
    description: str = "",
    stacked_bars: bool = False,
    min_interval: str | None = None,
    **custom: Any,
) -> Json:
    draw: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "auto", "spanNulls": True}
    if stacked_bars:
        draw = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"mode": "normal", "group": "A"}}
    panel: Json = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": field_defaults(unit, custom={**draw, **custom}),
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if min_interval:
        panel["interval"] = min_interval
    return panel


def table(title: str, exprs: list[str], *, renames: dict[str, str], units: dict[str, str], description: str = "") -> Json:
    """An instant-query table: one query per column, merged on their common labels."""
    overrides = []
    for column, unit in units.items():
        properties: list[Json] = [{"id": "unit", "value": unit}]
        if column == "State":
            properties = [
                {"id": "mappings", "value": STATE_MAPPINGS},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            ]
        overrides.append({"matcher": {"id": "byName", "options": column}, "properties": properties})
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": table_targets(exprs),
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": overrides},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": renames}},
        ],
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(rows: list[tuple[int, list[Json]]]) -> list[Json]:
    """Place panels left to right, one list per grid row of the given height; assign ids."""
    panels: list[Json] = []
    y = 0
    for height, items in rows:
        if len(items) == 1 and items[0]["type"] == "row":
            items[0]["gridPos"] = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}
            panels.append(items[0])
            y += 1
            continue
        width = GRID_WIDTH // len(items)
        for column, panel in enumerate(items):
            panel["gridPos"] = {"h": height, "w": width, "x": column * width, "y": y}
            panels.append(panel)
        y += height
    for panel_id, panel in enumerate(panels, start=1):
        panel["id"] = panel_id
    return panels


def dashboard(uid: str, title: str, description: str, variables: list[Json], panels: list[Json], *, time_from: str) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["llm-monitor"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {"type": "dashboards", "tags": ["llm-monitor"], "asDropdown": False, "title": "LLM monitor", "includeVars": True, "keepTime": True}
        ],
        "templating": {"list": variables},
        "panels": panels,
    }


# --------------------------------------------------------------------------- dashboards
# Overview: multi-select variables, matched with =~.
SEL_MODEL = 'model=~"$model"'
SEL_ENDPOINT = 'model=~"$model",provider=~"$provider"'


def overview() -> Json:
    variables = [
        query_variable("model", "Model", "label_values(llm_model_endpoints, model)", multi=True),
        query_variable("provider", "Provider", 'label_values(llm_endpoint_up{model=~"$model"}, provider)', multi=True),
    ]
    models_table = table(
        "Models",
        [
            f"max by (model) (llm_model_active_endpoints{{{SEL_MODEL}}})",
            f"max by (model) (llm_model_endpoints{{{SEL_MODEL}}})",
            f"max by (model) (llm_model_best_ttft_seconds{{{SEL_MODEL}}})",
            f"max by (model) (llm_model_best_output_tokens_per_second{{{SEL_MODEL}}})",
            f"llm:model_availability:avg_over_time_24h{{{SEL_MODEL}}}",
        ],
        renames={
            "model": "Model",
            "Value #A": "Active",
            "Value #B": "Endpoints",
            "Value #C": "Best TTFT",
            "Value #D": "Best tokens/s",
            "Value #E": "Available (24h)",
        },
        units={"Best TTFT": "s", "Best tokens/s": "none", "Available (24h)": "percentunit"},
        description=(
            "Active / configured endpoints per model (the catalog's N/M), best endpoint medians "
            "(over active endpoints, else over all with data), and the share of the last 24 h with "
            "at least one active endpoint."
        ),
    )
    endpoints_table = table(
        "Endpoints",
        [
            f"max by (model, provider) (llm_endpoint_up{{{SEL_ENDPOINT}}})",
            f"max by (model, provider) (llm_endpoint_ttft_seconds{{{SEL_ENDPOINT}}})",
            f"max by (model, provider) (llm_endpoint_output_tokens_per_second{{{SEL_ENDPOINT}}})",
            f"llm:endpoint_success_ratio:24h{{{SEL_ENDPOINT}}}",
            f"max by (model, provider) (llm_endpoint_consecutive_failures{{{SEL_ENDPOINT}}})",
            f"time() - max by (model, provider) (llm_endpoint_last_probe_timestamp_seconds{{{SEL_ENDPOINT}}})",
            # The most frequent failure kind of the last 24 h (endpoints without one get no row
            # in this query and an empty cell in the table).
            "topk by (model, provider) (1, sum by (model, provider, outcome) "
            f'(increase(llm_probes_total{{{SEL_ENDPOINT},outcome!="ok"}}[24h])) > 0)',
        ],
        renames={
            "model": "Model",
            "provider": "Provider",
            "Value #A": "State",
            "Value #B": "TTFT (latest ok)",
            "Value #C": "Tokens/s (latest ok)",
            "Value #D": "Uptime (24h)",
            "Value #E": "Failures in a row",
            "Value #F": "Last probe",
            "outcome": "Main error (24h)",
            "Value #G": "Errors (24h)",
        },
        units={
            "State": "none",
            "TTFT (latest ok)": "s",
            "Tokens/s (latest ok)": "none",
            "Uptime (24h)": "percentunit",
            "Last probe": "s",
            "Errors (24h)": "none",
        },
        description=(
            "State is ACTIVE when the latest non-rate-limited probe is ok and no older than 2 "
            "intervals. Uptime = ok / (ok + failed) over 24 h, rate-limited probes in neither. "
            "'Failures in a row' > 0 means the latest probes fail; 'Main error' is the most "
            "frequent failure kind of the last 24 h."
        ),
    )
    panels = layout(
        [
            (
                4,
                [
                    stat(
                        "Active endpoints",
                        f"sum(llm_endpoint_up{{{SEL_ENDPOINT}}})",
                        description="Endpoints whose latest non-rate-limited probe is ok and recent.",
                    ),
                    stat("Configured endpoints", f"count(llm_endpoint_up{{{SEL_ENDPOINT}}})"),
                    stat(
                        "Models with no active endpoint",
                        f"count(max by (model) (llm_model_active_endpoints{{{SEL_MODEL}}}) == 0) or vector(0)",
                        thresholds=thresholds((None, "green"), (1, "red")),
                        color={"mode": "thresholds"},
                    ),
                    stat(
                        "Firing alerts",
                        'count(ALERTS{alertstate="firing",alertname=~"LLM.*"}) or vector(0)',
                        thresholds=thresholds((None, "green"), (1, "red")),
                        color={"mode": "thresholds"},
                    ),
                ],
            ),
            (8, [models_table]),
            (10, [endpoints_table]),
            (1, [row("Trends")]),
            (
                8,
                [
                    timeseries(
                        "Active endpoints per model",
                        [target(f"max by (model) (llm_model_active_endpoints{{{SEL_MODEL}}})", "{{model}}")],
                        unit="none",
                    ),
                    timeseries(
                        "Best TTFT per model",
                        [target(f"max by (model) (llm_model_best_ttft_seconds{{{SEL_MODEL}}})", "{{model}}")],
                        unit="s",
                    ),
                    timeseries(
                        "Best output tokens/s per model",
                        [target(f"max by (model) (llm_model_best_output_tokens_per_second{{{SEL_MODEL}}})", "{{model}}")],
                        unit="none",
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Success ratio per endpoint (1h)",
                        [target(f"llm:endpoint_success_ratio:1h{{{SEL_ENDPOINT}}}", "{{model}} / {{provider}}")],
                        unit="percentunit",
                        description="ok / (ok + failed) over the trailing hour; rate-limited probes counted in neither.",
                    ),
                    timeseries(
                        "Probe outcomes",
                        [
                            target(
                                f"sum by (outcome) (increase(llm_probes_total{{{SEL_ENDPOINT}}}[$__interval]))",
                                "{{outcome}}",
                            )
                        ],
                        unit="none",
                        stacked_bars=True,
                        min_interval="5m",
                        description="Probes per time bucket, stacked by outcome (ok or the error kind).",
                    ),
                ],
            ),
            (1, [row("Monitor")]),
            (
                7,
                [
                    timeseries(
                        "Scrape health",
                        [target('up{job=~"llm-monitor.*"}', "{{job}} {{instance}}")],
                        unit="none",
                        description="1 when Prometheus scrapes the process; alerts LLMMonitorDown / LLMMonitorAPIDown watch this.",
                    ),
                    timeseries(
                        "Scheduler lag",
                        [target("max by (instance) (llm_monitor_scheduler_lag_seconds)", "{{instance}}")],
                        unit="s",
                        description="How late the latest probe started after its endpoint's oldest unserved "
                        "scheduled run (waiting for a concurrency slot and skipped runs included); "
                        "LLMMonitorSchedulerLagging fires above 30 s.",
                    ),
                    timeseries(
                        "Probes in flight",
                        [target("sum by (instance) (llm_monitor_probes_in_flight)", "{{instance}}")],
                        unit="none",
                    ),
                ],
            ),
            (
                7,
                [
                    timeseries(
                        "Write buffer",
                        [
                            target("max by (instance) (llm_monitor_buffered_results)", "buffered {{instance}}"),
                            target(
                                "sum by (instance) (rate(llm_monitor_dropped_results_total[$__rate_interval]))",
                                "dropped/s {{instance}}",
                            ),
                        ],
                        unit="none",
                    ),
                    timeseries(
                        "Since last database write",
                        [target("time() - max by (instance) (llm_monitor_last_db_write_timestamp_seconds)", "{{instance}}")],
                        unit="s",
                    ),
                    timeseries(
                        "Skipped probe runs",
                        [
                            target(
                                "sum by (instance, reason) (rate(llm_monitor_skipped_runs_total[$__rate_interval]))",
                                "{{reason}} {{instance}}",
                            )
                        ],
                        unit="none",
                        description="Scheduled runs per second that never ran: max_instances (the endpoint's "
                        "previous run still going) or misfire (due too long ago); LLMMonitorOverloaded warns.",
                    ),
                ],
            ),
        ]
    )
    return dashboard(
        "llm-endpoints-overview",
        "LLM endpoints overview",
        "Every model and endpoint at a glance: active N/M, best figures, uptime, current failures.",
        variables,
        panels,
        time_from="now-24h",
    )


# Detail: one endpoint, single-select variables, exact matches.
SEL_ONE = 'model="$model",provider="$provider"'


def endpoint_detail() -> Json:
    variables = [
        query_variable("model", "Model", "label_values(llm_model_endpoints, model)", multi=False),
        query_variable("provider", "Provider", 'label_values(llm_endpoint_up{model="$model"}, provider)', multi=False),
    ]
    panels = layout(
        [
            (
                4,
                [
                    stat(
                        "State",
                        f"max(llm_endpoint_up{{{SEL_ONE}}})",
                        mappings=STATE_MAPPINGS,
                        color={"mode": "thresholds"},
                        thresholds=thresholds((None, "red"), (1, "green")),
                    ),
                    stat("TTFT (latest ok)", f"max(llm_endpoint_ttft_seconds{{{SEL_ONE}}})", unit="s"),
                    stat("Tokens/s (latest ok)", f"max(llm_endpoint_output_tokens_per_second{{{SEL_ONE}}})", unit="none"),
                    stat("Uptime (1h)", f"max(llm:endpoint_success_ratio:1h{{{SEL_ONE}}})", unit="percentunit"),
                    stat("Uptime (24h)", f"max(llm:endpoint_success_ratio:24h{{{SEL_ONE}}})", unit="percentunit"),
                    stat(
                        "Failures in a row",
                        f"max(llm_endpoint_consecutive_failures{{{SEL_ONE}}})",
                        unit="none",
                        color={"mode": "thresholds"},
                        thresholds=thresholds((None, "green"), (1, "orange"), (2, "red")),
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Time to first token",
                        [
                            target(f"max(llm_endpoint_ttft_seconds{{{SEL_ONE}}})", "latest ok probe"),
                            target(f"max(llm:endpoint_ttft_seconds:avg_over_time_7d{{{SEL_ONE}}})", "7-day baseline"),
                            target(f"2 * max(llm:endpoint_ttft_seconds:avg_over_time_7d{{{SEL_ONE}}})", "regression alert threshold"),
                            target(
                                f"histogram_quantile(0.9, sum by (le) (rate(llm_probe_ttft_seconds_bucket{{{SEL_ONE}}}[6h])))",
                                "p90 over 6h",
                            ),
                        ],
                        unit="s",
                    ),
                    timeseries(
                        "Output tokens per second",
                        [target(f"max(llm_endpoint_output_tokens_per_second{{{SEL_ONE}}})", "latest ok probe")],
                        unit="none",
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Probe outcomes",
                        [target(f"sum by (outcome) (increase(llm_probes_total{{{SEL_ONE}}}[$__interval]))", "{{outcome}}")],
                        unit="none",
                        stacked_bars=True,
                        min_interval="5m",
                        description="Probes per time bucket, stacked by outcome: ok or the error kind (config_error, dns_error, connect_error, tls_error, timeout, auth_error, not_found, rate_limited, http_error, stream_error, empty_response).",
                    ),
                    timeseries(
                        "Failures in a row",
                        [target(f"max(llm_endpoint_consecutive_failures{{{SEL_ONE}}})", "failures in a row")],
                        unit="none",
                        description="LLMEndpointDown fires at 2. Rate-limited probes neither count nor reset it.",
                    ),
                ],
            ),
            (
                8,
                [
                    timeseries(
                        "Connection phases (latest ok probe)",
                        [target(f"max by (phase) (llm_endpoint_probe_phase_seconds{{{SEL_ONE}}})", "{{phase}}")],
                        unit="s",
                        description="dns/tcp/tls: cold connection set-up seen during the warm-up; headers: time to response headers of the measured request; first_token: its TTFT.",
                    ),
                    timeseries(
                        "Staleness",
                        [
                            target(f"time() - max(llm_endpoint_last_probe_timestamp_seconds{{{SEL_ONE}}})", "since last probe"),
                            target(f"2.5 * max(llm_endpoint_probe_interval_seconds{{{SEL_ONE}}})", "stale alert threshold (2.5 intervals)"),
                        ],
                        unit="s",
                    ),
                ],
            ),
            (
                6,
                [
                    table(
                        "Outcomes in the selected range",
                        [f"sum by (outcome) (increase(llm_probes_total{{{SEL_ONE}}}[$__range])) > 0"],
                        renames={"outcome": "Outcome", "Value": "Probes"},
                        units={"Probes": "none"},
                    ),
                    table(
                        "Alerts on this endpoint",
                        [f'ALERTS{{{SEL_ONE}}} or ALERTS{{model="$model",alertname="LLMModelDown"}}'],
                        renames={"alertname": "Alert", "alertstate": "State", "severity": "Severity", "Value": "Active"},
                        units={},
                        description="Pending and firing alerts for this endpoint and its model (empty when all is well).",
                    ),
                ],
            ),
        ]
    )
    return dashboard(
        "llm-endpoint-detail",
        "Endpoint detail",
        "One endpoint over time: TTFT against its baseline, throughput, probe outcomes by error kind, connection phases, staleness.",
        variables,
        panels,
        time_from="now-7d",
    )


DASHBOARDS = {
    "llm-endpoints-overview.json": overview,
    "llm-endpoint-detail.json": endpoint_detail,
}


def render(builder) -> str:
    return json.dumps(builder(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else DASHBOARDS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, builder in DASHBOARDS.items():
        (out_dir / filename).write_text(render(builder), encoding="utf-8")
        print(f"wrote {out_dir / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
