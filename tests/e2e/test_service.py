"""`llm-monitor run` end to end: real subprocess, real sockets, real SQLite file.

Asserts the live figures against the loopback server's known timings, the probe history, the
/metrics values, graceful SIGTERM, and that figures and metrics are back after a restart before
any new probe lands.
"""

from __future__ import annotations

import re
import signal

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import GAP_S, TOKENS, TTFT_S, two_endpoint_config, wait_until

MODEL = "meta-llama/llama-3.2-1b-instruct"
LIVE = f"/v1/models/{MODEL}/live"


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_run_serves_live_figures_history_and_metrics_then_restores_them(start_service, provider_servers):
    healthy, failing = provider_servers
    config = two_endpoint_config(healthy.url, failing.url)
    service = start_service(config)

    def enough_samples():
        live = service.get(LIVE).json()
        counts = {e["provider"]: e["samples"] for e in live["endpoints"]}
        return live if counts.get("Healthy", 0) >= 3 and counts.get("Failing", 0) >= 2 else None

    live = wait_until(enough_samples, timeout_s=40, what="3 healthy and 2 failing probes")
    assert live["model"] == MODEL
    assert live["total_endpoints"] == 2
    assert live["active_endpoints"] == 1
    assert live["available_via"] == ["Healthy", "Failing"]
    assert live["window_s"] == 86400
    # Ground truth: 60 ms to the first token, then 10 ms per token.
    assert abs(live["best_ttft_ms"] - TTFT_S * 1000) < 15, live
    assert abs(live["best_throughput_tps"] - 1 / GAP_S) / (1 / GAP_S) < 0.05, live
    endpoints = {e["provider"]: e for e in live["endpoints"]}
    assert endpoints["Healthy"]["active"] is True
    assert endpoints["Healthy"]["uptime"] == 1.0
    assert endpoints["Healthy"]["last_error_kind"] is None
    assert endpoints["Failing"]["active"] is False
    assert endpoints["Failing"]["uptime"] == 0.0
    assert endpoints["Failing"]["last_error_kind"] == "http_error"
    assert endpoints["Failing"]["ttft_ms_p50"] is None

    listing = service.get("/v1/models").json()
    assert [m["id"] for m in listing["data"]] == [MODEL]
    assert listing["data"][0]["name"] == "Meta: Llama 3.2 1B Instruct"

    history = service.get(f"/v1/models/{MODEL}/endpoints/Healthy/probes", params={"limit": 2}).json()["data"]
    assert len(history) == 2
    assert history[0]["started_at"] > history[1]["started_at"]  # newest first
    newest = history[0]
    assert newest["ok"] is True and newest["error_kind"] is None
    assert newest["output_tokens"] == TOKENS and newest["token_count_source"] == "usage"
    assert abs(newest["ttft_s"] - TTFT_S) < 0.015
    failed = service.get(f"/v1/models/{MODEL}/endpoints/Failing/probes").json()["data"][0]
    assert failed["ok"] is False and failed["error_kind"] == "http_error" and failed["http_status"] == 500

    metrics = service.get("/metrics").text
    assert metric_value(metrics, "llm_endpoint_up", model=MODEL, provider="Healthy") == 1
    assert metric_value(metrics, "llm_endpoint_up", model=MODEL, provider="Failing") == 0
    assert metric_value(metrics, "llm_model_active_endpoints", model=MODEL) == 1
    assert metric_value(metrics, "llm_model_endpoints", model=MODEL) == 2
    assert metric_value(metrics, "llm_probes_total", model=MODEL, provider="Failing", outcome="http_error") >= 2
    assert abs(metric_value(metrics, "llm_endpoint_ttft_seconds", model=MODEL, provider="Healthy") - TTFT_S) < 0.015
    assert abs(metric_value(metrics, "llm_model_best_ttft_seconds", model=MODEL) - live["best_ttft_ms"] / 1000) < 0.02

    assert service.get("/readyz").status_code == 200
    assert service.stop(signal.SIGTERM) == 0

    before = {e["provider"]: e for e in live["endpoints"]}  # figures shortly before the stop
    stored = len(_all_probes(service, "Healthy"))

    # Restart with a long interval: the next probe is an interval away, so whatever the API and
    # /metrics show right after start-up came from the database.
    requests_before = len(healthy.requests_to("/v1/chat/completions"))
    restarted = start_service(config, interval="300")
    live_after = restarted.get(LIVE).json()
    after = {e["provider"]: e for e in live_after["endpoints"]}
    assert after["Healthy"]["samples"] == stored
    assert after["Healthy"]["samples"] >= before["Healthy"]["samples"]
    assert after["Healthy"]["active"] is True
    assert live_after["best_ttft_ms"] is not None and abs(live_after["best_ttft_ms"] - TTFT_S * 1000) < 15
    metrics_after = restarted.get("/metrics").text
    assert metric_value(metrics_after, "llm_endpoint_up", model=MODEL, provider="Healthy") == 1
    assert metric_value(metrics_after, "llm_endpoint_ttft_seconds", model=MODEL, provider="Healthy") is not None
    assert metric_value(metrics_after, "llm_endpoint_last_probe_timestamp_seconds", model=MODEL, provider="Failing") > 0
    assert metric_value(metrics_after, "llm_endpoint_consecutive_failures", model=MODEL, provider="Failing") >= 2
    # No burst at start: nothing was probed by the restarted process yet.
    assert len(healthy.requests_to("/v1/chat/completions")) == requests_before
    assert restarted.stop() == 0


