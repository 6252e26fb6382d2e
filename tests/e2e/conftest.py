"""Fixtures for end-to-end tests: `llm-monitor run` as a real subprocess against loopback servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from monitor.testing.stream_server import (
    ScriptedResponse,
    StreamServer,
    html_response,
    json_response,
    openai_stream,
    sse_stream_response,
    unused_port,
)

REPO = Path(__file__).resolve().parents[2]

# Known timings of the healthy endpoint: ground truth for the live figures.
TTFT_S = 0.060
GAP_S = 0.010
TOKENS = 21


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError, IndexError, TypeError) as exc:
            last_exc = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_exc!r})")


@dataclass
class Service:
    proc: subprocess.Popen
    base_url: str
    log_path: Path

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=5, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)


@pytest.fixture
def start_service(tmp_path: Path):
    """start_service(config_text, *extra_args, env=...) -> a running Service (stopped at teardown).

    `module` is what `python -m` runs: `monitor`, or a test entrypoint wrapping it."""
    started: list[Service] = []

    def start(config_text: str, *args: str, env: dict[str, str | None] | None = None,
              db: str | None = None, interval: str | None = "1", wait_ready: bool = True,
              command: str = "run", module: str = "monitor") -> Service:
        config = tmp_path / "endpoints.yaml"
        if not config.exists() or command == "run":
            config.write_text(config_text)
        port = unused_port()
        log_path = tmp_path / f"service-{len(started)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")}
        for key, value in (env or {}).items():  # None removes a variable
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        full_env.setdefault("LLM_MONITOR_SHUTDOWN_GRACE_S", "5")
        # The checkout comes first, so `module` may also be a test entrypoint under tests/.
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [full_env.get("PYTHONPATH")])])
        cmd = [
            sys.executable, "-m", module, command,
            "--config", str(config),
            "--db", db or f"sqlite:///{tmp_path / 'monitor.db'}",
            "--port", str(port),
            *(["--interval", interval] if interval else []),
            *args,
        ]
        log_file = open(log_path, "w")
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
        service = Service(proc, f"http://127.0.0.1:{port}", log_path)
        started.append(service)
        if wait_ready:
            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"service exited with {proc.returncode}:\n{service.log()}")
                return service.get("/healthz").status_code == 200
            wait_until(ready, timeout_s=30, what="the service to answer /healthz")
        return service

    yield start
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()


@pytest.fixture
def provider_servers():
    """A healthy OpenAI-compatible server with known timings, and a failing one (HTTP 500)."""
    with StreamServer() as healthy, StreamServer() as failing:
        def stream(_request) -> ScriptedResponse:
            return sse_stream_response(openai_stream(ttft_s=TTFT_S, gap_s=GAP_S, n_tokens=TOKENS))

        healthy.route("GET", "/v1/models", json_response(200, {"data": []}))
        healthy.route("POST", "/v1/chat/completions", stream)
        failing.route("GET", "/v1/models", json_response(200, {"data": []}))
        failing.route("POST", "/v1/chat/completions", html_response(500, "<html>upstream exploded</html>"))
        yield healthy, failing


def two_endpoint_config(healthy_url: str, failing_url: str) -> str:
    return f"""
defaults: {{interval: 30m, timeout: 10s, max_tokens: 32}}
models:
  - id: meta-llama/llama-3.2-1b-instruct
    name: "Meta: Llama 3.2 1B Instruct"
    endpoints:
      - provider: Healthy
        protocol: openai
        base_url: {healthy_url}/v1
        model: llama-3.2-1b
      - provider: Failing
        protocol: openai
        base_url: {failing_url}/v1
        model: llama-3.2-1b
"""


MODEL = "m/one"


def config_for(*servers: tuple[str, str]) -> str:
    endpoints = "\n".join(
        f"      - {{provider: {name}, protocol: openai, base_url: '{url}/v1', model: x}}"
        for name, url in servers
    )
    return f"""
defaults: {{interval: 30m, timeout: 10s, max_tokens: 16}}
models:
  - id: {MODEL}
    name: One
    endpoints:
{endpoints}
"""


@pytest.fixture
def provider():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        server.route(
            "POST", "/v1/chat/completions",
            lambda _r: sse_stream_response(openai_stream(ttft_s=0.02, gap_s=0.005, n_tokens=8)),
        )
        yield server
