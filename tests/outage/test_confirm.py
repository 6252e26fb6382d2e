"""Confirmation probes over real sockets: a provider failure (of any probe) or a hard liveness
failure starts a round of real, stored `trigger: confirm` probes that ends at the first success or
at `confirm_failures` failures in a row; throttling and config errors start none; the rate caps
(one per endpoint, one per confirm interval, a global bound, a claim per slot) hold."""

from __future__ import annotations

import asyncio

from monitor.confirm import ConfirmManager
from monitor.coordination import LocalClaims
from monitor.probes.base import Trigger
from monitor.testing.stream_server import (
    ScriptedResponse, StreamServer, html_response, json_response, openai_stream, sse_stream_response,
)
from tests.outage.conftest import MODEL, catalog_of, probing_parts


class Provider:
    """An OpenAI-compatible loopback provider whose chat answer the test switches."""

    def __init__(self, server: StreamServer, root: str = ""):
        self.server = server
        self.root = root
        self.failing = False
        self.status = 500
        self.head_delay_s = 0.0
        server.route("GET", f"{root}/v1/models", json_response(200, {"data": []}))
        server.route("POST", f"{root}/v1/chat/completions", self._chat)

    def _chat(self, _request) -> ScriptedResponse:
        if self.failing:
            response = html_response(self.status, "<html>broken</html>")
        else:
            response = sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.002, n_tokens=4))
        response.head_delay_s = self.head_delay_s
        return response

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.root}/v1"

    def chats(self):
        return self.server.requests_to(f"{self.root}/v1/chat/completions", "POST")


def manager(parts, catalog, claims=None, **kw) -> ConfirmManager:
    confirm = ConfirmManager(parts.runner.probe_endpoint, parts.metrics, claims or LocalClaims(),
                             location="here", **kw)
    parts.runner.add_listener(confirm.on_result)
    confirm.start(catalog)
    return confirm


def endpoint_of(catalog, provider="P"):
    model = catalog.find(MODEL)
    return model, model.endpoint(provider)


async def test_a_failed_scheduled_probe_is_confirmed_down_by_the_next_failure():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=2)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            await parts.runner.probe_endpoint(*endpoint_of(catalog))  # scheduled, fails
            assert not confirm.is_down(MODEL, "P")
            await asyncio.sleep(2.6)  # one confirmation after 1 s, then none: it is down
            assert confirm.is_down(MODEL, "P")
            stored = await parts.stored("P")
            assert parts.sample("llm_confirm_probes_total", model=MODEL, provider="P", outcome="http_error") == 1
            await confirm.shutdown()
    assert [(r.trigger, r.ok) for r in stored] == [(Trigger.SCHEDULED, False), (Trigger.CONFIRM, False)]
    assert all(r.location == "here" for r in stored)


async def test_three_failures_take_two_confirmations():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=3)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            await parts.runner.probe_endpoint(*endpoint_of(catalog))
            await asyncio.sleep(3.5)
            stored = await parts.stored("P")
            assert confirm.is_down(MODEL, "P") and confirm.failures(MODEL, "P") == 3
            await confirm.shutdown()
    assert [r.trigger for r in stored] == [Trigger.SCHEDULED, Trigger.CONFIRM, Trigger.CONFIRM]


async def test_the_round_ends_at_the_first_success():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=2)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            await parts.runner.probe_endpoint(*endpoint_of(catalog))
            provider.failing = False
            await asyncio.sleep(2.6)
            stored = await parts.stored("P")
            assert not confirm.is_down(MODEL, "P") and confirm.failures(MODEL, "P") == 0
            await confirm.shutdown()
    assert [(r.trigger, r.ok) for r in stored] == [(Trigger.SCHEDULED, False), (Trigger.CONFIRM, True)]


async def test_throttling_and_config_errors_start_no_confirmation():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing, provider.status = True, 429
        catalog = catalog_of(("P", provider.url), confirm="1s")
        unset = catalog_of(("Unset", provider.url), confirm="1s", key_env="NOT_SET_ANYWHERE")
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            await parts.runner.probe_endpoint(*endpoint_of(catalog))
            await parts.runner.probe_endpoint(*endpoint_of(unset, "Unset"))  # config_error
            await asyncio.sleep(1.5)
            p, unset = await parts.stored("P"), await parts.stored("Unset")
            await confirm.shutdown()
    assert [(r.trigger, r.error_kind) for r in p] == [(Trigger.SCHEDULED, "rate_limited")]
    assert [(r.trigger, r.error_kind) for r in unset] == [(Trigger.SCHEDULED, "config_error")]


