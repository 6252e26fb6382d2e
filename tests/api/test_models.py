"""/v1/models routes: shapes, path handling of ids with '/', 404s, 422s, history from the store."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pytest

from monitor.probes.base import CONTRACT_FIELDS, ProbeResult
from monitor.store import StoreError, StoreUnavailableError
from tests.api.conftest import ALLOWED_ORIGIN, LLAMA, QWEN, probe_result

LIVE_KEYS = [
    "model", "best_ttft_ms", "best_throughput_tps", "active_endpoints", "total_endpoints",
    "available_via", "updated_at", "window_s", "endpoints",
]
ENDPOINT_KEYS = [
    "provider", "active", "last_probe_at", "last_error_kind", "ttft_ms_p50", "throughput_tps_p50",
    "uptime", "samples", "ok_samples", "ttft_ms_p5", "ttft_ms_p95", "ttft_ms_p50_ci", "throughput_tps_p50_ci",
    "uptime_ci", "answer_ok_ratio",
    "state", "state_reason", "locations", "open_incident", "maintenance",
]


async def test_model_list_has_every_model_in_catalog_order_with_live_figures(client, history_store):
    response = await client.get("/v1/models")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()["data"]
    assert [(m["id"], m["name"]) for m in data] == [(LLAMA, "Meta: Llama 3.2 1B Instruct"), (QWEN, "Qwen3 32B")]
    assert list(data[0]["live"]) == LIVE_KEYS
    assert data[0]["live"]["best_ttft_ms"] == 244.0
    assert data[1]["live"]["best_ttft_ms"] is None
    assert history_store.calls == []  # live figures come from memory


async def test_live_figures_exact_shape_and_values(client):
    response = await client.get(f"/v1/models/{LLAMA}/live")

    assert response.status_code == 200
    live = response.json()
    assert list(live) == LIVE_KEYS
    assert live == {
        "model": LLAMA,
        "best_ttft_ms": 244.0,
        "best_throughput_tps": 57.25,
        "active_endpoints": 1,
        "total_endpoints": 2,
        "available_via": ["Cloudflare", "Groq"],
        "updated_at": "2026-03-01T12:00:00Z",
        "window_s": 86400.0,
        "endpoints": [
            {
                "provider": "Cloudflare", "active": True, "last_probe_at": "2026-03-01T12:00:00Z",
                "last_error_kind": None, "ttft_ms_p50": 244.0, "throughput_tps_p50": 57.25,
                "uptime": 0.75, "samples": 4, "ok_samples": 3, "ttft_ms_p5": 200.5, "ttft_ms_p95": 290.25,
                "ttft_ms_p50_ci": None, "throughput_tps_p50_ci": None,
                "uptime_ci": [0.30064184258240184, 0.9544127391902995], "answer_ok_ratio": 1.0,
                "state": "unknown", "state_reason": None, "locations": [], "open_incident": None,
                "maintenance": None,
            },
            {
                "provider": "Groq", "active": False, "last_probe_at": "2026-03-01T10:00:00Z",
                "last_error_kind": "auth_error", "ttft_ms_p50": None, "throughput_tps_p50": None,
                "uptime": 0.0, "samples": 3, "ok_samples": 0, "ttft_ms_p5": None, "ttft_ms_p95": None,
                "ttft_ms_p50_ci": None, "throughput_tps_p50_ci": None, "uptime_ci": None, "answer_ok_ratio": None,
                "state": "unknown", "state_reason": None, "locations": [], "open_incident": None,
                "maintenance": None,
            },
        ],
    }
    assert [list(e) for e in live["endpoints"]] == [ENDPOINT_KEYS, ENDPOINT_KEYS]


async def test_live_figures_of_a_model_without_data_are_nulls_not_zeros(client):
    live = (await client.get(f"/v1/models/{QWEN}/live")).json()

    assert live["best_ttft_ms"] is None and live["best_throughput_tps"] is None
    assert live["updated_at"] is None
    assert live["active_endpoints"] == 0 and live["total_endpoints"] == 1
    assert live["endpoints"][0]["uptime"] is None and live["endpoints"][0]["samples"] == 0


async def test_percent_encoded_slash_in_model_id_works_too(client):
    response = await client.get(f"/v1/models/{quote(LLAMA, safe='')}/live")
    assert response.status_code == 200
    assert response.json()["model"] == LLAMA


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope/live",
        "/v1/models/meta-llama/nope/live",
        "/v1/models/meta-llama/live",  # a prefix of a real id is not that id
        f"/v1/models/{LLAMA}/extra/live",
    ],
)
async def test_unknown_model_is_404_with_json_detail(client, path):
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "unknown model" in response.json()["detail"]


async def test_probes_newest_first_with_default_limit_and_full_items(client, history_store):
    response = await client.get(f"/v1/models/{LLAMA}/endpoints/Cloudflare/probes")

    assert response.status_code == 200
    items = response.json()["data"]
    assert history_store.calls == [("recent_results", LLAMA, "Cloudflare", 50)]
    assert len(items) == 40
    started = [item["started_at"] for item in items]
    assert started == sorted(started, reverse=True)
    expected = probe_result(0).to_dict()
    assert items[0] == expected
    # Contract fields first, in contract order, then the audit record; nothing dropped.
    assert list(items[0]) == [f.name for f in dataclasses.fields(ProbeResult)]
    assert list(items[0])[: len(CONTRACT_FIELDS)] == list(CONTRACT_FIELDS)
    assert items[0]["started_at"] == "2026-03-01T12:00:00Z"
    failed = items[2]
    assert failed["ok"] is False and failed["error_kind"] == "timeout" and failed["ttft_s"] is None


async def test_probes_limit_is_passed_to_the_store(client, history_store):
    response = await client.get(f"/v1/models/{LLAMA}/endpoints/Cloudflare/probes", params={"limit": 3})

    assert response.status_code == 200
    assert len(response.json()["data"]) == 3
    assert history_store.calls == [("recent_results", LLAMA, "Cloudflare", 3)]


async def test_probes_of_a_known_endpoint_without_history_is_an_empty_list(client):
    response = await client.get(f"/v1/models/{LLAMA}/endpoints/Groq/probes?limit=1000")
    assert response.status_code == 200
    assert response.json() == {"data": []}


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/models/nope/endpoints/Cloudflare/probes", "unknown model"),
        (f"/v1/models/{LLAMA}/endpoints/Nope/probes", "unknown provider"),
        (f"/v1/models/{LLAMA}/endpoints/cloudflare/probes", "unknown provider"),  # names are exact
    ],
)
async def test_probes_of_unknown_model_or_provider_is_404(client, history_store, path, fragment):
    response = await client.get(path)
    assert response.status_code == 404
    assert fragment in response.json()["detail"]
    assert history_store.calls == []


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "100000", "2.5", ""])
async def test_bad_limit_is_422(client, history_store, limit):
    response = await client.get(f"/v1/models/{LLAMA}/endpoints/Cloudflare/probes?limit={limit}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
    assert history_store.calls == []


async def test_model_list_and_live_do_not_accept_post(client):
    assert (await client.post("/v1/models")).status_code == 405


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (StoreUnavailableError("database unavailable in recent_results: OperationalError: boom"), 503,
         "database unavailable"),
        (StoreError("database error in recent_results: DataError: bad"), 500, "internal error"),
    ],
)
async def test_history_while_the_database_is_down_is_a_retryable_503(client, history_store, error, status, detail):
    history_store.fail_reads = error
    response = await client.get(f"/v1/models/{LLAMA}/endpoints/Cloudflare/probes", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == status and response.json() == {"detail": detail}
    assert ("retry-after" in response.headers) is (status == 503)
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN  # a browser can read it
    assert "boom" not in response.text and "bad" not in response.text
    # The live figures do not need the database.
    assert (await client.get(f"/v1/models/{LLAMA}/live")).status_code == 200
