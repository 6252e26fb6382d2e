"""Shared helpers of the observability tests: repo paths, the Prometheus/Alertmanager binaries,
and `iter_promql_expressions()`, which yields every PromQL expression of the rule files and the
Grafana dashboards (the integration test evaluates each one against a real Prometheus).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
PROMTOOL_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = REPO / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
RUNBOOKS = REPO / "docs" / "runbooks.md"

INSTALL_HINT = (
    "install the Debian packages the observability tests drive: "
    "`apt-get install -y prometheus prometheus-alertmanager docker-compose` (or `make deps`)"
)


def require_binary(*names: str) -> str:
    """Path of the first of `names` on PATH. FAILS (never skips) when none is: CI installs them."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' / '.join(names)} not found on PATH; {INSTALL_HINT}", pytrace=False)


def run_tool(args: list[str], *, cwd: Path | None = None, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def iter_rules() -> Iterator[tuple[Path, dict, dict]]:
    """(file, group, rule) for every rule of every rule file."""
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield path, group, rule


def iter_alert_rules() -> Iterator[dict]:
    return (rule for _, _, rule in iter_rules() if "alert" in rule)


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARD_FILES}


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))  # collapsed rows nest their panels


@dataclass(frozen=True)
class PromQLExpression:
    source: str  # "prometheus/rules/alerts.yml" or "grafana/dashboards/x.json"
    name: str  # rule name / "panel title [refId]" / "variable model"
    kind: str  # "record" | "alert" | "panel" | "variable"
    expr: str  # may hold Grafana variables ($model, $__interval, ...)


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S)


def variable_selector(query: str) -> str | None:
    """The series selector inside a `label_values(selector, label)` variable query, else None."""
    match = _LABEL_VALUES.match(query)
    return match.group("selector") if match else None


def iter_promql_expressions() -> Iterator[PromQLExpression]:
    """Every PromQL expression of the rule files and the dashboards, with where it comes from.

    Dashboard variables of the form `label_values(selector, label)` are Grafana functions, not
    PromQL: their `selector` part is yielded instead (it is what Grafana sends to Prometheus).
    """
    for path, _group, rule in iter_rules():
        kind = "alert" if "alert" in rule else "record"
        yield PromQLExpression(str(path.relative_to(REPO)), rule.get("alert") or rule["record"], kind, rule["expr"].strip())
    for path in DASHBOARD_FILES:
        board = json.loads(path.read_text(encoding="utf-8"))
        source = str(path.relative_to(REPO))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            selector = variable_selector(query)
            if selector is None:
                raise AssertionError(f"{source}: variable {variable['name']}: unsupported query {query!r}")
            yield PromQLExpression(source, f"variable {variable['name']}", "variable", selector)
        for panel in iter_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield PromQLExpression(source, f"{panel['title']} [{target['refId']}]", "panel", target["expr"])


def substitute_grafana_variables(expr: str, values: dict[str, str]) -> str:
    """Replace $name / ${name} by values[name] (longest names first, so $__range is not $__r...)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr
