"""The liveness checker over real sockets against loopback providers: what each answer does
(ok, 404 from the start, 5xx/401 after 2xx, dead port, TLS, DNS, slow and hanging servers,
429), what it counts and logs, and that its loop stops or backs off as the rules say."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from monitor.catalog import parse_catalog
from monitor.liveness import LivenessChecker
from monitor.liveness_rules import Action
from monitor.metrics import build_metrics
from monitor.probes.base import ProbeTarget, Secret
from monitor.probes.registry import PROTOCOLS
from monitor.probes.transport import build_client
from monitor.testing.stream_server import (
    Frame, ScriptedResponse, StreamServer, json_response, unused_port,
)
from tests.outage.conftest import ENVIRON, KEY, MODEL, catalog_of


class Harness:
    def __init__(self, catalog, **kw):
        self.catalog = catalog
        self.registry = CollectorRegistry()
        self.metrics = build_metrics(self.registry)
        self.failures: list[str] = []
        self.recoveries: list[str] = []
        self.kw = kw

    async def __aenter__(self):
        self.client = build_client(max_connections=8, pool_shards=1)
        kw = {"spread_first": False, "environ": ENVIRON, **self.kw}
        self.checker = LivenessChecker(
            self.client, self.metrics,
            on_failure=lambda m, e: self.failures.append(e.provider),
            on_recovered=lambda m, e: self.recoveries.append(e.provider),
            **kw,
        )
        return self

    async def __aexit__(self, *exc):
        await self.checker.shutdown()
        await self.client.aclose()

    async def check(self, provider: str = "P"):
        model = self.catalog.find(MODEL)
        return await self.checker.check(model, model.endpoint(provider))

    def up(self, provider: str = "P"):
        return self.registry.get_sample_value("llm_liveness_up", {"model": MODEL, "provider": provider})

    def count(self, outcome: str, provider: str = "P"):
        return self.registry.get_sample_value(
            "llm_liveness_checks_total", {"model": MODEL, "provider": provider, "outcome": outcome}) or 0


class Switch:
    """A /v1/models route whose answer the test changes between checks."""

    def __init__(self, server: StreamServer, response: ScriptedResponse):
        self.response = response
        server.route("GET", "/v1/models", lambda _r: self.response)


async def test_a_2xx_is_up_sends_the_protocols_request_and_costs_no_tokens():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            verdict = await h.check()
        assert (verdict.outcome, verdict.up, verdict.action) == ("ok", True, Action.NONE)
        assert h.up() == 1 and h.count("ok") == 1
        assert h.failures == [] and h.recoveries == []
        (request,) = server.requests
        assert (request.method, request.path) == ("GET", "/v1/models")
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert not server.requests_to("/v1/chat/completions")


async def test_404_from_the_start_turns_liveness_off_and_the_loop_stops():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(404, {"error": "no"}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            h.checker.start(h.catalog)
            await asyncio.sleep(2.5)  # two more intervals: no further check
            assert h.checker.off == {(MODEL, "P"): "not offered (HTTP 404)"}
        assert len(server.requests) == 1
        assert h.up() is None and h.count("not_offered") == 1
        assert h.failures == []


async def test_5xx_after_2xx_asks_for_one_confirmation_then_a_recovery():
    with StreamServer() as server:
        switch = Switch(server, json_response(200, {"data": []}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            await h.check()
            switch.response = json_response(503, {"error": "overloaded"})
            first = await h.check()
            second = await h.check()
            assert h.up() == 0
            switch.response = json_response(200, {"data": []})
            third = await h.check()
        assert [first.action, second.action, third.action] == [Action.CONFIRM, Action.NONE, Action.RECOVERED]
        assert h.failures == ["P"] and h.recoveries == ["P"]
        assert h.count("http_5xx") == 2 and h.count("ok") == 2 and h.up() == 1


async def test_5xx_from_the_start_is_not_a_change():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(500, {}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            verdict = await h.check()
        assert verdict.action == Action.NONE and h.failures == []


async def test_401_after_2xx_is_a_hard_failure():
    with StreamServer() as server:
        switch = Switch(server, json_response(200, {"data": []}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            await h.check()
            switch.response = json_response(401, {"error": {"message": "invalid key"}})
            verdict = await h.check()
        assert (verdict.outcome, verdict.action) == ("auth_error", Action.CONFIRM)
        assert h.failures == ["P"]


async def test_a_dead_port_is_a_hard_failure():
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    async with Harness(catalog_of(("P", dead))) as h:
        verdict = await h.check()
    assert (verdict.outcome, verdict.up, verdict.action) == ("connect_error", False, Action.CONFIRM)
    assert h.failures == ["P"] and h.up() == 0


async def test_a_port_that_stops_answering_after_2xx():
    server = StreamServer().start()
    url = f"{server.url}/v1"
    server.route("GET", "/v1/models", json_response(200, {"data": []}))
    async with Harness(catalog_of(("P", url))) as h:
        assert (await h.check()).outcome == "ok"
        server.stop()
        verdict = await h.check()
    assert (verdict.outcome, verdict.action) == ("connect_error", Action.CONFIRM)


async def test_tls_to_a_plain_port_is_a_tls_failure():
    with StreamServer() as server:
        async with Harness(catalog_of(("P", f"https://127.0.0.1:{server.port}/v1"))) as h:
            verdict = await h.check()
    assert (verdict.outcome, verdict.action) == ("tls_error", Action.CONFIRM)


async def test_an_unresolvable_host_is_a_dns_failure():
    async with Harness(catalog_of(("P", "http://no-such-provider.invalid/v1"))) as h:
        verdict = await h.check()
    assert (verdict.outcome, verdict.action) == ("dns_error", Action.CONFIRM)


async def test_a_server_that_never_answers_times_out():
    with StreamServer() as server:
        server.route("GET", "/v1/models", ScriptedResponse(status=200, head_delay_s=30))
        async with Harness(catalog_of(("P", f"{server.url}/v1")), timeout_s=0.5) as h:
            verdict = await h.check()
    assert (verdict.outcome, verdict.action) == ("timeout", Action.CONFIRM)


async def test_a_head_then_a_hanging_body_counts_as_answered():
    with StreamServer() as server:
        server.route("GET", "/v1/models", ScriptedResponse(status=200, frames=[Frame(0, b"{")], end="hang"))
        async with Harness(catalog_of(("P", f"{server.url}/v1")), timeout_s=0.5) as h:
            verdict = await h.check()
    assert verdict.outcome == "ok"


async def test_an_endless_body_is_read_only_up_to_the_limit():
    chunk = b"x" * 16384
    with StreamServer() as server:
        # 64 MB offered; the check stops after BODY_LIMIT and drops the connection.
        server.route("GET", "/v1/models", ScriptedResponse(
            status=200, frames=[Frame(0, chunk) for _ in range(4096)]))
        async with Harness(catalog_of(("P", f"{server.url}/v1")), timeout_s=10) as h:
            verdict = await h.check()
        (request,) = server.requests
    assert verdict.outcome == "ok"
    assert len(request.frames) < 4096  # the server was cut off long before the end


async def test_429_backs_off_then_turns_liveness_off():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(429, {"error": "slow down"}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            actions = [(await h.check()).action for _ in range(3)]
        assert actions == [Action.BACK_OFF, Action.BACK_OFF, Action.DISABLE]
        assert h.checker.off[(MODEL, "P")].startswith("rate-limited")
        assert h.failures == [] and h.up() is None


async def test_the_loop_waits_longer_after_a_429():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(429, {}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            h.checker.start(h.catalog)
            await asyncio.sleep(2.5)  # checks at 0 and 2 s (1 s doubled), not at 0, 1 and 2 s
        assert len(server.requests) == 2


async def test_the_loop_keeps_checking_a_healthy_endpoint_and_stops_on_reload():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            h.checker.start(h.catalog)
            await asyncio.sleep(1.5)
            assert len(server.requests) == 2
            h.checker.apply(catalog_of(("Q", f"{server.url}/v1")))  # P left the config
            await asyncio.sleep(0.2)
            assert h.up("P") is None
            count = len(server.requests)
            await asyncio.sleep(1.0)
        assert len(server.requests) <= count + 1  # only Q's checks continue
        assert h.count("ok", "Q") >= 1


async def test_liveness_off_in_the_config_sends_nothing():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {}))
        catalog = parse_catalog(f"""
