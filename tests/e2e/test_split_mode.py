"""Production split: one `llm-monitor scheduler` and an `llm-monitor api` replica share a database.

The replica never probes; it follows what the scheduler stores and serves the same live figures.
"""

from __future__ import annotations

import re

from tests.e2e.conftest import two_endpoint_config, wait_until
from tests.e2e.test_service import metric_value

MODEL = "meta-llama/llama-3.2-1b-instruct"
LIVE = f"/v1/models/{MODEL}/live"


def test_api_replica_serves_what_the_scheduler_stores(start_service, provider_servers, tmp_path):
    healthy, failing = provider_servers
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = two_endpoint_config(healthy.url, failing.url)
    scheduler = start_service(config, command="scheduler", db=db)
    # The same --interval as the scheduler (1 s): the replica judges activity with it.
    replica = start_service(config, command="api", db=db, env={"LLM_MONITOR_LIVE_REFRESH_S": "0.5"})

    def replica_has(samples: int):
        live = replica.get(LIVE).json()
        healthy_samples = next(e["samples"] for e in live["endpoints"] if e["provider"] == "Healthy")
        return live if healthy_samples >= samples else None

    live = wait_until(lambda: replica_has(3), timeout_s=30, what="3 healthy probes seen by the replica")
    assert live["active_endpoints"] == 1 and live["total_endpoints"] == 2
    assert live["best_ttft_ms"] is not None
    # It keeps following: later probes show up too.
    wait_until(lambda: replica_has(live["endpoints"][0]["samples"] + 2), timeout_s=20, what="newer probes")

    # The replica only reads: no probes of its own, no admin hooks, no per-endpoint gauges.
    assert replica.get("/readyz").status_code == 200 and replica.get("/readyz").json()["scheduler"] is None
    # Each series has one source: the replica exports its own process metrics and nothing of
    # the scheduler's (no figure gauges, no scheduler health stuck at 0).
    replica_metrics, scheduler_metrics = replica.get("/metrics").text, scheduler.get("/metrics").text
    assert metric_value(replica_metrics, "llm_endpoint_up", model=MODEL, provider="Healthy") is None
    assert metric_value(scheduler_metrics, "llm_endpoint_up", model=MODEL, provider="Healthy") == 1
    assert not re.search(r"^llm_", replica_metrics, re.M)
    for text in (replica_metrics, scheduler_metrics):
        assert metric_value(text, "process_start_time_seconds") > 0
        assert metric_value(text, "python_info", implementation="CPython") == 1

    # Both processes agree on the figures once the replica has caught up.
    def same_figures():
        a, b = scheduler.get(LIVE).json(), replica.get(LIVE).json()
        return a["endpoints"] == b["endpoints"] and a["best_ttft_ms"] == b["best_ttft_ms"]

    wait_until(same_figures, timeout_s=15, what="the replica to match the scheduler's figures")
    assert replica.stop() == 0
    assert scheduler.stop() == 0
    # A fresh replica loads the whole window at start-up.
    final = start_service(config, command="api", db=db)
    reference = final.get(LIVE).json()
    assert reference["endpoints"][0]["samples"] >= live["endpoints"][0]["samples"] + 2
    # With the scheduler stopped and its 1 s interval, the endpoint lapses within 2 s.
    wait_until(lambda: final.get(LIVE).json()["active_endpoints"] == 0, timeout_s=10,
               what="the replica to see the healthy endpoint lapse")
    assert final.stop() == 0
