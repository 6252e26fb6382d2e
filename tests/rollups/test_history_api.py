"""`/history` and `/slo` through the real app over a real store: UTC buckets oldest first with
empty ones present, figures equal to a direct computation, filters, caching, and a 422 naming the
parameter for every bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.app import create_app
from monitor.probes.base import ErrorKind
from monitor.rollups import DAY, HOUR, RollupRules, slo_report
from monitor.settings import Settings
from monitor.store import InMemoryStore, Store, open_store
from tests.rollups.conftest import MODEL, T0, direct, generated_history, merged_by_bucket, probe

BASE = f"/v1/models/{MODEL}/endpoints"


class _Live:
    def providers(self, model_id: str):
        return ("Cloudflare", "Groq") if model_id == MODEL else None


def client_for(store: Store) -> httpx.AsyncClient:
    async def ready() -> dict:
        return {}

    app = create_app(settings=Settings(cache_max_age_s=60), store=store, live=_Live(),
                     registry=CollectorRegistry(), readiness=ready)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_history_buckets_and_figures(store: Store) -> None:
    rows = generated_history(seed=11, hours=30)
    await store.insert_results(rows)
    await store.rollup(RollupRules())
    reference = merged_by_bucket(direct(rows, HOUR), MODEL, "Groq")
    async with client_for(store) as client:
        # 05:30 at +05:00 is 00:30 UTC on T0 - 1 day; the bucket holding it starts at 00:00 UTC.
        response = await client.get(f"{BASE}/Groq/history", params={
            "from": "2026-08-31T05:30:00+05:00", "to": "2026-09-02T00:00:01Z", "step": "1h"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=60"
        body = response.json()
        assert body["from"] == "2026-08-31T00:00:00Z" and body["step"] == "1h"
        data = body["data"]
        assert len(data) == 49  # 00:00 on T0 - 1 day ... 00:00 on T0 + 1 day (holds `to`)
        assert [item["t"] for item in data[:2]] == ["2026-08-31T00:00:00Z", "2026-08-31T01:00:00Z"]
        assert all(item["samples"] == 0 and item["uptime"] is None and item["ttft_ms_p50"] is None
                   for item in data[:24])  # before the first probe: present, empty
        for item in data:
            t = datetime.fromisoformat(item["t"])
            bucket = reference.get(t)
            if bucket is None:
                assert item["samples"] == 0
                continue
            assert item["samples"] == bucket.samples and item["ok"] == bucket.counts["ok"]
            assert item["failed"] == bucket.failed and item["rate_limited"] == bucket.counts["rate_limited"]
            assert item["uptime"] == bucket.uptime
            assert item["ttft_ms_p50"] == bucket.ttft_ms(0.5) and item["ttft_ms_p95"] == bucket.ttft_ms(0.95)
            assert item["throughput_tps_p50"] == bucket.throughput_tps(0.5)
            assert item["ttft_samples"] == sum(bucket.ttft_bins.values())
        shown = [b for t, b in reference.items() if t <= T0 + timedelta(days=1)]
        assert sum(item["samples"] for item in data) == sum(b.samples for b in shown) > 0
        # 304 for a current copy
        again = await client.get(str(response.request.url), headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        # one location / one profile
        eu = (await client.get(f"{BASE}/Groq/history", params={
            "from": "2026-09-01T00:00:00Z", "to": "2026-09-02T00:00:00Z", "step": "1d", "location": "eu-west",
            "input_tokens": 1000})).json()["data"]
        day = merged_by_bucket(direct(rows, DAY), MODEL, "Groq", location="eu-west", input_tokens=1000)[T0]
        assert len(eu) == 1 and eu[0]["samples"] == day.samples and eu[0]["ttft_ms_p5"] == day.ttft_ms(0.05)
        nowhere = (await client.get(f"{BASE}/Groq/history", params={
            "from": "2026-09-01T00:00:00Z", "to": "2026-09-02T00:00:00Z", "location": "mars"})).json()["data"]
        assert len(nowhere) == 24 and all(item["samples"] == 0 for item in nowhere)


async def test_history_defaults() -> None:
    async with client_for(InMemoryStore()) as client:
        daily = (await client.get(f"{BASE}/Groq/history", params={"step": "1d"})).json()
        assert len(daily["data"]) in (90, 91)  # 90 days back from now, floored to midnight
        hourly = (await client.get(f"{BASE}/Groq/history")).json()
        assert hourly["step"] == "1h" and len(hourly["data"]) in (24, 25)


@pytest.mark.parametrize(("params", "parameter"), [
    ({"step": "2h"}, "step"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"from": "2026-09-02T00:00:00Z", "to": "2026-09-01T00:00:00Z"}, "from"),
    ({"from": "2026-01-01T00:00:00Z", "to": "2026-06-01T00:00:00Z", "step": "1h"}, "from"),
    ({"from": "2000-01-01T00:00:00Z", "to": "2026-06-01T00:00:00Z", "step": "1d"}, "from"),
    ({"location": "EU West"}, "location"),
    ({"input_tokens": "0"}, "input_tokens"),
])
async def test_history_bad_values_name_the_parameter(params: dict, parameter: str) -> None:
    async with client_for(InMemoryStore()) as client:
        response = await client.get(f"{BASE}/Groq/history", params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", parameter]]


async def test_unknown_endpoints_and_a_database_outage() -> None:
    store = InMemoryStore()
    async with client_for(store) as client:
        for path in (f"/v1/models/nope/endpoints/Groq/history", f"{BASE}/Nope/history", f"{BASE}/Nope/slo"):
            response = await client.get(path)
            assert response.status_code == 404 and "unknown" in response.json()["detail"]
        store.make_unavailable()
        response = await client.get(f"{BASE}/Groq/history")
        assert response.status_code == 503 and response.headers["retry-after"]


async def test_slo_report(store: Store) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(days=6)
    rows = generated_history(seed=12, hours=24 * 5, start=start)
    rows += [(MODEL, "Groq", probe(now - timedelta(days=20), ok=False, error_kind=ErrorKind.TIMEOUT))]  # outside 7d
    await store.insert_results(rows)
    await store.rollup(RollupRules())
    async with client_for(store) as client:
        body = (await client.get(f"{BASE}/Groq/slo", params={"objective": "0.95", "period": "7d"})).json()
        month = (await client.get(f"{BASE}/Groq/slo")).json()
    counts: dict[str, int] = {}
    for bucket in merged_by_bucket(direct(rows[:-1], HOUR), MODEL, "Groq").values():
        for name, value in bucket.counts.items():
            counts[name] = counts.get(name, 0) + value
    expected = slo_report(counts, objective=0.95, period_s=7 * DAY)
    assert body["objective"] == 0.95 and body["period_s"] == 7 * DAY
    assert (body["good"], body["bad"]) == (expected.good, expected.bad) and expected.bad > 0
    assert body["excluded"] == expected.excluded and expected.excluded["rate_limited"] > 0
    assert body["availability"] == pytest.approx(expected.availability)
    assert body["error_budget_remaining"] == pytest.approx(expected.error_budget_remaining)
    assert month["objective"] == 0.99 and month["period_s"] == 30 * DAY and month["bad"] == expected.bad + 1


@pytest.mark.parametrize(("params", "parameter"), [
    ({"objective": "1"}, "objective"), ({"objective": "0"}, "objective"), ({"objective": "nan"}, "objective"),
    ({"period": "soon"}, "period"), ({"period": "10m"}, "period"), ({"period": "4000d"}, "period"),
])
async def test_slo_bad_values_name_the_parameter(params: dict, parameter: str) -> None:
    async with client_for(InMemoryStore()) as client:
        response = await client.get(f"{BASE}/Groq/slo", params=params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", parameter]]


async def test_db_prune_command(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'monitor.db'}"
    now = datetime.now(UTC)
    store = await open_store(database)
    await store.insert_results([(MODEL, "Groq", probe(now - timedelta(days=200 - day))) for day in range(3)]
                               + [(MODEL, "Groq", probe(now))])
    await store.close()
    config = tmp_path / "endpoints.yaml"
    config.write_text(f"""
models:
  - id: {MODEL}
    name: Llama
    endpoints:
      - {{provider: Groq, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: b}}
""")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "llm_monitor", "db", "prune", "--db", database, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "rolled up 4 new probes"
    assert lines[1].startswith("removed 3 raw probes started before ")
    assert lines[2].startswith("removed 0 hourly roll-ups before ")
    bad = subprocess.run([sys.executable, "-m", "llm_monitor", "db", "prune", "--db", database, "--config",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "missing.yaml" in bad.stderr
