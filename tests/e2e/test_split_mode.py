"""Production split: one `llm-monitor scheduler` and an `llm-monitor api` replica share a database.

The replica never probes; it follows what the scheduler stores and serves the same live figures.
"""

from __future__ import annotations

from tests.e2e.conftest import two_endpoint_config, wait_until
from tests.e2e.test_service import metric_value

MODEL = "meta-llama/llama-3.2-1b-instruct"
LIVE = f"/v1/models/{MODEL}/live"


def test_api_replica_serves_what_the_scheduler_stores(start_service, provider_servers, tmp_path):
    healthy, failing = provider_servers
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = two_endpoint_config(healthy.url, failing.url)
    scheduler = start_service(config, command="scheduler", db=db)
    replica = start_service(config, command="api", db=db, interval=None,
                            env={"LLM_MONITOR_LIVE_REFRESH_S": "0.5"})

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
    replica_metrics = replica.get("/metrics").text
    assert metric_value(replica_metrics, "llm_endpoint_up", model=MODEL, provider="Healthy") is None
    assert metric_value(scheduler.get("/metrics").text, "llm_endpoint_up", model=MODEL, provider="Healthy") == 1

    # Both processes agree on the figures once the replica has caught up.
    def same_figures():
        a, b = scheduler.get(LIVE).json(), replica.get(LIVE).json()
        return a["endpoints"] == b["endpoints"] and a["best_ttft_ms"] == b["best_ttft_ms"]

    wait_until(same_figures, timeout_s=15, what="the replica to match the scheduler's figures")
    assert replica.stop() == 0
    assert scheduler.stop() == 0
    # A fresh replica loads the whole window at start-up.
    final = start_service(config, command="api", db=db, interval=None)
    reference = final.get(LIVE).json()
    assert reference["endpoints"][0]["samples"] >= live["endpoints"][0]["samples"] + 2
    assert final.stop() == 0
