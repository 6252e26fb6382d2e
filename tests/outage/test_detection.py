"""Detection time, end to end: a real `llm-monitor run` process probing loopback providers at a
short cadence (probes every 12 s, liveness every 1 s, confirmations 1 s apart, 2 failures = down).

- Hard outage: the provider's port stops answering just after a scheduled probe. Liveness sees it
  and confirmation probes declare it down: the incident (`/v1/incidents`) opens on a run of
  confirmation probes only, so before the next scheduled probe came due.
- Inference-only outage: `/models` still answers, chat fails. The next scheduled probe fails and
  one confirmation opens the incident: one scheduled failure, not two.
- Both incidents resolve at their first success (`resolved_at` is its start): the hard outage at
  the confirmation probe that liveness starts when the port answers again, the inference-only one
  at the next scheduled probe.

No timing is asserted: what proves the detection path is which probes (trigger) made up the run.
"""

from __future__ import annotations

from datetime import datetime

from monitor.scheduler import job_id, spread_offset
from monitor.testing.stream_server import (
    ScriptedResponse, StreamServer, html_response, json_response, openai_stream, sse_stream_response,
    unused_port,
)
from tests.e2e.conftest import start_service, wait_until  # noqa: F401 (start_service: a fixture)

MODEL = "m/one"
INTERVAL_S = 12.0


def provider_name(prefix: str) -> str:
    """A provider name whose first scheduled probe comes 1.5-3.5 s after the start (the scheduler
    spreads first runs by a stable hash of the job id), so the test need not wait an interval."""
    for i in range(1000):
        name = f"{prefix}{i}"
        if 1.5 <= spread_offset(job_id(MODEL, name), INTERVAL_S) <= 3.5:
            return name
    raise AssertionError("no provider name with an early first probe")


def config(provider: str, base_url: str) -> str:
    return f"""
defaults:
  interval: {INTERVAL_S:g}s
  timeout: 3s
  max_tokens: 8
  liveness: {{interval: 1s}}
  confirm: {{interval: 1s, failures: 2}}
models:
  - id: {MODEL}
    name: One
    endpoints:
      - {{provider: {provider}, protocol: openai, base_url: '{base_url}/v1', model: x}}
"""


class Provider:
    def __init__(self, port: int = 0):
        self.server = StreamServer(port=port).start()
        self.chat_fails = False
        self.server.route("GET", "/v1/models", json_response(200, {"data": []}))
        self.server.route("POST", "/v1/chat/completions", self._chat)

    def _chat(self, _request) -> ScriptedResponse:
        if self.chat_fails:
            return html_response(500, "<html>inference is down</html>")
        return sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=4))


def probes(service, provider: str) -> list[dict]:
    """Stored probes of the endpoint, oldest first."""
    response = service.get(f"/v1/models/{MODEL}/endpoints/{provider}/probes?limit=200")
    response.raise_for_status()
    return list(reversed(response.json()["data"]))


def after(items: list[dict], probe: dict) -> list[dict]:
    return items[[p["started_at"] for p in items].index(probe["started_at"]) + 1:]


def metric(service, name: str, **labels: str) -> float | None:
    """The value of the one series of `name` with these labels on /metrics, or None."""
    for line in service.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def incidents(service, provider: str) -> list[dict]:
    response = service.get(f"/v1/incidents?model={MODEL}&provider={provider}")
    response.raise_for_status()
    return response.json()["data"]


def opened_incident(service, provider: str) -> dict:
    return wait_until(lambda: next(iter(incidents(service, provider)), None), timeout_s=30,
                      what="an incident to open")


def resolved_incident(service, provider: str) -> dict:
    return wait_until(
        lambda: next((i for i in incidents(service, provider) if i["resolved_at"] is not None), None),
        timeout_s=30, what="the incident to resolve",
    )


def first_scheduled_ok(service, provider: str) -> dict:
    return wait_until(
        lambda: next((p for p in probes(service, provider) if p["trigger"] == "scheduled" and p["ok"]), None),
        timeout_s=30, what="the first scheduled probe",
    )


def failing_run(service, provider: str, since: dict, length: int) -> list[dict]:
    def run():
        later = after(probes(service, provider), since)
        failed = [p for p in later if not p["ok"]]
        return later[:length] if len(failed) >= length else None
    return wait_until(run, timeout_s=30, what=f"{length} failed probes")


