"""Provider faults at service level: healthy endpoints keep their cadence, memory stays bounded,
every fault is stored with its error kind.

One healthy endpoint shares the service with endpoints that stall, reset, send garbage, never
end, and stream far past the byte cap; all are probed every second.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until
from monitor.testing.stream_server import (
    Frame,
    StreamServer,
    json_response,
    openai_chunk,
    openai_stream,
    sse_event,
    sse_stream_response,
)

MODEL = "faults/model"
TOKEN = sse_event(openai_chunk({"content": "x"}))

FAULTS = {
    # provider: (response, expected error_kind)
    "Stall": (lambda: sse_stream_response([Frame(0.0, TOKEN, token=True), Frame(60.0, TOKEN)]), "timeout"),
    "Reset": (lambda: sse_stream_response([Frame(0.0, TOKEN, token=True)], end="reset"), "stream_error"),
    "Garbage": (lambda: sse_stream_response([Frame(0.0, b"data: {this is not json\n\n")]), "stream_error"),
    "NeverEnds": (lambda: sse_stream_response([Frame(0.0, TOKEN, token=True)], end="hang"), "timeout"),
    # 6 MiB of tokens against the 4 MiB cap on stream bytes.
    "Huge": (lambda: sse_stream_response([Frame(0.0, TOKEN * 20_000, token=True)] * 3), "stream_error"),
}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def servers():
    with StreamServer() as healthy, StreamServer() as faulty:
        for server in (healthy, faulty):
            server.route("GET", "/v1/models", json_response(200, {"data": []}))
        healthy.route("POST", "/v1/chat/completions",
                      lambda _r: sse_stream_response(openai_stream(ttft_s=0.02, gap_s=0.005, n_tokens=8)))
        for name, (make, _) in FAULTS.items():
            faulty.route("GET", f"/{name}/v1/models", json_response(200, {"data": []}))
            faulty.route("POST", f"/{name}/v1/chat/completions", lambda _r, make=make: make())
        yield healthy, faulty


def test_faulty_providers_do_not_hold_up_healthy_ones(start_service, servers):
    healthy, faulty = servers
    endpoints = [f"      - {{provider: Healthy, protocol: openai, base_url: '{healthy.url}/v1', model: x}}"]
    endpoints += [
        f"      - {{provider: {name}, protocol: openai, base_url: '{faulty.url}/{name}/v1', model: x}}"
        for name in FAULTS
    ]
    config = "defaults: {timeout: 3s}\nmodels:\n  - id: " + MODEL + "\n    name: F\n    endpoints:\n" + "\n".join(endpoints) + "\n"
    service = start_service(config)

    def every_fault_stored():
        live = service.get(f"/v1/models/{MODEL}/live").json()
        kinds = {e["provider"]: e["last_error_kind"] for e in live["endpoints"]}
        return all(kinds.get(name) == kind for name, (_, kind) in FAULTS.items())

    wait_until(every_fault_stored, timeout_s=30, what="every fault stored with its error kind")
    rss_start = rss_mib(service.proc.pid)
    before = len(healthy.requests_to("/v1/chat/completions"))
    time.sleep(8)
    after = len(healthy.requests_to("/v1/chat/completions"))
    # Interval 1 s (+ up to 10 % jitter): about 7-8 probes in 8 s, whatever the others do.
    assert after - before >= 6, f"healthy endpoint probed only {after - before} times in 8 s"
    stamps = [r.received_ns for r in healthy.requests_to("/v1/chat/completions")][before:after]
    gaps = [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 1.6, gaps  # no head-of-line blocking behind a 3 s timeout
    assert rss_mib(service.proc.pid) - rss_start < 40  # the byte cap keeps memory bounded

    for name, (_, kind) in FAULTS.items():
        stored = service.get(f"/v1/models/{MODEL}/endpoints/{name}/probes").json()["data"]
        assert stored and all(p["error_kind"] == kind for p in stored), (name, stored[:1])
        assert all(p["total_s"] <= 3.5 for p in stored), name  # each within its limit
    live = service.get(f"/v1/models/{MODEL}/live").json()
    assert live["active_endpoints"] == 1 and live["total_endpoints"] == 6
    assert service.stop() == 0
