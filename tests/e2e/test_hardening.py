"""The running process stays responsive whatever operators and clients throw at it.

Each test runs `python -m monitor run` as a real subprocess: a config reload of a huge file is
read off the event loop; /metrics is rendered off the loop and shared between concurrent
scrapers; connections that never finish their request head are closed.
"""

from __future__ import annotations

import signal
import time

import httpx

from tests.e2e.conftest import wait_until
from tests.e2e.test_reliability import MODEL, config_for, provider  # noqa: F401  (fixture)

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
    start_service, provider, tmp_path  # noqa: F811
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
