"""`llm-monitor demo`: simulated providers plus the whole service, on a machine with no keys.

Runs the real command with its bundled catalog and its default database (a temporary SQLite
file), and checks that each simulated behaviour shows up as the figure it is meant to show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from monitor.testing.demo_providers import answer_words, is_flaky_down
from monitor.testing.stream_server import ServedRequest, unused_port
from tests.e2e.conftest import REPO, Service, wait_until

LLAMA = "meta-llama/llama-3.2-1b-instruct"


@pytest.fixture
def demo(tmp_path: Path):
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_MONITOR_", "DEMO_"))}
    env["PYTHONPATH"] = str(REPO)
    env["TMPDIR"] = str(tmp_path)  # where the demo's own database goes
    env["LLM_MONITOR_SHUTDOWN_GRACE_S"] = "3"
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--port", str(port), "--interval", "4", "--flaky-period", "18"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    service = Service(proc, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited with {proc.returncode}:\n{service.log()}")
        return service.get("/healthz").status_code == 200

    wait_until(ready, timeout_s=30, what="the demo to answer /healthz")
    yield service
    if proc.poll() is None:
        service.stop()


def endpoints(service: Service, model: str) -> dict[str, dict]:
    live = service.get(f"/v1/models/{model}/live").json()
    return {e["provider"]: e for e in live["endpoints"]}


def test_every_behaviour_shows_as_its_figure(demo: Service, tmp_path: Path):
    def filled() -> dict | None:
        llama = endpoints(demo, LLAMA)
        flaky = [p.json() for p in [demo.get(f"/v1/models/{LLAMA}/endpoints/FlakyAI (simulated)/probes")]][0]["data"]
        outcomes = {item["error_kind"] for item in flaky}
        if (llama["Cloudflare (simulated)"]["ttft_ms_p50"] is None or llama["SlowCloud (simulated)"]["ttft_ms_p50"] is None
                or not {None, "http_error"} <= outcomes):
            return None
        return llama

    llama = wait_until(filled, timeout_s=45, what="the flaky provider to have failed and succeeded")
    healthy, slow = llama["Cloudflare (simulated)"], llama["SlowCloud (simulated)"]
    assert healthy["active"] and healthy["uptime"] == 1.0 and healthy["last_error_kind"] is None
    # The simulated delays are lower bounds of what a probe can measure.
    assert healthy["ttft_ms_p50"] >= 150 and slow["ttft_ms_p50"] >= 1500
    assert slow["active"] and slow["uptime"] == 1.0
    assert slow["state"] == "degraded" and "TTFT" in slow["state_reason"]
    assert healthy["state"] == "up" and healthy["answer_ok_ratio"] == 1.0  # it answers the count right

    mistral = endpoints(demo, "mistralai/mistral-7b-instruct")
    assert mistral["Throttled (simulated)"]["last_error_kind"] == "rate_limited"
    assert mistral["Cloudflare (simulated)"]["active"]
    gone = endpoints(demo, "qwen/qwen-2.5-7b-instruct")["Gone (simulated)"]
    assert gone["last_error_kind"] == "connect_error" and not gone["active"]

    # The down provider and the flaky one (its 6 s outages, 2 s confirmations) open incidents.
    def incidents() -> set[str] | None:
        providers = {i["provider"] for i in demo.get("/v1/incidents").json()["data"]}
        return providers if {"Gone (simulated)", "FlakyAI (simulated)"} <= providers else None

    wait_until(incidents, timeout_s=45, what="incidents for the down and the flaky provider")

    metrics = demo.get("/metrics").text
    assert 'llm_endpoint_up{model="qwen/qwen-2.5-7b-instruct",provider="Gone (simulated)"} 0.0' in metrics
    # No provider key was needed, and none is reported missing.
    assert "config_error" not in demo.get("/v1/models").text

    databases = list(tmp_path.glob("llm-monitor-demo-*/demo.db"))
    assert len(databases) == 1  # its own scratch database, not ./data/monitor.db
    assert not (tmp_path / "data").exists()
    assert demo.stop() == 0
    assert not list(tmp_path.glob("llm-monitor-demo-*")), "the scratch database is removed at exit"


def test_refuses_a_bad_flaky_period():
    result = subprocess.run([sys.executable, "-m", "monitor", "demo", "--flaky-period", "0"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert result.returncode == 2 and "--flaky-period: must be between 1 and 86400 seconds" in result.stderr


def _request(prompt: str, **body) -> ServedRequest:
    return ServedRequest(method="POST", path="/", query={}, headers={}, body=b"",
                         json={"messages": [{"role": "user", "content": prompt}], **body}, received_ns=0)


def test_simulated_answers_count_to_the_number_asked_for():
    assert "".join(answer_words(_request("Count from 1 to 5, separated by commas."))) == "1, 2, 3, 4, 5."
    assert len(answer_words(_request("Say something."))) == 40
    assert len(answer_words(_request("Count to 100000"))) == 40  # absurd counts are not honoured


@pytest.mark.parametrize(("now", "down"), [(0.0, False), (5.9, False), (6.0, True), (8.9, True), (9.0, False)])
def test_the_flaky_provider_fails_for_the_last_third_of_its_cycle(now, down):
    assert is_flaky_down(now, 9.0) is down


def test_flaky_outage_is_visible_on_the_wire():
    from monitor.testing.demo_providers import start_demo_providers

    clock = {"now": 0.0}
    server = start_demo_providers(flaky_period_s=9.0, clock=lambda: clock["now"])
    try:
        url = f"{server.url}/flaky/v1"
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Count from 1 to 3."}]}
        up = httpx.post(url + "/chat/completions", json=body, timeout=5)
        assert up.status_code == 200 and '"content": "3."' in up.text.replace('":"', '": "')
        clock["now"] = 7.0
        assert httpx.post(url + "/chat/completions", json=body, timeout=5).status_code == 503
        assert httpx.get(url + "/models", timeout=5).status_code == 503
        assert httpx.get(f"{server.url}/ratelimited/v1/models", timeout=5).status_code == 200
    finally:
        server.stop()
