"""The running process stays responsive whatever operators and clients throw at it.

Each test runs `python -m monitor run` as a real subprocess: a config reload of a huge file is
read off the event loop; /metrics is rendered off the loop and shared between concurrent
scrapers; connections that never finish their request head are closed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.e2e.conftest import MODEL, config_for, wait_until
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response

HEALTH_DEADLINE_S = 1.0


def bulk_config(models: int, provider_url: str) -> str:
    """A large config (one model per 150 bytes) whose very last entry is invalid, so it is
    rejected only after the whole file has been parsed and validated."""
    lines = ["defaults: {interval: 30m, timeout: 10s, max_tokens: 16}", "models:"]
    for i in range(models + 1):
        lines.append(
            f"  - id: bulk/model-{i % models:06d}\n    name: Bulk model {i}\n    endpoints:\n"
            f"      - {{provider: P, protocol: openai, base_url: '{provider_url}/v1', model: x}}"
        )
    return "\n".join(lines) + "\n"


def test_reloading_a_huge_config_does_not_stall_the_process_and_keeps_the_running_config(
    start_service, provider, tmp_path
):
    service = start_service(config_for(("A", provider.url)))
    models = 5000
    (tmp_path / "endpoints.yaml").write_text(bulk_config(models, provider.url))

    service.proc.send_signal(signal.SIGHUP)
    answered = 0
    with httpx.Client(base_url=service.base_url, timeout=HEALTH_DEADLINE_S) as client:
        deadline = time.monotonic() + 120
        while "reload rejected" not in service.log():
            assert time.monotonic() < deadline, "the reload never finished"
            # A read timeout here means the event loop was blocked for longer than the deadline.
            assert client.get("/healthz").status_code == 200
            answered += 1
            time.sleep(0.05)
    assert answered >= 5, "the reload finished before the process was ever asked: the test proved nothing"

    rejection = [line for line in service.log().splitlines() if "reload rejected" in line]
    assert len(rejection) == 1 and f"models[{models}].id: duplicate model id" in rejection[0]
    live = service.get(f"/v1/models/{MODEL}/live").json()
    assert live["available_via"] == ["A"] and live["total_endpoints"] == 1
    assert service.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert service.stop() == 0


@pytest.fixture
def slow_provider():
    """An OpenAI-style server whose streams last about 0.6 s, so every probe spans many loop turns."""
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        server.route(
            "POST", "/v1/chat/completions",
            lambda _r: sse_stream_response(openai_stream(ttft_s=0.2, gap_s=0.02, n_tokens=20)),
        )
        yield server


def many_series_config(provider_url: str, *, models: int, per_model: int = 3) -> str:
    """MODEL probed every second on `provider_url`, plus models * per_model endpoints whose key
    is unset: each is probed once at start (config_error, no network call) and then registers
    its full set of series, so /metrics carries thousands of endpoints."""
    lines = [
        "defaults: {interval: 1h, timeout: 10s, max_tokens: 16}",
        "models:",
        f"  - id: {MODEL}\n    name: One\n    endpoints:",
        f"      - {{provider: A, protocol: openai, base_url: '{provider_url}/v1', model: x, interval: 1s}}",
    ]
    for i in range(models):
        lines.append(f"  - id: bulk/model-with-a-long-catalog-identifier-{i:05d}\n    name: Bulk {i}\n    endpoints:")
        for p in range(per_model):
            lines.append(
                f"      - {{provider: Provider{p}, protocol: openai, base_url: 'http://127.0.0.1:9/v1', "
                f"model: x, api_key_env: UNSET_TEST_KEY_{p}}}"
            )
    return "\n".join(lines) + "\n"


def test_concurrent_scrapers_of_a_large_exposition_do_not_stall_probes(start_service, slow_provider, tmp_path):
    bulk_models, scrapers, storm_s = 400, 4, 8.0
    service = start_service(
        many_series_config(slow_provider.url, models=bulk_models), interval=None,
        env={"LLM_MONITOR_METRICS_CACHE_S": "1"},  # re-render often: the storm sees many renderings
    )
    wait_until(
        lambda: httpx.get(service.base_url + "/metrics", timeout=30).text.count("llm_endpoint_misconfigured{") >= 3 * bulk_models,
        timeout_s=60, what="every bulk endpoint's series on /metrics",
    )

    durations: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def scrape() -> None:
        # Prometheus-like: gzip accepted, one scrape after the other, as fast as they come.
        with httpx.Client(base_url=service.base_url, timeout=60) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
                    assert response.status_code == 200 and "llm_endpoint_up{" in response.text
                except BaseException as exc:  # reported by the main thread
                    failures.append(exc)
                    return
                durations.append(time.monotonic() - started)

    storm_start = datetime.now(timezone.utc)
    threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    time.sleep(storm_s)
    storm_end = datetime.now(timezone.utc)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures

    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    history = service.get(f"/v1/models/{MODEL}/endpoints/A/probes", params={"limit": 100}).json()["data"]
    during = [
        p for p in history
        if storm_start <= parse(p["started_at"]) and parse(p["started_at"]) + timedelta(seconds=p["total_s"]) <= storm_end
    ]
    render_s = max(durations)
    assert render_s >= 0.2, f"the exposition renders in {render_s:.3f} s: too small to tell anything"
    assert len(during) >= 3, f"only {len(during)} probes ran during the scrapes"
    assert [p["error_kind"] for p in during] == [None] * len(during)
    worst_lag = max(p["loop_lag_s"] for p in during)
    # Rendered on the loop, every scrape would stall it for a whole rendering (more when scrapes
    # queue up): the probes' loop lag would be at least `render_s`.
    assert worst_lag < render_s / 4, (worst_lag, render_s, len(durations))
    assert service.stop() == 0


async def slowloris(host: str, port: int, *, give_up_s: float, after_one_request: bool = False) -> float | None:
    """Open a connection (optionally complete one request on it first, keep-alive), then send a
    request head one byte every 0.1 s without ever ending it. Returns how long the server kept
    the connection open, or None if it still was after `give_up_s`."""
    opened = time.monotonic()  # before connecting: the server cannot have started its clock earlier
    reader, writer = await asyncio.open_connection(host, port)
    if after_one_request:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1])
        await reader.readexactly(length)  # the server re-armed its deadline after `opened`
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.1)
            writer.write(b"a")
            await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        try:
            data = await asyncio.wait_for(reader.read(1), timeout=give_up_s)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            return None
        assert data == b"", f"the server answered an unfinished request head: {data!r}"
        return time.monotonic() - opened
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()


async def test_slowloris_connections_are_closed_at_the_header_deadline_while_others_are_served(
    start_service, provider, tmp_path
):
    header_timeout_s, connections = 1.0, 200
    service = start_service(
        config_for(("A", provider.url)), env={"LLM_MONITOR_HTTP_HEADER_TIMEOUT_S": str(header_timeout_s)}
    )
    port = int(service.base_url.rsplit(":", 1)[1])
    attackers = [
        asyncio.create_task(slowloris("127.0.0.1", port, give_up_s=header_timeout_s + 5, after_one_request=i % 2 == 1))
        for i in range(connections)
    ]
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
        answers = [(await client.get("/healthz")).status_code for _ in range(5)]
        live = await client.get(f"/v1/models/{MODEL}/live")
    held = await asyncio.gather(*attackers)

    assert answers == [200] * 5 and live.status_code == 200
    still_open = sum(1 for seconds in held if seconds is None)
    assert still_open == 0, f"{still_open} of {connections} slowloris connections still open after the deadline"
    # Closed at the deadline, not before it (the deadline is the setting, not an accident).
    assert min(held) >= header_timeout_s * 0.9
    assert service.stop() == 0