async def test_a_hard_liveness_failure_confirms_at_once_and_a_recovery_resolves():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=2)
        model, endpoint = endpoint_of(catalog)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            confirm.on_liveness_failure(model, endpoint)
            await asyncio.sleep(0.5)
            assert [r.trigger for r in await parts.stored("P")] == [Trigger.CONFIRM]  # at once
            await asyncio.sleep(1.5)
            assert confirm.is_down(MODEL, "P")
            confirm.on_liveness_failure(model, endpoint)  # still failing: already down, no probe
            await asyncio.sleep(0.3)
            assert len(await parts.stored("P")) == 2
            provider.failing = False
            confirm.on_liveness_recovered(model, endpoint)
            await asyncio.sleep(1.5)  # one confirmation (spaced 1 s from the previous), ok
            stored = await parts.stored("P")
            assert not confirm.is_down(MODEL, "P")
            await confirm.shutdown()
    assert [(r.trigger, r.ok) for r in stored] == [(Trigger.CONFIRM, False)] * 2 + [(Trigger.CONFIRM, True)]


async def test_one_confirmation_per_endpoint_at_a_time_and_one_per_interval():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing, provider.head_delay_s = True, 0.3
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=3)
        model, endpoint = endpoint_of(catalog)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog)
            for _ in range(5):
                confirm.on_liveness_failure(model, endpoint)
            await asyncio.sleep(0.1)
            for _ in range(5):  # while the first is in flight
                confirm.on_liveness_failure(model, endpoint)
            await asyncio.sleep(3.0)
            await confirm.shutdown()
        chats = provider.chats()
    assert len(chats) == 3  # 3 failures in a row, then down
    starts = [request.received_ns for request in chats]
    assert all(later - earlier >= 1e9 for earlier, later in zip(starts, starts[1:]))


async def test_the_global_cap_bounds_confirmations_in_flight():
    with StreamServer() as server:
        providers = [Provider(server, f"/p{i}") for i in range(6)]
        for provider in providers:
            provider.failing, provider.head_delay_s = True, 0.4
        catalog = catalog_of(*[(f"P{i}", p.url) for i, p in enumerate(providers)], confirm="1s", failures=1)
        model = catalog.find(MODEL)
        async with probing_parts(catalog) as parts:
            confirm = manager(parts, catalog, max_in_flight=2)
            for endpoint in model.endpoints:
                confirm.on_liveness_failure(model, endpoint)
            await asyncio.sleep(2.0)
            await confirm.shutdown()
        chats = [request for provider in providers for request in provider.chats()]
    assert len(chats) == 6  # one each (1 failure = down)
    events = sorted([(r.received_ns, 1) for r in chats] + [(r.head_ns, -1) for r in chats])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2  # the cap was reached, never passed


async def test_two_processes_in_one_location_confirm_once():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("P", provider.url), confirm="1s", failures=2)
        model, endpoint = endpoint_of(catalog)
        shared = LocalClaims()  # stands in for the database-backed claims of one location
        async with probing_parts(catalog) as one, probing_parts(catalog) as two:
            first, second = manager(one, catalog, shared), manager(two, catalog, shared)
            first.on_liveness_failure(model, endpoint)
            second.on_liveness_failure(model, endpoint)
            await asyncio.sleep(0.5)
            total = len(await one.stored("P")) + len(await two.stored("P"))
            await first.shutdown()
            await second.shutdown()
    assert total == 1


async def test_a_restart_resumes_the_round_from_the_stored_failures():
    with StreamServer() as server:
        provider = Provider(server)
        provider.failing = True
        catalog = catalog_of(("Down", provider.url), ("Halfway", provider.url), confirm="1s", failures=2)
        async with probing_parts(catalog) as parts:
            confirm = ConfirmManager(parts.runner.probe_endpoint, parts.metrics, LocalClaims(), location="here")
            parts.runner.add_listener(confirm.on_result)
            confirm.start(catalog, {(MODEL, "Down"): 2, (MODEL, "Halfway"): 1})
            await asyncio.sleep(0.5)
            down, halfway = await parts.stored("Down"), await parts.stored("Halfway")
            assert confirm.is_down(MODEL, "Halfway")
            await confirm.shutdown()
    assert down == []  # already confirmed down before the restart
    assert [r.trigger for r in halfway] == [Trigger.CONFIRM]
