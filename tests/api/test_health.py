"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import LLAMA


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_ready_returns_the_checks(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    # buffered_results == 0 is information, not a failed check.
    assert response.json() == {"database": True, "scheduler": True, "buffered_results": 0}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_none_means_not_applicable(client, readiness_state):
    readiness_state["scheduler"] = None  # API-only process
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["scheduler"] is None


@pytest.mark.parametrize("failing", ["database", "scheduler"])
async def test_readyz_503_when_a_check_fails(client, readiness_state, failing):
    readiness_state[failing] = False
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()[failing] is False


async def test_readyz_503_when_the_check_itself_raises(client, readiness_state):
    readiness_state["raise"] = ConnectionError("db at 10.0.0.5 refused")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"readiness": False}
    assert "10.0.0.5" not in response.text


async def test_metrics_exposes_the_injected_registry(client):
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    up = {s.labels["provider"]: s.value for s in families["llm_endpoint_up"].samples}
    assert up == {"Cloudflare": 1.0, "Groq": 0.0}
    ok = [s for s in families["llm_probes"].samples if s.name == "llm_probes_total"]
    assert [(s.labels, s.value) for s in ok] == [
        ({"model": LLAMA, "provider": "Cloudflare", "outcome": "ok"}, 1.0)
    ]
    info = families["llm_monitor_info"].samples[0]
    assert info.labels["version"] == "1.2.3"


async def test_metrics_negotiates_openmetrics(client):
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