def first_ok_after(service, provider: str, since: dict) -> dict:
    return wait_until(
        lambda: next((p for p in after(probes(service, provider), since) if p["ok"]), None),
        timeout_s=30, what="a successful probe",
    )


def test_hard_outage_is_declared_down_by_liveness_and_confirmations(start_service):
    name = provider_name("Hard")
    provider = Provider()
    port = provider.server.port
    service = start_service(config(name, provider.server.url), interval=None)
    try:
        scheduled = first_scheduled_ok(service, name)
        provider.server.stop()  # the port stops answering just after a scheduled probe

        run = failing_run(service, name, scheduled, 2)
        assert [(p["trigger"], p["ok"], p["error_kind"]) for p in run] == [
            ("confirm", False, "connect_error"), ("confirm", False, "connect_error"),
        ]
        # The incident opens on the confirmations alone: no scheduled probe ran between the
        # outage and its detection, so it did not wait for the next one.
        incident = opened_incident(service, name)
        assert at(incident["started_at"]) == at(run[0]["started_at"])  # the first failed probe
        assert at(incident["detected_at"]) >= at(run[1]["started_at"])
        before_detection = [p for p in after(probes(service, name), scheduled)
                            if at(p["started_at"]) <= at(incident["detected_at"])]
        assert {p["trigger"] for p in before_detection} == {"confirm"}
        assert incident["error_kinds"] == {"connect_error": 2}
        assert metric(service, "llm_endpoint_consecutive_failures", model=MODEL, provider=name) >= 2
        assert metric(service, "llm_liveness_up", model=MODEL, provider=name) == 0
        assert metric(service, "llm_liveness_checks_total", model=MODEL, provider=name, outcome="connect_error") >= 1
        assert metric(service, "llm_confirm_probes_total", model=MODEL, provider=name, outcome="connect_error") == 2

        provider = Provider(port)  # the port answers again
        recovered = first_ok_after(service, name, run[-1])
        between = after(probes(service, name), run[-1])
        between = between[:between.index(recovered)]
        # Resolved at the first success: the confirmation that liveness started on recovery.
        assert recovered["trigger"] == "confirm"
        assert all(not p["ok"] for p in between)
        resolved = resolved_incident(service, name)
        assert resolved["id"] == incident["id"]
        assert at(resolved["resolved_at"]) == at(recovered["started_at"])
        wait_until(lambda: metric(service, "llm_endpoint_consecutive_failures", model=MODEL, provider=name) == 0,
                   timeout_s=10, what="the failure run to end")
    finally:
        provider.server.stop()
    assert "Traceback" not in service.log()


def test_inference_only_outage_is_declared_down_after_the_next_scheduled_probe(start_service):
    name = provider_name("Chat")
    provider = Provider()
    service = start_service(config(name, provider.server.url), interval=None)
    try:
        scheduled = first_scheduled_ok(service, name)
        provider.chat_fails = True  # /models keeps answering: liveness sees nothing

        run = failing_run(service, name, scheduled, 2)
        assert [(p["trigger"], p["ok"], p["error_kind"]) for p in run] == [
            ("scheduled", False, "http_error"), ("confirm", False, "http_error"),
        ]
        assert metric(service, "llm_liveness_up", model=MODEL, provider=name) == 1
        assert metric(service, "llm_endpoint_consecutive_failures", model=MODEL, provider=name) == 2
        # Open after one scheduled failure and one confirmation, not after two scheduled probes.
        incident = opened_incident(service, name)
        assert at(incident["started_at"]) == at(run[0]["started_at"])
        before_detection = [p for p in after(probes(service, name), scheduled)
                            if at(p["started_at"]) <= at(incident["detected_at"])]
        assert [p["trigger"] for p in before_detection] == ["scheduled", "confirm"]
        assert incident["error_kinds"] == {"http_error": 2}

        provider.chat_fails = False
        recovered = first_ok_after(service, name, run[-1])
        later = after(probes(service, name), run[-1])
        # Down means no more confirmations: the endpoint waits for its next scheduled probe,
        # and that first success ends the run.
        assert later[0] == recovered and recovered["trigger"] == "scheduled"
        resolved = resolved_incident(service, name)
        assert resolved["id"] == incident["id"]
        assert at(resolved["resolved_at"]) == at(recovered["started_at"])
        wait_until(lambda: metric(service, "llm_endpoint_consecutive_failures", model=MODEL, provider=name) == 0,
                   timeout_s=10, what="the failure run to end")
    finally:
        provider.server.stop()
    assert "Traceback" not in service.log()
