"""Generates the Grafana dashboards in grafana/dashboards/ (the committed JSON is this script's output).

Run `python grafana/generate_dashboards.py` after editing; tests/observability checks that the
committed files equal a fresh run. The dashboards are built with Grafana Labs' typed builders,
`grafana-foundation-sdk` (the 11.6 builders: `grafana_foundation_sdk.builders.dashboard`,
`.stat`, `.timeseries`, `.table`, `.statushistory`, `.statetimeline`, `.prometheus`), so every
option is a typed call that the SDK serializes as Grafana 11.6 expects; what is worth
reviewing here is the list of panels and their PromQL.

Every panel queries the provisioned datasource by its fixed uid (`prometheus`); there are no
import-time `${DS_...}` inputs. Template variables: `model`, `provider`.

What the SDK cannot express, kept small and marked `SDK gap` below:
- a query variable's `definition` (the text Grafana's editor shows): the SDK's VariableModel has
  no such field; Grafana fills it in itself when the variable is edited, so it is left out;
- the SDK fills in the panel id only when asked: `Layout` numbers the panels.

The long-range panels read `llm_endpoint_uptime_ratio{window}` and
`llm_endpoint_ttft_p50_seconds{window}` (24h, 7d, 30d, 90d windows, computed by the monitor from
its roll-ups) through Prometheus, which therefore needs a retention longer than the panels' range
(`--storage.tsdb.retention.time=400d`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as statb
from grafana_foundation_sdk.builders import statetimeline as timelineb
from grafana_foundation_sdk.builders import statushistory as historyb
from grafana_foundation_sdk.builders import table as tableb
from grafana_foundation_sdk.builders import timeseries as tsb
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="prometheus")
DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
GRID_WIDTH = 24
USD = "currencyUSD"


# --------------------------------------------------------------------------- building blocks
def target(expr: str, legend: str = "", *, instant: bool = False) -> pb.Dataquery:
    """A Prometheus query; `Layout` gives it its refId (A, B, ...) within the panel."""
    query = pb.Dataquery().expr(expr).datasource(DATASOURCE)
    if instant:
        return query.instant().format(PromQueryFormat.TABLE)
    return query.range().legend_format(legend or "__auto")


def query_variable(name: str, label: str, query: str, *, multi: bool) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)  # SDK gap: no `definition` (see the module docstring)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)  # endpoints come and go with the config
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    return variable.all_value(".*") if multi else variable


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in steps]
    )


def value_mapping(texts: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """{"0": ("DOWN", "red"), ...} -> one value mapping."""
    return [
        dm.ValueMap(options={
            value: dm.ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(texts.items())
        })
    ]


UP_MAPPINGS = value_mapping({"0": ("DOWN", "red"), "1": ("ACTIVE", "green")})
LOCATION_MAPPINGS = value_mapping({"0": ("DOWN", "red"), "1": ("UP", "green")})
PALETTE = db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC)
BY_THRESHOLDS = db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)
# Uptime colours, as status pages draw them: below 99 % red, below 99.9 % orange.
UPTIME_THRESHOLDS = thresholds((None, "red"), (0.99, "orange"), (0.999, "green"))


def stat(
    title: str,
    exprs: str | Sequence[tuple[str, str]],
    *,
    unit: str | None = None,
    description: str = "",
    text_mode: cm.BigValueTextMode = cm.BigValueTextMode.AUTO,
    color_thresholds: db.ThresholdsConfig | None = None,
    mappings: list[dm.ValueMapping] | None = None,
) -> statb.Panel:
    """A single-value panel over the latest value; `exprs` is one expression or (expr, legend) pairs."""
    panel = (
        statb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .color_scheme(BY_THRESHOLDS if color_thresholds else PALETTE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(text_mode)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )
    for expr, legend in [(exprs, "")] if isinstance(exprs, str) else exprs:
        panel = panel.with_target(target(expr, legend))
    if unit:
        panel = panel.unit(unit)
    if color_thresholds:
        panel = panel.thresholds(color_thresholds)
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def timeseries(
    title: str,
    targets: list[pb.Dataquery],
    *,
    unit: str | None = None,
    description: str = "",
    stacked_bars: bool = False,
    min_interval: str | None = None,
    time_from: str | None = None,
) -> tsb.Panel:
    panel = (
        tsb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .color_scheme(PALETTE)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stacked_bars:
        panel = (
            panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80).line_width(1)
            .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL).group("A"))
        )
    else:
        panel = panel.draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(0).show_points(cm.VisibilityMode.AUTO).span_nulls(True)
    for query in targets:
        panel = panel.with_target(query)
    if unit:
        panel = panel.unit(unit)
    if min_interval:
        panel = panel.interval(min_interval)
    if time_from:
        panel = panel.time_from(time_from)
    return panel


def table(title: str, exprs: list[str], *, renames: dict[str, str], units: dict[str, str], description: str = "",
          mappings: dict[str, list[dm.ValueMapping]] | None = None, hide: Sequence[str] = ()) -> tableb.Panel:
    """An instant-query table: one query per column, merged on their common labels. A column in
    `mappings` shows its mapped text on a coloured background instead of a unit."""
    panel = (
        tableb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .align(cm.FieldTextAlignment.AUTO)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(cb.TableFooterOptions().show(False))
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": {name: True for name in ("Time", *hide)}, "renameByName": renames},
        ))
    )
    for expr in exprs:
        panel = panel.with_target(target(expr, instant=True))
    for column, unit in units.items():
        panel = panel.override_by_name(column, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    for column, mapping in (mappings or {}).items():
        panel = panel.override_by_name(column, [
            dm.DynamicConfigValue(id_val="mappings", value=mapping),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value=cm.TableColoredBackgroundCellOptions()),
        ])
    return panel


def state_timeline(title: str, expr: str, legend: str, *, description: str = "",
                   mappings: list[dm.ValueMapping]) -> timelineb.Panel:
    return (
        timelineb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target(expr, legend))
        .mappings(mappings)
        .color_scheme(BY_THRESHOLDS)
        .thresholds(thresholds((None, "red"), (1, "green")))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM).show_legend(False))
    )


def uptime_bar(title: str, expr: str, legend: str, *, description: str) -> historyb.Panel:
    """One cell per day of the last 90 days, coloured by that day's uptime."""
    return (
        historyb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target(expr, legend))
        .interval("1d")
        .time_from("90d")
        .unit("percentunit")
        .decimals(2)
        .color_scheme(BY_THRESHOLDS)
        .thresholds(UPTIME_THRESHOLDS)
        .show_value(cm.VisibilityMode.NEVER)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM).show_legend(False))
    )


