"""The real `llm-monitor run` process keeps roll-ups current on its own: its probes show up in
`/history` and `/slo` (rolled up by the service's background job), over real sockets."""

from __future__ import annotations

from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    provider_servers,
    start_service,
    two_endpoint_config,
    wait_until,
)

MODEL = "meta-llama/llama-3.2-1b-instruct"


def test_the_service_rolls_up_its_probes(start_service, provider_servers) -> None:  # noqa: F811
    healthy, failing = provider_servers
    service = start_service(
        two_endpoint_config(healthy.url, failing.url), env={"LLM_MONITOR_PRUNE_INTERVAL_S": "1"}, interval="1"
    )

    def rolled_up(provider: str, field: str) -> dict | None:
        data = service.get(f"/v1/models/{MODEL}/endpoints/{provider}/history?step=1d").json()["data"]
        days = [item for item in data if item["samples"]]  # today's bucket (two, around midnight)
        return days[-1] if sum(item[field] for item in days) >= 2 and days[-1][field] >= 1 else None

    healthy_day = wait_until(lambda: rolled_up("Healthy", "ok"), timeout_s=30, what="healthy probes in /history")
    assert healthy_day["failed"] == 0 and healthy_day["uptime"] == 1.0
    assert healthy_day["ttft_ms_p50"] is not None and healthy_day["ttft_samples"] >= 1
    failing_day = wait_until(lambda: rolled_up("Failing", "failed"), timeout_s=30, what="failed probes in /history")
    assert failing_day["ok"] == 0 and failing_day["uptime"] == 0.0
    slo = service.get(f"/v1/models/{MODEL}/endpoints/Failing/slo?period=1d").json()
    assert slo["good"] == 0 and slo["bad"] >= 2 and slo["availability"] == 0.0
    assert slo["error_budget_remaining"] < 0
