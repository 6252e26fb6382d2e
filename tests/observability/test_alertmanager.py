"""alertmanager/alertmanager.yml: amtool's checks, and a real Alertmanager on loopback that must
route pages and warnings to their receivers and apply the inhibitions (model-down mutes its
endpoint-down alerts; monitor-down mutes everything else).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from tests.observability.support import (
    ALERTMANAGER_CONFIG,
    free_port,
    load_yaml,
    require_binary,
    run_tool,
)


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool")


def test_amtool_check_config(amtool: str) -> None:
    result = run_tool([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=LLMEndpointDown", "model=m"], "pager"),
        (["severity=warning", "alertname=LLMEndpointRateLimited", "model=m"], "team-warnings"),
        (["alertname=SomethingUnlabelled"], "team-warnings"),
    ],
)
def test_routing_by_severity(amtool: str, labels: list[str], receiver: str) -> None:
    result = run_tool([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alerts_are_grouped_by_model() -> None:
    assert load_yaml(ALERTMANAGER_CONFIG)["route"]["group_by"] == ["model"]


# --------------------------------------------------------------------------- live Alertmanager
class _Webhook:
    """Loopback webhook receiver recording (path, payload) of every notification."""

    def __init__(self) -> None:
        received: list[tuple[str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alertnames(self, path: str) -> set[tuple[str, str]]:
        return {
            (alert["labels"]["alertname"], alert["labels"].get("model", ""))
            for p, payload in list(self.received) if p == path
            for alert in payload["alerts"] if alert["status"] == "firing"
        }

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def live_alertmanager(tmp_path: Path) -> Iterator[tuple[str, _Webhook]]:
    binary = require_binary("alertmanager", "prometheus-alertmanager")
    webhook = _Webhook()
    config = load_yaml(ALERTMANAGER_CONFIG)
    # Same routes, groups and inhibitions; only the receivers' URLs point at our webhook, and
    # the waits shrink from minutes to a second so the test sees notifications at once.
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook.url + "/" + receiver["name"]
    config["route"]["group_wait"] = "1s"
    config["route"]["group_interval"] = "1s"
    for route in config["route"]["routes"]:
        route.pop("group_interval", None)
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(base + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"alertmanager did not start:\n{(tmp_path / 'alertmanager.log').read_text()}")
            time.sleep(0.1)
        yield base, webhook
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        webhook.close()


def _alert(alertname: str, severity: str, **labels: str) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": alertname, "severity": severity, **labels},
        "annotations": {"summary": alertname},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def _statuses(base: str) -> dict[tuple[str, str, str], list[str]]:
    """(alertname, model, provider) -> inhibitedBy fingerprints."""
    alerts = httpx.get(base + "/api/v2/alerts", timeout=5).json()
    return {
        (a["labels"]["alertname"], a["labels"].get("model", ""), a["labels"].get("provider", "")): a["status"]["inhibitedBy"]
        for a in alerts
    }


def _wait_for(predicate, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_live_routing_and_inhibition(live_alertmanager: tuple[str, _Webhook]) -> None:
    base, webhook = live_alertmanager
    alerts = [
        _alert("LLMModelDown", "page", model="org/a"),
        _alert("LLMEndpointDown", "page", model="org/a", provider="P1"),
        _alert("LLMEndpointDown", "page", model="org/a", provider="P2"),
        _alert("LLMEndpointDown", "page", model="org/b", provider="P1"),
        _alert("LLMEndpointRateLimited", "warning", model="org/b", provider="P2"),
    ]
    assert httpx.post(base + "/api/v2/alerts", json=alerts, timeout=5).status_code == 200

    statuses = _wait_for(lambda: len(_statuses(base)) == 5 and _statuses(base), "5 alerts in Alertmanager")
    # Model down mutes ITS endpoints only (equal: [model]); the other model's alert goes out.
    assert statuses[("LLMEndpointDown", "org/a", "P1")]
    assert statuses[("LLMEndpointDown", "org/a", "P2")]
    assert statuses[("LLMEndpointDown", "org/b", "P1")] == []
    assert statuses[("LLMModelDown", "org/a", "")] == []
    assert statuses[("LLMEndpointRateLimited", "org/b", "P2")] == []

    # Pages reach the pager, warnings the team channel; inhibited alerts reach nobody.
    _wait_for(lambda: webhook.alertnames("/pager") >= {("LLMModelDown", "org/a"), ("LLMEndpointDown", "org/b")}, "pages")
    _wait_for(lambda: webhook.alertnames("/team-warnings") == {("LLMEndpointRateLimited", "org/b")}, "the warning")
    assert ("LLMEndpointDown", "org/a") not in webhook.alertnames("/pager")
    assert not any(name == "LLMEndpointRateLimited" for name, _ in webhook.alertnames("/pager"))

    # The monitor going down mutes every other alert, but not itself.
    monitor_down = _alert("LLMMonitorDown", "page", job="llm-monitor")
    assert httpx.post(base + "/api/v2/alerts", json=[monitor_down], timeout=5).status_code == 200
    statuses = _wait_for(lambda: len(_statuses(base)) == 6 and _statuses(base), "6 alerts in Alertmanager")
    assert statuses[("LLMMonitorDown", "", "")] == []
    others = {key: inhibited for key, inhibited in statuses.items() if key[0] != "LLMMonitorDown"}
    assert others and all(others.values()), others
