"""Real `llm-monitor` processes on one PostgreSQL database (their own `inc_` database):

- location-specific failure: two probing processes, each with its own environment, so that
  `${INC_PROVIDER_PORT}` in every endpoint's base_url points location `b` at a dead port. No
  incident opens, the state is `regional` (metrics of both processes, and the live figures of an
  API-only process reading the database), location `b` is impaired (the warning's metric) while
  the page's metric (`llm_endpoint_incident_open`) stays 0;
- restart mid-incident: the endpoint fails, the incident opens, the process is SIGKILLed and
  started again: the same incident is still the only one, and it resolves at the first success.
"""

from __future__ import annotations

import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response, unused_port
from tests.e2e.conftest import provider, start_service, wait_until  # noqa: F401 (fixtures)
from tests.outage.incidents_support import pg_url  # noqa: F401 (fixture)

MODEL = "m/one"


def config(base_url: str, *providers: str) -> str:
    endpoints = "\n".join(
        f"      - {{provider: {name}, protocol: openai, base_url: '{base_url}', model: x}}" for name in providers
    )
    return f"""
defaults: {{interval: 30m, timeout: 5s, max_tokens: 16}}
models:
  - id: {MODEL}
    name: One
    endpoints:
{endpoints}
"""


def metrics(service) -> dict[tuple[str, tuple], float]:
    values = {}
    for family in text_string_to_metric_families(service.get("/metrics").text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values, name: str, **labels: str) -> float | None:
    return values.get((name, tuple(sorted(labels.items()))))


def test_location_specific_failure_is_regional_and_warns_without_a_page(start_service, provider, pg_url) -> None:
    text = config("http://127.0.0.1:${INC_PROVIDER_PORT}/v1", "P1", "P2")
    a = start_service(text, "--location", "a", db=pg_url, env={"INC_PROVIDER_PORT": str(provider.port)})
    b = start_service(text, "--location", "b", db=pg_url, env={"INC_PROVIDER_PORT": str(unused_port())})
    api = start_service(text, db=pg_url, command="api", env={"LLM_MONITOR_LIVE_REFRESH_S": "0.5"})

    def settled():
        both = [metrics(a), metrics(b)]
        return all(
            value(v, "llm_location_impaired", location="b") == 1
            and all(value(v, "llm_endpoint_state", model=MODEL, provider=p, state="regional") == 1 for p in ("P1", "P2"))
            for v in both
        ) and both

    for values in wait_until(settled, timeout_s=40, what="both processes to see b failing and impaired"):
        assert value(values, "llm_location_impaired", location="a") == 0
        for p in ("P1", "P2"):
            ep = {"model": MODEL, "provider": p}
            assert value(values, "llm_endpoint_incident_open", **ep) == 0  # the page stays silent
            assert value(values, "llm_endpoint_state", state="down", **ep) == 0
            assert value(values, "llm_location_endpoint_up", location="a", **ep) == 1
            assert value(values, "llm_location_endpoint_up", location="b", **ep) == 0

    def api_regional():
        live = api.get(f"/v1/models/{MODEL}/live").json()
        return all(e["state"] == "regional" for e in live["endpoints"]) and live

    live = wait_until(api_regional, timeout_s=30, what="the API replica to show the endpoints regional")
    for endpoint in live["endpoints"]:
        assert endpoint["active"] is True and endpoint["open_incident"] is None
        views = {view["location"]: view for view in endpoint["locations"]}
        assert views["a"]["active"] is True and views["b"]["active"] is False
        assert views["b"]["failing"] is True and views["b"]["last_error_kind"] == "connect_error"
        assert "(impaired)" in endpoint["state_reason"]
    assert live["active_endpoints"] == 2
    # Still no incident after many more failed probes from b, seen from every process.
    wait_until(lambda: value(metrics(b), "llm_probes_total", model=MODEL, provider="P1", outcome="connect_error") >= 8,
               timeout_s=30, what="b to fail repeatedly")
    for service in (a, b, api):
        assert service.get("/v1/incidents").json() == {"data": []}


def test_restart_mid_incident_resumes_it_and_resolves_once(start_service, provider, pg_url) -> None:
    healthy = {"on": False}

    def chat(_request):
        if healthy["on"]:
            return sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=4))
        return json_response(503, {"error": {"message": "overloaded"}})

    with StreamServer() as flaky:
        flaky.route("GET", "/v1/models", json_response(200, {"data": []}))
        flaky.route("POST", "/v1/chat/completions", chat)
        # "Steady" keeps the one location from looking impaired (not every endpoint fails).
        text = config(f"{flaky.url}/v1", "P1") + f"      - {{provider: Steady, protocol: openai, base_url: '{provider.url}/v1', model: x}}\n"
        env = {"LLM_MONITOR_INCIDENT_SWEEP_S": "1"}
        service = start_service(text, db=pg_url, env=env)

        def opened():
            return [i for i in service.get("/v1/incidents?open=true").json()["data"] if i["provider"] == "P1"]

        [incident] = wait_until(opened, timeout_s=30, what="the incident to open")
        assert incident["error_kinds"].get("http_error", 0) >= 2 and incident["locations"] == ["local"]
        service.stop(signal.SIGKILL)

        again = start_service(text, db=pg_url, env=env)

        def live_incident():
            live = again.get(f"/v1/models/{MODEL}/live").json()
            [p1] = [e for e in live["endpoints"] if e["provider"] == "P1"]
            return p1["state"] == "down" and p1["open_incident"]

        resumed = wait_until(live_incident, timeout_s=30, what="the restarted process to show the open incident")
        assert resumed["id"] == incident["id"]
        wait_until(lambda: value(metrics(again), "llm_endpoint_incident_open", model=MODEL, provider="P1") == 1,
                   timeout_s=20, what="the page metric after the restart")
        assert [i["id"] for i in again.get("/v1/incidents?provider=P1").json()["data"]] == [incident["id"]]
        assert value(metrics(again), "llm_endpoint_incident_open", model=MODEL, provider="Steady") == 0

        healthy["on"] = True

        def resolved():
            [only] = again.get("/v1/incidents?provider=P1").json()["data"]
            return only["resolved_at"] and only

        closed = wait_until(resolved, timeout_s=30, what="the incident to resolve")
        assert closed["id"] == incident["id"] and closed["resolved_at"] > incident["detected_at"]
        assert again.get("/v1/incidents?provider=P1&open=true").json()["data"] == []
        wait_until(lambda: value(metrics(again), "llm_endpoint_incident_open", model=MODEL, provider="P1") == 0,
                   timeout_s=20, what="the page metric to clear")
