"""`?window=` and `?input_tokens=` on a real `llm-monitor run` over a socket, on a database that
already holds 20 days of probes; the long-range metrics on /metrics."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from monitor.probes.base import ErrorKind, ProbeResult, TokenCountSource, Trigger
from monitor.store import open_store
from tests.e2e.conftest import MODEL, config_for, provider, start_service, wait_until  # noqa: F401

HOUR = timedelta(hours=1)
# The longest interval the service accepts: no scheduled probe changes the figures mid-test.
IDLE_INTERVAL = "604800"


def probe(started_at: datetime, *, ok: bool = True, input_tokens: int = 100, trigger=Trigger.SCHEDULED) -> ProbeResult:
    return ProbeResult(
        ok=ok, error_kind=None if ok else ErrorKind.TIMEOUT, error=None if ok else "synthetic",
        http_status=200 if ok else None, started_at=started_at, ttft_s=0.2 if ok else None, connect_s=0.01,
        total_s=1.0, output_tokens=16 if ok else None, token_count_source=TokenCountSource.USAGE if ok else None,
        tokens_per_second=50.0 if ok else None, protocol="openai", model="x", token_chunks=8 if ok else 0,
        first_read_tokens=1 if ok else 0, trigger=trigger, input_tokens=input_tokens,
    )


async def seed(url: str, now: datetime) -> None:
    store = await open_store(url)
    rows = []
    for hours in range(1, 20 * 24, 6):  # every 6 h for 20 days: 80 probes, 4 in the last 24 h
        rows.append(("m/one", "P", probe(now - hours * HOUR, ok=hours % 5 != 1)))
    for hours in range(3, 20 * 24, 24):  # one 1000-token probe a day
        rows.append(("m/one", "P", probe(now - hours * HOUR, input_tokens=1000)))
    rows.append(("m/one", "P", probe(now - 2 * HOUR, ok=False, trigger=Trigger.CONFIRM)))
    await store.insert_results(rows)
    await store.close()


@pytest.fixture
def seeded(tmp_path, provider, start_service):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    asyncio.run(seed(url, datetime.now(timezone.utc)))
    return start_service(config_for(("P", provider.url)), db=url, interval=IDLE_INTERVAL)


def endpoint(body):
    return body["endpoints"][0]


def test_windows_and_profiles_over_a_socket(seeded):
    default = seeded.get(f"/v1/models/{MODEL}/live").json()
    assert default["window_s"] == 86400.0
    assert seeded.get(f"/v1/models/{MODEL}/live?window=24h").json() == default
    # 4 scheduled 100-token probes in the last day (one failed); the confirm probe is not counted.
    assert endpoint(default)["samples"] in (4, 5)  # 5 if the idle scheduler's first probe landed

    week = seeded.get(f"/v1/models/{MODEL}/live?window=7d").json()
    month = seeded.get(f"/v1/models/{MODEL}/live?window=30d").json()
    assert (week["window_s"], month["window_s"]) == (7 * 86400.0, 30 * 86400.0)
    assert endpoint(week)["samples"] >= 28 and endpoint(month)["samples"] >= 80
    assert endpoint(month)["ok_samples"] == endpoint(month)["samples"] - 16  # seeded failures: every 5th
    low, high = endpoint(month)["uptime_ci"]
    assert low < endpoint(month)["uptime"] < high
    assert endpoint(month)["ttft_ms_p50_ci"] == [200.0, 200.0]
    assert endpoint(month)["active"] == endpoint(default)["active"]

    thousand = seeded.get(f"/v1/models/{MODEL}/live?window=30d&input_tokens=1000").json()
    assert endpoint(thousand)["samples"] == 20 and endpoint(thousand)["uptime"] == 1.0
    listed = seeded.get("/v1/models?window=30d&input_tokens=1000").json()["data"]
    assert listed[0]["live"] == thousand


def test_bad_window_or_profile_is_422_naming_the_parameter(seeded):
    for query, name in (("window=3d", "window"), ("window=", "window"), ("input_tokens=5", "input_tokens"),
                        ("input_tokens=abc", "input_tokens")):
        for path in (f"/v1/models/{MODEL}/live", "/v1/models"):
            response = seeded.get(f"{path}?{query}")
            assert response.status_code == 422, (path, query)
            assert [e["loc"] for e in response.json()["detail"]] == [["query", name]]


def test_window_figures_revalidate_and_are_served_again_identically(seeded):
    path = f"/v1/models/{MODEL}/live?window=90d"
    first = seeded.get(path)  # computed by the route
    second = seeded.get(path)  # cached: the fast path's answer
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    assert seeded.get(path, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    other = seeded.get(f"/v1/models/{MODEL}/live?window=7d")
    assert other.headers["etag"] != first.headers["etag"]


def test_long_range_metrics(seeded):
    def series():
        text = seeded.get("/metrics").text
        return [line for line in text.splitlines() if line.startswith(("llm_endpoint_uptime_ratio{", "llm_endpoint_ttft_p50_seconds{"))]

    lines = wait_until(lambda: len(series()) >= 8 and series(), timeout_s=20, what="window metrics")
    windows = {line.split('window="')[1].split('"')[0] for line in lines}
    assert windows == {"24h", "7d", "30d", "90d"}
    # The long windows come from the daily roll-ups: the TTFT median is the sketch's (within its
    # 1 % relative accuracy of the probes' 0.2 s); uptime counts are exact: 64 of the 80 seeded
    # scheduled 100-token probes of 20 days are ok (every 5th failed).
    values = {(line.split("{")[0], line.split('window="')[1].split('"')[0]): float(line.rsplit(" ", 1)[1])
              for line in lines}
    assert values[("llm_endpoint_ttft_p50_seconds", "30d")] == pytest.approx(0.2, rel=0.01)
    assert values[("llm_endpoint_uptime_ratio", "30d")] == pytest.approx(64 / 80)
    assert values[("llm_endpoint_uptime_ratio", "90d")] == values[("llm_endpoint_uptime_ratio", "30d")]
