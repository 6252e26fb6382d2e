"""A REAL Prometheus scraping a REAL `llm-monitor run` that probes loopback servers.

Endpoints (all OpenAI protocol, on one loopback `StreamServer` plus a closed port):
- `test/mixed`: `Healthy` (a clean stream) and `Broken` (HTTP 500): 1/2 active;
- `test/all-down`: `Closed` (nothing listens: connect_error) and `Throttled` (HTTP 429): 0/2;
- `test/keyless`: `Keyless`, whose API key variable is unset (config_error, no network call): 0/1.

Prometheus runs our committed rules with test-time values (1 s scrape and evaluation, the
5-minute group interval of the slow group dropped so it evaluates every second too) and the
committed scrape config's jobs pointed at the monitor. Then every PromQL expression of the
dashboards and rule files (`iter_promql_expressions()`) is sent to `/api/v1/query` with the
Grafana variables filled in: each must parse, and must return series unless listed in
EXPECTED_EMPTY / MAY_BE_EMPTY below (with the reason). Finally `LLMEndpointDown` must reach
`firing` for the failing endpoints only (not for the misconfigured one, which
`LLMEndpointMisconfigured` reports), and `LLMModelDown` must be held `pending` by its `for:` for
test/all-down only (a model whose only endpoint lacks its key never pages).

The `prometheus` binary comes from the Debian package; when it is missing the test FAILS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import yaml

from tests.observability.support import (
    PROMETHEUS_DIR,
    REPO,
    RULE_FILES,
    PromQLExpression,
    free_port,
    iter_promql_expressions,
    load_yaml,
    require_binary,
    run_tool,
    substitute_grafana_variables,
)
from monitor.testing.stream_server import (
    StreamServer,
    json_response,
    openai_stream,
    sse_stream_response,
    unused_port,
)

pytestmark = pytest.mark.timeout(120)

MIXED, ALL_DOWN, KEYLESS = "test/mixed", "test/all-down", "test/keyless"
# The Keyless endpoint's key variable; removed from the monitor's environment (and its _FILE).
UNSET_KEY_ENV = "LLM_ENDPOINT_MONITOR_TEST_UNSET_KEY"

# Expressions that MUST be empty while the monitor is healthy, and why. Asserting emptiness
# (rather than skipping them) shows that these alerts do not fire on a working stack.
EXPECTED_EMPTY = {
    "LLMMonitorDown": "the monitor job is scraped and up",
    "LLMMonitorAPIDown": "the API job (same process here) is scraped and up",
    "LLMMonitorDatabaseWritesFailing": "SQLite writes succeed, nothing waits in the buffer",
    "LLMMonitorDroppedResults": "the write buffer never overflows",
    "LLMMonitorLocationImpaired": "the one location probes a healthy endpoint too, so it is not failing for every endpoint",
    "LLMMonitorSchedulerLagging": "probes start on time: nothing queues for a concurrency slot, and a skipped run adds only the 1 s interval",
}
# Expressions that may legitimately be empty, and why; they must still parse and evaluate.
MAY_BE_EMPTY = {
    "LLMEndpointProbesStale": "probes land every second; only a >2.5 s scheduler stall on a busy machine would make it non-empty",
    "LLMEndpointTTFTRegression": "the healthy server's TTFT is steady; a CPU hiccup on a busy machine could double one probe's TTFT",
    "LLMMonitorOverloaded": "five endpoints finish well within their 1 s interval; only a >1 s event-loop stall on a busy machine would misfire a run",
    "LLMEndpointAnswerCheckFailing": "the ratio series exists only once the live figures carry answer_ok_ratio; the test servers do not count, so then it holds (still pending under its 1h `for:`)",
    "LLMMonitorSelfTestErrorHigh": "the self-test's error is well within 50 ms on an idle machine; a busy one may push a reading over it",
    "Suspect probes [A]": "only probes recorded while the self-test error is above its threshold count, none on an idle machine",
    "Tool-call checks [A]": "no endpoint of this stack opts into the tool-call canary (tests/canary covers it over sockets)",
}

# Grafana variables: the overview uses multi-select (=~) with "All" = ".*"; the endpoint detail
# dashboard is evaluated once per endpoint, and each panel must show data for at least one.
OVERVIEW_VARIABLES = [{"model": ".*", "provider": ".*"}]
DETAIL_VARIABLES = [
    {"model": MIXED, "provider": "Healthy"},
    {"model": MIXED, "provider": "Broken"},
    {"model": ALL_DOWN, "provider": "Throttled"},
]
TIME_VARIABLES = {"__interval": "5s", "__rate_interval": "4s", "__range": "5m"}


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, what: str, diagnostics: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last_error = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error!r})\n{diagnostics()}")


def monitor_config(server_url: str, closed_port: int) -> str:
    # Priced endpoints (the seed model's price) for the cost panels; Closed has no price.
    endpoint = ("      - {{provider: {p}, protocol: openai, base_url: '{url}', model: test-model,"
                " price: {{input_per_mtok: 0.027, output_per_mtok: 0.201}}}}")
    unpriced = "      - {{provider: {p}, protocol: openai, base_url: '{url}', model: test-model}}"
    keyless = "      - {{provider: Keyless, protocol: openai, base_url: '{url}', model: test-model, api_key_env: {env}}}"
    return "\n".join(
        [
            "defaults: {interval: 30m, timeout: 5s, max_tokens: 16}",
            "models:",
            f"  - id: {MIXED}",
            "    endpoints:",
            endpoint.format(p="Healthy", url=f"{server_url}/healthy/v1"),
            endpoint.format(p="Broken", url=f"{server_url}/broken/v1"),
            f"  - id: {ALL_DOWN}",
            "    endpoints:",
            unpriced.format(p="Closed", url=f"http://127.0.0.1:{closed_port}/v1"),
            endpoint.format(p="Throttled", url=f"{server_url}/throttled/v1"),
            f"  - id: {KEYLESS}",
            "    endpoints:",
            keyless.format(url=f"{server_url}/healthy/v1", env=UNSET_KEY_ENV),
            "",
        ]
    )


def prometheus_config(monitor_target: str, rules_path: Path) -> dict:
    """The committed prometheus.yml with test-time values: same llm jobs and relabelling,
    targets pointed at the monitor under test, 1 s intervals, no Alertmanager."""
    committed = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = []
    for job in committed["scrape_configs"]:
        if job["job_name"] not in ("llm-monitor", "llm-monitor-api"):
            continue
        job = {k: v for k, v in job.items() if not k.endswith("sd_configs") and k != "static_configs"}
        job["static_configs"] = [{"targets": [monitor_target]}]
        jobs.append(job)
    assert {j["job_name"] for j in jobs} == {"llm-monitor", "llm-monitor-api"}
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": jobs,
    }


def rules_with_test_time_values() -> dict:
    """All committed rule groups, every group evaluated at the global 1 s interval."""
    groups = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            group = dict(group)
            group.pop("interval", None)
            groups.append(group)
    return {"groups": groups}


def _start(cmd: list[str], log_path: Path, **kw: Any) -> subprocess.Popen:
    log = log_path.open("w")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
    finally:
        log.close()  # the child holds its own descriptor


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def provider_server() -> Iterator[StreamServer]:
    with StreamServer() as server:
        for name in ("healthy", "broken", "throttled"):
            server.route("GET", f"/{name}/v1/models", json_response(200, {"data": []}))
        server.route(
            "POST",
            "/healthy/v1/chat/completions",
            lambda _request: sse_stream_response(openai_stream(ttft_s=0.05, gap_s=0.005, n_tokens=8)),
        )
        server.route("POST", "/broken/v1/chat/completions", json_response(500, {"error": {"message": "upstream exploded"}}))
        server.route(
            "POST",
            "/throttled/v1/chat/completions",
            json_response(429, {"error": {"message": "slow down"}}, headers={"retry-after": "30"}),
        )
        yield server


@pytest.fixture
def monitor(tmp_path: Path, provider_server: StreamServer) -> Iterator[tuple[str, Path]]:
    """`python -m monitor run` probing every second; yields (host:port, log path)."""
    config = tmp_path / "endpoints.yaml"
    config.write_text(monitor_config(provider_server.url, unused_port()))
    port = free_port()
    log_path = tmp_path / "monitor.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_MONITOR_", UNSET_KEY_ENV)) and k != "DATABASE_URL"
    }
    env["LLM_MONITOR_SHUTDOWN_GRACE_S"] = "2"
    # The long-range series (from the roll-ups) exist once probes are stored and rolled up.
    env["LLM_MONITOR_WINDOW_METRICS_S"] = "1"
    env["LLM_MONITOR_ROLLUP_INTERVAL_S"] = "1"
    proc = _start(
        [
            sys.executable, "-m", "monitor", "run",
            "--config", str(config),
            "--db", f"sqlite:///{tmp_path / 'm.db'}",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--interval", "1",
        ],
        log_path,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")},
    )
    target = f"127.0.0.1:{port}"
    try:
        def metrics_served() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"llm-monitor run exited with {proc.returncode}:\n{log_path.read_text()}")
            response = httpx.get(f"http://{target}/metrics", timeout=2)
            return response.status_code == 200 and "llm_probes_total" in response.text

        wait_until(metrics_served, timeout_s=30, what="llm-monitor run to serve /metrics", diagnostics=log_path.read_text)
        yield target, log_path
    finally:
        _stop(proc)


@pytest.fixture
def prometheus(tmp_path: Path, monitor: tuple[str, Path]) -> Iterator[str]:
    binary = require_binary("prometheus")
    target, _ = monitor
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(rules_with_test_time_values(), sort_keys=False))
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(target, rules_path), sort_keys=False))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    proc = _start(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}:\n{log_path.read_text()}")
            return httpx.get(base + "/-/ready", timeout=1).status_code == 200

        wait_until(ready, timeout_s=30, what="prometheus to be ready", diagnostics=log_path.read_text)
        yield base
    finally:
        _stop(proc)


def query(base: str, expr: str) -> dict:
    response = httpx.get(base + "/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}\n-> {body}"
    return body["data"]


def has_series(data: dict) -> bool:
    return data["resultType"] == "scalar" or bool(data["result"])


def variable_sets(expression: PromQLExpression) -> list[dict[str, str]]:
    if expression.source.endswith("llm-endpoint-detail.json"):
        sets = DETAIL_VARIABLES
    elif expression.source.endswith(".json"):
        sets = OVERVIEW_VARIABLES
    else:
        sets = [{}]  # rule expressions have no variables
    return [{**TIME_VARIABLES, **values} for values in sets]


def firing_alerts(base: str) -> list[dict]:
    return httpx.get(base + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]


def test_every_expression_evaluates_on_live_data_and_endpoint_down_fires(prometheus: str, monitor: tuple[str, Path]) -> None:
    base = prometheus
    _, monitor_log = monitor

    def diagnostics() -> str:
        targets = httpx.get(base + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets]
        return f"targets: {health}\nmonitor log (tail):\n{monitor_log.read_text()[-3000:]}"

    # Enough history for increase()/rate() windows: several probes per endpoint, seen by
    # several scrapes, and the recording rules evaluated on top of them.
    def enough_data() -> bool:
        ok = query(base, 'llm_probes_total{provider="Healthy",outcome="ok"} >= 3')["result"]
        broken = query(base, 'llm_endpoint_consecutive_failures{provider="Broken"} >= 2')["result"]
        throttled = query(base, 'llm_probes_total{provider="Throttled",outcome="rate_limited"} >= 3')["result"]
        closed = query(base, 'llm_probes_total{provider="Closed",outcome="connect_error"} >= 2')["result"]
        # Repeated config_error probes, which would page if they counted as the endpoint being down
        # (they do not even count as failures in a row).
        keyless = query(base, 'llm_probes_total{provider="Keyless",outcome="config_error"} >= 2'
                              ' and on(model, provider) llm_endpoint_consecutive_failures{provider="Keyless"} == 0')["result"]
        ratio = query(base, 'llm:endpoint_success_ratio:1h{provider="Healthy"} > 0')["result"]
        return bool(ok and broken and throttled and closed and keyless and ratio)

    wait_until(enough_data, timeout_s=45, what="probe results in Prometheus", diagnostics=diagnostics)

    # LLMEndpointDown fires for the failing endpoints (no `for:`), never for the healthy one,
    # the throttled one (rate-limited probes are not failures) or the keyless one (a missing
    # credential is a warning: LLMEndpointMisconfigured, no `for:` either).
    def endpoint_down_firing() -> set[tuple[str, str]]:
        return {
            (a["labels"]["model"], a["labels"]["provider"])
            for a in firing_alerts(base)
            if a["labels"]["alertname"] == "LLMEndpointDown" and a["state"] == "firing"
        }

    firing = wait_until(
        lambda: endpoint_down_firing() >= {(MIXED, "Broken"), (ALL_DOWN, "Closed")},
        timeout_s=20, what="LLMEndpointDown firing for Broken and Closed", diagnostics=diagnostics,
    ) and endpoint_down_firing()
    assert firing == {(MIXED, "Broken"), (ALL_DOWN, "Closed")}

    def misconfigured_firing() -> set[tuple[str, str]]:
        return {
            (a["labels"]["model"], a["labels"]["provider"])
            for a in firing_alerts(base)
            if a["labels"]["alertname"] == "LLMEndpointMisconfigured" and a["state"] == "firing"
        }

    wait_until(
        lambda: misconfigured_firing() == {(KEYLESS, "Keyless")},
        timeout_s=10, what="LLMEndpointMisconfigured firing for Keyless only", diagnostics=lambda: str(firing_alerts(base)),
    )

    # Conditions that hold but must wait for their `for:`: 0/2 active for test/all-down only
    # (LLMModelDown, 35m; test/keyless is 0/1 too, but only for want of its key) and every probe
    # of Throttled rate limited (LLMEndpointRateLimited, 1h).
    def pending() -> set[tuple[str, str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"]["model"], a["labels"].get("provider", ""))
            for a in firing_alerts(base)
            if a["labels"]["alertname"] in ("LLMModelDown", "LLMEndpointRateLimited")
        }

    expected_pending = {("LLMModelDown", ALL_DOWN, ""), ("LLMEndpointRateLimited", ALL_DOWN, "Throttled")}
    wait_until(lambda: pending() == expected_pending, timeout_s=10, what=f"pending alerts {expected_pending}", diagnostics=lambda: str(firing_alerts(base)))
    states = {a["state"] for a in firing_alerts(base) if a["labels"]["alertname"] in ("LLMModelDown", "LLMEndpointRateLimited")}
    assert states == {"pending"}

    # Every expression of the dashboards and rule files, against the live data.
    expressions = list(iter_promql_expressions())
    names = {e.name for e in expressions}
    assert set(EXPECTED_EMPTY) | set(MAY_BE_EMPTY) <= names, "allow-lists name expressions that no longer exist"
    empty_but_required: list[str] = []
    non_empty_but_expected_empty: list[str] = []
    evaluated = 0
    for expression in expressions:
        results = []
        for values in variable_sets(expression):
            expr = substitute_grafana_variables(expression.expr, values)
            assert "$" not in expr, f"unsubstituted variable in {expression.source} {expression.name}: {expr}"
            results.append(has_series(query(base, expr)))  # query() asserts it parses and evaluates
            evaluated += 1
        label = f"{expression.source} :: {expression.name} :: {expression.expr}"
        if expression.name in EXPECTED_EMPTY:
            if any(results):
                non_empty_but_expected_empty.append(label)
        elif (
            expression.name not in MAY_BE_EMPTY
            and not any(results)
        ):
            empty_but_required.append(label)

    assert not empty_but_required, "expressions without data on a live stack:\n" + "\n".join(empty_but_required)
    assert not non_empty_but_expected_empty, "alerts whose condition holds on a healthy monitor:\n" + "\n".join(
        non_empty_but_expected_empty
    )
    assert evaluated >= len(expressions)


def test_live_metrics_exposition_passes_promtool_lint(monitor: tuple[str, Path]) -> None:
    """The whole /metrics of a running monitor (not only build_metrics' part) lints clean."""
    promtool = require_binary("promtool")
    target, _ = monitor

    def exposition_with_probes() -> str:
        text = httpx.get(f"http://{target}/metrics", timeout=5).text
        # An ok probe (histogram buckets, latest-ok gauges) and failures in a row are exposed.
        failing = re.search(r'llm_endpoint_consecutive_failures\{model="test/mixed",provider="Broken"\} ([0-9.]+)', text)
        seen = "llm_probe_ttft_seconds_bucket{" in text and "llm_endpoint_probe_phase_seconds{" in text
        return text if seen and failing and float(failing.group(1)) >= 1 else ""

    exposition = wait_until(exposition_with_probes, timeout_s=20, what="probe results on /metrics")
    result = run_tool([promtool, "check", "metrics"], stdin=exposition)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"