defaults: {{liveness: {{enabled: false}}}}
models:
  - id: {MODEL}
    name: One
    endpoints:
      - {{provider: P, protocol: openai, base_url: '{server.url}/v1', model: x}}
""")
        async with Harness(catalog) as h:
            h.checker.start(catalog)
            await asyncio.sleep(0.3)
        assert server.requests == []


async def test_an_unset_key_sends_nothing():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {}))
        catalog = catalog_of(("P", f"{server.url}/v1"))
        async with Harness(catalog, environ={}) as h:  # TEST_KEY unset: probes say config_error
            h.checker.start(catalog)
            await asyncio.sleep(0.3)
        assert server.requests == []
        assert h.checker.off == {(MODEL, "P"): "no liveness request"}


async def test_only_state_changes_are_logged_and_never_a_secret(caplog):
    caplog.set_level(logging.DEBUG, logger="monitor.liveness")
    with StreamServer() as server:
        switch = Switch(server, json_response(200, {"data": []}))
        async with Harness(catalog_of(("P", f"{server.url}/v1"))) as h:
            for response in (200, 200, 500, 500, 500, 200, 200):
                switch.response = json_response(response, {"error": {"message": f"key {KEY} bad"}})
                await h.check()
    lines = [record.getMessage() for record in caplog.records if record.name == "monitor.liveness"]
    assert lines == [
        f"liveness {MODEL}/P: unknown -> up (HTTP 200)",
        f"liveness {MODEL}/P: up -> failing (HTTP 500 after 2xx)",
        f"liveness {MODEL}/P: failing -> up (HTTP 200)",
    ]
    assert all(KEY not in line and "127.0.0.1" not in line for line in lines)


@pytest.mark.parametrize("protocol, path", [
    ("openai", "/v1/models"),
    ("anthropic", "/v1/models"),
    ("gemini", "/v1/models"),
    ("cloudflare", "/v1/models/search"),
    ("ollama", "/v1/api/version"),
])
def test_every_protocol_declares_a_liveness_request(protocol, path):
    target = ProbeTarget(protocol=protocol, base_url="https://example.test/v1", model="m", api_key=Secret("k"))
    spec = PROTOCOLS[protocol]
    assert spec.liveness_url is not None
    url = spec.liveness_url(target)
    assert url.split("?")[0] == f"https://example.test{path}"
    assert spec.liveness_headers is not None
    headers = spec.liveness_headers(target)
    assert any("k" in value for value in headers.values())  # authenticated where the provider wants it


def shared_catalog(url: str, *, models: int, second_key_env: str | None = None):
    """`models` models behind one provider at one base URL; the last one may use another key."""
    blocks = []
    for index in range(models):
        key_env = second_key_env if second_key_env and index == models - 1 else "TEST_KEY"
        blocks.append(f"""
  - id: m/{index}
    name: M{index}
    endpoints:
      - {{provider: P, protocol: openai, base_url: '{url}', model: x{index}, api_key_env: {key_env}}}""")
    return parse_catalog(f"""