class Layout:
    """Adds panels to a dashboard builder one grid row at a time: the row's panels share the 24
    columns (widths summing to 24, so the SDK's auto-layout starts each row at x = 0), every
    panel and target gets its id / refId."""

    def __init__(self, dashboard: db.Dashboard) -> None:
        self.dashboard = dashboard
        self._next_id = 1

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def row(self, title: str) -> "Layout":
        self.dashboard.with_row(db.Row(title).id(self._id()))
        return self

    def panels(self, height: int, panels: Sequence[Builder]) -> "Layout":
        base, extra = divmod(GRID_WIDTH, len(panels))
        for column, panel in enumerate(panels):
            built = panel.build()
            for index, query in enumerate(built.targets or []):
                query.ref_id = chr(ord("A") + index)
            panel.id(self._id()).height(height).span(base + (1 if column < extra else 0))
            self.dashboard.with_panel(panel)
        return self


def dashboard(uid: str, title: str, description: str, variables: list[db.QueryVariable], *, time_from: str) -> db.Dashboard:
    board = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["llm-monitor"])
        .timezone("utc")
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .version(1)
        .time(time_from, "now")
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            db.DashboardLink("LLM monitor").type(dm.DashboardLinkType.DASHBOARDS).tags(["llm-monitor"])
            .as_dropdown(False).include_vars(True).keep_time(True)
        )
    )
    for variable in variables:
        board = board.with_variable(variable)
    return board