def _all_probes(service, provider: str) -> list[dict]:
    # The stopped service's database is read through the restarted one in the test above; here
    # we read the stored rows straight from SQLite to know what was saved before the restart.
    import sqlite3

    db = service.log_path.parent / "monitor.db"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        table = next(t for t in tables if t.startswith("probe"))
        return conn.execute(f"select * from {table} where provider = ?", (provider,)).fetchall()


def test_bundled_config_runs_without_credentials_and_reports_config_error(start_service):
    from pathlib import Path

    bundled = (Path(__file__).resolve().parents[2] / "config" / "endpoints.yaml").read_text()
    # The bundled 30-minute interval, as `make run` starts it: an endpoint that can only fail with
    # config_error is probed at once instead of somewhere in the first half hour.
    service = start_service(bundled, env={"CLOUDFLARE_API_TOKEN": None, "CLOUDFLARE_ACCOUNT_ID": None},
                            interval=None)

    def probed():
        live = service.get(LIVE).json()
        return live if live["endpoints"][0]["samples"] >= 1 else None

    live = wait_until(probed, timeout_s=20, what="the first probe of the bundled endpoint")
    assert live["active_endpoints"] == 0 and live["total_endpoints"] == 1
    assert live["available_via"] == ["Cloudflare"]
    assert live["endpoints"][0]["last_error_kind"] == "config_error"
    assert live["best_ttft_ms"] is None
    assert re.search(r"CLOUDFLARE_(API_TOKEN|ACCOUNT_ID)", service.log())
    assert service.stop() == 0


def test_an_endpoint_that_stops_answering_goes_inactive_two_intervals_after_its_last_probe(
    start_service, provider_servers
):
    from datetime import datetime, timezone

    from monitor.testing.stream_server import ScriptedResponse

    healthy, _ = provider_servers
    # One endpoint only: no other probe of the model lands to recompute its figures by chance.
    config = two_endpoint_config(healthy.url, "http://unused").split("      - provider: Failing")[0]
    service = start_service(config)  # --interval 1

    def healthy_endpoint():
        return next(e for e in service.get(LIVE).json()["endpoints"] if e["provider"] == "Healthy")

    wait_until(lambda: healthy_endpoint()["active"], timeout_s=20, what="the healthy endpoint to be active")
    # From now on the server holds every request without answering (the probe's timeout is 10 s),
    # so no probe of this endpoint lands and only time can end its activity.
    healthy.route("POST", "/v1/chat/completions", ScriptedResponse(end="hang"))

    def lapsed():
        endpoint = healthy_endpoint()
        return None if endpoint["active"] else (datetime.now(timezone.utc), endpoint)

    seen_at, endpoint = wait_until(lapsed, timeout_s=20, what="the healthy endpoint to go inactive")
    last_probe_at = datetime.fromisoformat(endpoint["last_probe_at"].replace("Z", "+00:00"))
    assert endpoint["last_error_kind"] is None  # nothing new landed: time alone ended it
    # Contract: active while the latest probe is at most 2 intervals (2 s) old. Polled every 0.1 s.
    assert 2.0 <= (seen_at - last_probe_at).total_seconds() <= 3.0
    metrics = service.get("/metrics").text
    assert metric_value(metrics, "llm_endpoint_up", model=MODEL, provider="Healthy") == 0.0