defaults: {{interval: 30m, timeout: 5s, liveness: {{interval: 1s}}}}
models:{''.join(blocks)}
""", source="test")


async def test_endpoints_with_the_same_request_share_one_check():
    """A provider's model list answers for every model behind one key: one GET per interval,
    counted, gauged and acted on for each endpoint."""
    with StreamServer() as server:
        switch = Switch(server, json_response(200, {"data": []}))
        catalog = shared_catalog(f"{server.url}/v1", models=5)
        async with Harness(catalog) as h:
            h.checker.start(catalog)
            await asyncio.sleep(0.5)
            assert h.checker.groups == 1
            assert len(server.requests) == 1
            switch.response = json_response(503, {})
            await asyncio.sleep(1.0)
            assert len(server.requests) == 2
        for index in range(5):
            labels = {"model": f"m/{index}", "provider": "P"}
            assert h.registry.get_sample_value("llm_liveness_up", labels) == 0
            assert h.registry.get_sample_value("llm_liveness_checks_total", {**labels, "outcome": "ok"}) == 1
            assert h.registry.get_sample_value("llm_liveness_checks_total", {**labels, "outcome": "http_5xx"}) == 1
        assert h.failures == ["P"] * 5  # a confirmation for each endpoint


async def test_another_key_is_another_check_and_a_reload_regroups():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        url = f"{server.url}/v1"
        environ = {"TEST_KEY": KEY, "OTHER_KEY": "sk-other-key-987654321"}
        catalog = shared_catalog(url, models=3, second_key_env="OTHER_KEY")
        async with Harness(catalog, environ=environ) as h:
            h.checker.start(catalog)
            await asyncio.sleep(0.5)
            assert h.checker.groups == 2
            keys = sorted(request.headers["authorization"] for request in server.requests)
            assert keys == [f"Bearer {KEY}", "Bearer sk-other-key-987654321"]
            h.checker.apply(shared_catalog(url, models=4))  # one key for all four now
            await asyncio.sleep(0.5)
            assert h.checker.groups == 1
            assert h.registry.get_sample_value(
                "llm_liveness_checks_total", {"model": "m/3", "provider": "P", "outcome": "ok"}) == 1


async def test_a_shared_check_logs_once_for_the_group(caplog):
    caplog.set_level(logging.INFO, logger="monitor.liveness")
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    catalog = shared_catalog(dead, models=3)
    async with Harness(catalog) as h:
        h.checker.start(catalog)
        await asyncio.sleep(0.5)
    lines = [record.getMessage() for record in caplog.records if record.name == "monitor.liveness"]
    assert lines == ["liveness m/0/P (and 2 more on the same request): unknown -> failing (connect_error)"]