# --------------------------------------------------------------------------- dashboards
# Overview: multi-select variables, matched with =~.
SEL_MODEL = 'model=~"$model"'
SEL_ENDPOINT = 'model=~"$model",provider=~"$provider"'


def overview() -> db.Dashboard:
    board = dashboard(
        "llm-endpoints-overview",
        "LLM endpoints overview",
        "Every model and endpoint at a glance: active N/M, best figures, uptime, current failures, "
        "state and incidents, answer checks, probe cost and the monitor's own self-test.",
        [
            query_variable("model", "Model", "label_values(llm_model_endpoints, model)", multi=True),
            query_variable("provider", "Provider", 'label_values(llm_endpoint_up{model=~"$model"}, provider)', multi=True),
        ],
        time_from="now-24h",
    )
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
            "TTFT (latest ok)": "s",
            "Tokens/s (latest ok)": "none",
            "Uptime (24h)": "percentunit",
            "Last probe": "s",
            "Errors (24h)": "none",
        },
        mappings={"State": UP_MAPPINGS},
        description=(
            "State is ACTIVE when the latest non-rate-limited probe is ok and no older than 2 "
            "intervals. Uptime = ok / (ok + failed) over 24 h, rate-limited probes in neither. "
            "'Failures in a row' > 0 means the latest probes fail; 'Main error' is the most "
            "frequent failure kind of the last 24 h."
        ),
    )
    (
        Layout(board)
        .panels(4, [
            stat(
                "Active endpoints",
                f"sum(llm_endpoint_up{{{SEL_ENDPOINT}}})",
                description="Endpoints whose latest non-rate-limited probe is ok and recent.",
            ),
            stat("Configured endpoints", f"count(llm_endpoint_up{{{SEL_ENDPOINT}}})"),
            stat(
                "Models with no active endpoint",
                f"count(max by (model) (llm_model_active_endpoints{{{SEL_MODEL}}}) == 0) or vector(0)",
                color_thresholds=thresholds((None, "green"), (1, "red")),
            ),
            stat(
                "Firing alerts",
                'count(ALERTS{alertstate="firing",alertname=~"LLM.*"}) or vector(0)',
                color_thresholds=thresholds((None, "green"), (1, "red")),
            ),
        ])
        .panels(8, [models_table])
        .panels(10, [endpoints_table])
        .row("Trends")
        .panels(8, [
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
        ])
        .panels(8, [
            timeseries(
                "Success ratio per endpoint (1h)",
                [target(f"llm:endpoint_success_ratio:1h{{{SEL_ENDPOINT}}}", "{{model}} / {{provider}}")],
                unit="percentunit",
                description="ok / (ok + failed) over the trailing hour; rate-limited probes counted in neither.",
            ),
            timeseries(
                "Probe outcomes",
                [target(f"sum by (outcome) (increase(llm_probes_total{{{SEL_ENDPOINT}}}[$__interval]))", "{{outcome}}")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
                description="Probes per time bucket, stacked by outcome (ok or the error kind).",
            ),
        ])
        .row("State and incidents")
        .panels(4, [
            stat(
                "Endpoints by state",
                [(f"count by (state) (llm_endpoint_state{{{SEL_ENDPOINT}}} == 1)", "{{state}}")],
                text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
                description="up, degraded (slower than degraded_ttft or failing its answer check), regional "
                "(failing from a minority of locations), down (by quorum), misconfigured, unknown.",
            ),
            stat(
                "Open incidents",
                f"sum(llm_endpoint_incident_open{{{SEL_ENDPOINT}}}) or vector(0)",
                color_thresholds=thresholds((None, "green"), (1, "red")),
                description="Endpoints declared down by quorum whose incident has not resolved yet.",
            ),
            stat(
                "Time to detect (range)",
                [
                    (f"histogram_quantile(0.5, sum by (le) (increase(llm_incident_time_to_detect_seconds_bucket{{{SEL_ENDPOINT}}}[$__range])))", "p50"),
                    (f"histogram_quantile(0.95, sum by (le) (increase(llm_incident_time_to_detect_seconds_bucket{{{SEL_ENDPOINT}}}[$__range])))", "p95"),
                ],
                unit="s",
                text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
                description="From an outage's first failed probe to its incident opening, over the incidents opened in the selected range.",
            ),
        ])
        .panels(8, [
            table(
                "Endpoint state",
                [
                    f"max by (model, provider, state) (llm_endpoint_state{{{SEL_ENDPOINT}}} == 1)",
                    f"max by (model, provider) (llm_endpoint_incident_open{{{SEL_ENDPOINT}}})",
                ],
                renames={"model": "Model", "provider": "Provider", "state": "State", "Value #B": "Open incident"},
                hide=["Value #A"],  # 1: the state label is the value
                units={"Open incident": "bool_yes_no"},
                description="Each endpoint's current state (all locations combined) and whether an incident is open.",
            ),
            state_timeline(
                "Up by location",
                f"max by (model, provider, location) (llm_location_endpoint_up{{{SEL_ENDPOINT}}})",
                "{{model}} / {{provider}} @ {{location}}",
                mappings=LOCATION_MAPPINGS,
                description="Each endpoint as each location sees it: a red bar in one location only is a regional failure, not an outage.",
            ),
        ])
        .panels(7, [
            timeseries(
                "Open incidents",
                [target(f"max by (model, provider) (llm_endpoint_incident_open{{{SEL_ENDPOINT}}})", "{{model}} / {{provider}}")],
                unit="none",
            ),
            timeseries(
                "Endpoints by state",
                [target(f"count by (state) (llm_endpoint_state{{{SEL_ENDPOINT}}} == 1)", "{{state}}")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
            ),
        ])
        .row("Answer checks")
        .panels(7, [
            timeseries(
                "Answer check ok ratio",
                [target(f"min by (model, provider) (llm_endpoint_answer_ok_ratio{{{SEL_ENDPOINT}}})", "{{model}} / {{provider}}")],
                unit="percentunit",
                description="Share of the window's ok probes whose answer passed the correctness canary; "
                "below the endpoint's answer_ok_min (default 0.8) the endpoint is degraded.",
            ),
            timeseries(
                "Tool-call checks",
                [target(f"sum by (outcome) (increase(llm_tool_call_checks_total{{{SEL_ENDPOINT}}}[$__interval]))", "{{outcome}}")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
                description="Tool-call canaries per time bucket by outcome: ok, invalid_json, unknown_tool, "
                "schema_mismatch, no_tool_call, request_failed.",
            ),
        ])
        .row("Cost")
        .panels(4, [
            stat(
                "Projected monthly probe cost",
                f"sum(llm_endpoint_cost_usd_per_month{{{SEL_ENDPOINT}}}) or vector(0)",
                unit=USD,
                description="Sum over priced endpoints: mean cost per probe x scheduled probes per month "
                "(every location) x (1 + the observed confirm rate).",
            ),
            stat(
                "Probe cost in the selected range",
                f"sum(increase(llm_probe_cost_usd_total{{{SEL_ENDPOINT}}}[$__range]))",
                unit=USD,
                description="What the probes recorded in the range cost (confirmations and canaries included).",
            ),
        ])
        .panels(7, [
            timeseries(
                "Projected monthly cost per endpoint",
                [target(f"max by (model, provider) (llm_endpoint_cost_usd_per_month{{{SEL_ENDPOINT}}})", "{{model}} / {{provider}}")],
                unit=USD,
            ),
            timeseries(
                "Probe spend per model",
                [target(f"sum by (model) (increase(llm_probe_cost_usd_total{{{SEL_ENDPOINT}}}[$__interval]))", "{{model}}")],
                unit=USD,
                stacked_bars=True,
                min_interval="1h",
            ),
        ])
        .row("Long range")
        .panels(9, [
            uptime_bar(
                "Uptime, last 90 days",
                f'min by (model, provider) (last_over_time(llm_endpoint_uptime_ratio{{{SEL_ENDPOINT},window="24h"}}[1d]))',
                "{{model}} / {{provider}}",
                description="One cell per day: that day's uptime (the trailing-24h uptime at the end of the day), "
                "red below 99 %, orange below 99.9 %.",
            ),
        ])
        .panels(8, [
            timeseries(
                "Uptime over 30 days (long range)",
                [target(f'min by (model, provider) (llm_endpoint_uptime_ratio{{{SEL_ENDPOINT},window="30d"}})', "{{model}} / {{provider}}")],
                unit="percentunit",
                time_from="365d",
                description="The trailing-30-day uptime over the last year, from the monitor's roll-ups through Prometheus.",
            ),
            timeseries(
                "Median TTFT over 30 days (long range)",
                [target(f'max by (model, provider) (llm_endpoint_ttft_p50_seconds{{{SEL_ENDPOINT},window="30d"}})', "{{model}} / {{provider}}")],
                unit="s",
                time_from="365d",
            ),
        ])
        .row("Monitor")
        .panels(7, [
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
        ])
        .panels(7, [
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
        ])
        .panels(7, [
            timeseries(
                "Self-test TTFT error",
                [
                    target("max by (instance) (llm_monitor_selftest_ttft_error_seconds)", "error {{instance}}"),
                    target("max by (instance) (llm_monitor_selftest_max_error_seconds)", "suspect above {{instance}}"),
                ],
                unit="s",
                description="The monitor's own TTFT error on its loopback reference endpoint (measured - true). "
                "Above the threshold, finished probes are flagged suspect; LLMMonitorSelfTestErrorHigh warns after 10 min.",
            ),
            timeseries(
                "Suspect probes",
                [target(f"sum by (model, provider) (increase(llm_probes_suspect_total{{{SEL_ENDPOINT}}}[$__interval]))", "{{model}} / {{provider}}")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
                description="Probes recorded while the self-test error was above its threshold: their timings include the monitor's own delay.",
            ),
        ])
    )
    return board


# Detail: one endpoint, single-select variables, exact matches.
SEL_ONE = 'model="$model",provider="$provider"'


def endpoint_detail() -> db.Dashboard:
    board = dashboard(
        "llm-endpoint-detail",
        "Endpoint detail",
        "One endpoint over time: TTFT against its baseline, throughput, probe outcomes by error kind, "
        "connection phases, staleness, state by location, answer checks, cost and long-range figures.",
        [
            query_variable("model", "Model", "label_values(llm_model_endpoints, model)", multi=False),
            query_variable("provider", "Provider", 'label_values(llm_endpoint_up{model="$model"}, provider)', multi=False),
        ],
        time_from="now-7d",
    )
    (
        Layout(board)
        .panels(4, [
            stat(
                "State",
                f"max(llm_endpoint_up{{{SEL_ONE}}})",
                mappings=UP_MAPPINGS,
                color_thresholds=thresholds((None, "red"), (1, "green")),
            ),
            stat("TTFT (latest ok)", f"max(llm_endpoint_ttft_seconds{{{SEL_ONE}}})", unit="s"),
            stat("Tokens/s (latest ok)", f"max(llm_endpoint_output_tokens_per_second{{{SEL_ONE}}})", unit="none"),
            stat("Uptime (1h)", f"max(llm:endpoint_success_ratio:1h{{{SEL_ONE}}})", unit="percentunit"),
            stat("Uptime (24h)", f"max(llm:endpoint_success_ratio:24h{{{SEL_ONE}}})", unit="percentunit"),
            stat(
                "Failures in a row",
                f"max(llm_endpoint_consecutive_failures{{{SEL_ONE}}})",
                unit="none",
                color_thresholds=thresholds((None, "green"), (1, "orange"), (2, "red")),
            ),
        ])
        .panels(4, [
            stat(
                "Endpoint state",
                [(f"max by (state) (llm_endpoint_state{{{SEL_ONE}}} == 1)", "{{state}}")],
                text_mode=cm.BigValueTextMode.NAME,
                description="up, degraded, regional, down, misconfigured or unknown (every location combined).",
            ),
            stat(
                "Open incident",
                f"max(llm_endpoint_incident_open{{{SEL_ONE}}})",
                mappings=value_mapping({"0": ("none", "green"), "1": ("OPEN", "red")}),
                color_thresholds=thresholds((None, "green"), (1, "red")),
            ),
            stat("Answer check ok", f"min(llm_endpoint_answer_ok_ratio{{{SEL_ONE}}})", unit="percentunit"),
            stat(
                "Projected monthly cost",
                f"max(llm_endpoint_cost_usd_per_month{{{SEL_ONE}}})",
                unit=USD,
                description="Mean cost per probe x scheduled probes per month (every location) x (1 + confirm rate); empty without a price.",
            ),
        ])
        .panels(8, [
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
        ])
        .panels(8, [
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
                description="This process's failed probes in a row (rate-limited ones neither count nor reset it). LLMEndpointDown pages on the open incident, decided by quorum across locations.",
            ),
        ])
        .panels(8, [
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
        ])
        .panels(6, [
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
        ])
        .row("State, answer checks and cost")
        .panels(7, [
            state_timeline(
                "Up by location",
                f"max by (location) (llm_location_endpoint_up{{{SEL_ONE}}})",
                "{{location}}",
                mappings=LOCATION_MAPPINGS,
                description="The endpoint as each location sees it; a failure in a minority of locations is regional.",
            ),
            timeseries(
                "Open incident",
                [target(f"max(llm_endpoint_incident_open{{{SEL_ONE}}})", "open incident")],
                unit="none",
            ),
        ])
        .panels(7, [
            timeseries(
                "Answer check ok ratio",
                [target(f"min(llm_endpoint_answer_ok_ratio{{{SEL_ONE}}})", "answer ok ratio")],
                unit="percentunit",
            ),
            timeseries(
                "Tool-call checks",
                [target(f"sum by (outcome) (increase(llm_tool_call_checks_total{{{SEL_ONE}}}[$__interval]))", "{{outcome}}")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
            ),
        ])
        .panels(7, [
            timeseries(
                "Probe spend",
                [target(f"sum(increase(llm_probe_cost_usd_total{{{SEL_ONE}}}[$__interval]))", "spend")],
                unit=USD,
                stacked_bars=True,
                min_interval="1h",
            ),
            timeseries(
                "Suspect probes",
                [target(f"sum(increase(llm_probes_suspect_total{{{SEL_ONE}}}[$__interval]))", "suspect")],
                unit="none",
                stacked_bars=True,
                min_interval="5m",
                description="Probes recorded while the monitor's self-test error was above its threshold.",
            ),
        ])
        .row("Long range")
        .panels(5, [
            uptime_bar(
                "Uptime, last 90 days",
                f'min(last_over_time(llm_endpoint_uptime_ratio{{{SEL_ONE},window="24h"}}[1d]))',
                "uptime",
                description="One cell per day: that day's uptime, red below 99 %, orange below 99.9 %.",
            ),
        ])
        .panels(8, [
            timeseries(
                "Uptime by window (long range)",
                [target(f'min by (window) (llm_endpoint_uptime_ratio{{{SEL_ONE},window=~"7d|30d|90d"}})', "{{window}}")],
                unit="percentunit",
                time_from="365d",
            ),
            timeseries(
                "Median TTFT by window (long range)",
                [target(f'max by (window) (llm_endpoint_ttft_p50_seconds{{{SEL_ONE},window=~"7d|30d|90d"}})', "{{window}}")],
                unit="s",
                time_from="365d",
            ),
        ])
    )
    return board


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "llm-endpoints-overview.json": overview,
    "llm-endpoint-detail.json": endpoint_detail,
}


def render(builder: Callable[[], db.Dashboard]) -> str:
    return json.dumps(builder().build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else DASHBOARDS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, builder in DASHBOARDS.items():
        (out_dir / filename).write_text(render(builder), encoding="utf-8")
        print(f"wrote {out_dir / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
