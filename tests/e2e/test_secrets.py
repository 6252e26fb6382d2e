"""A known fake API key, echoed back by misbehaving providers, appears nowhere we write.

Providers here put the key they received into 401 bodies, HTML error pages and in-stream error
events. The key must not reach the service log, the database file, any API response, /metrics or
the CLI's output.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.conftest import REPO, wait_until
from monitor.testing.stream_server import (
    StreamServer,
    html_response,
    json_response,
    openai_stream,
    sse_event,
    sse_stream_response,
    Frame,
)

KEY = "sk-live-FAKE-4f9d2c81e7a64b0d9e35"
MODEL = "secret/model"


def echo_key(request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def routes(server: StreamServer, kind: str) -> None:
    server.route("GET", "/v1/models", lambda r: json_response(401, {"error": {"message": f"bad key {echo_key(r)}"}}))
    if kind == "401":
        handler = lambda r: json_response(401, {"error": {"message": f"Incorrect API key provided: {echo_key(r)}"}})
    elif kind == "html":
        handler = lambda r: html_response(500, f"<html>key={echo_key(r)} crashed</html>")
    elif kind == "event":
        handler = lambda r: sse_stream_response([
            Frame(0.0, sse_event({"error": {"message": f"stream aborted for key {echo_key(r)}"}}))
        ])
    else:
        handler = lambda r: sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=5))
    server.route("POST", "/v1/chat/completions", handler)


def test_fake_key_never_leaks(start_service, tmp_path):
    kinds = ["401", "html", "event", "ok"]
    servers = [StreamServer().start() for _ in kinds]
    try:
        for server, kind in zip(servers, kinds):
            routes(server, kind)
        endpoints = "\n".join(
            f"      - {{provider: P{kind}, protocol: openai, base_url: '{s.url}/v1', model: x, api_key_env: FAKE_KEY}}"
            for s, kind in zip(servers, kinds)
        )
        config = f"models:\n  - id: {MODEL}\n    name: S\n    endpoints:\n{endpoints}\n"
        service = start_service(config, env={"FAKE_KEY": KEY})

        def all_probed():
            live = service.get(f"/v1/models/{MODEL}/live").json()
            return all(e["samples"] >= 2 for e in live["endpoints"])

        wait_until(all_probed, timeout_s=30, what="two probes of every endpoint")
        # The providers really received (and echoed) the key: the test can fail.
        assert all(echo_key(s.requests_to("/v1/chat/completions")[0]) == KEY for s in servers)

        seen = [service.get("/v1/models").text, service.get(f"/v1/models/{MODEL}/live").text, service.get("/metrics").text]
        for kind in kinds:
            seen.append(service.get(f"/v1/models/{MODEL}/endpoints/P{kind}/probes").text)
        errors = service.get(f"/v1/models/{MODEL}/endpoints/P401/probes").json()["data"]
        assert errors[0]["error_kind"] == "auth_error"
        assert service.stop() == 0
        seen.append(service.log())
        for path in tmp_path.glob("monitor.db*"):
            seen.append(path.read_bytes().decode("latin-1"))
        for text in seen:
            assert KEY not in text
            assert KEY[8:24] not in text  # nor a recognisable piece of it

        cli = subprocess.run(
            [sys.executable, "-m", "monitor", "probe", "--protocol", "openai",
             "--base-url", servers[0].url + "/v1", "--model", "x", "--api-key-env", "FAKE_KEY", "--json"],
            capture_output=True, text=True, timeout=30, cwd=REPO, env={**os.environ, "FAKE_KEY": KEY},
        )
        assert cli.returncode == 0, cli.stderr
        assert '"auth_error"' in cli.stdout
        assert KEY not in cli.stdout + cli.stderr
    finally:
        for server in servers:
            server.stop()


ACCOUNT = "acct-7c1e9b24d08f"


def echo_account(request) -> str:
    # The provider quotes the path it was asked for: it carries the account id.
    return request.path


def test_a_url_variable_echoed_by_the_provider_never_leaks(start_service, tmp_path):
    """A `${VAR}` in base_url (an account id, not a key) is scrubbed like the key wherever a
    provider echoes it: an error body, an in-stream error and a finish reason."""
    not_found, event, finish = StreamServer().start(), StreamServer().start(), StreamServer().start()
    try:
        for server in (not_found, event, finish):
            server.route("GET", f"/accounts/{ACCOUNT}/v1/models", json_response(200, {"data": []}))
        not_found.route("POST", f"/accounts/{ACCOUNT}/v1/chat/completions",
                        lambda r: json_response(404, {"error": {"message": f"no model at {echo_account(r)}"}}))
        event.route("POST", f"/accounts/{ACCOUNT}/v1/chat/completions", lambda r: sse_stream_response([
            Frame(0.0, sse_event({"error": {"message": f"account {ACCOUNT} suspended"}}))]))
        finish.route("POST", f"/accounts/{ACCOUNT}/v1/chat/completions", lambda r: sse_stream_response([
            Frame(0.0, sse_event({"choices": [{"delta": {"content": "One"}}]})),
            Frame(0.005, sse_event({"choices": [{"delta": {}, "finish_reason": f"stop:{ACCOUNT}"}]})),
            Frame(0.0, b"data: [DONE]\n\n"),
        ]))
        endpoints = "\n".join(
            f"      - {{provider: {name}, protocol: openai, base_url: '{s.url}/accounts/${{ACCT}}/v1', model: x}}"
            for name, s in (("NotFound", not_found), ("Event", event), ("Finish", finish))
        )
        config = f"models:\n  - id: {MODEL}\n    name: S\n    endpoints:\n{endpoints}\n"
        service = start_service(config, env={"ACCT": ACCOUNT})

        def all_probed():
            live = service.get(f"/v1/models/{MODEL}/live").json()
            return all(e["samples"] >= 1 for e in live["endpoints"])

        wait_until(all_probed, timeout_s=30, what="a probe of every endpoint")
        probes = {name: service.get(f"/v1/models/{MODEL}/endpoints/{name}/probes").json()["data"][0]
                  for name in ("NotFound", "Event", "Finish")}
        # The providers really echoed it, and the scrubber replaced it: the test can fail.
        assert probes["NotFound"]["error_kind"] == "not_found" and "***" in probes["NotFound"]["error"]
        assert probes["Event"]["error_kind"] == "stream_error" and "***" in probes["Event"]["error"]
        assert probes["Finish"]["ok"] and probes["Finish"]["finish_reason"] == "stop:***"
        seen = [service.get("/v1/models").text, service.get("/metrics").text, str(probes)]
        assert service.stop() == 0
        seen.append(service.log())
        for path in tmp_path.glob("monitor.db*"):
            seen.append(path.read_bytes().decode("latin-1"))
        for text in seen:
            assert ACCOUNT not in text and ACCOUNT[5:] not in text
    finally:
        for server in (not_found, event, finish):
            server.stop()
