"""The tool-call canary over real sockets on openai, anthropic and gemini: the forced call's
request shape, each failure class (invalid JSON, unknown tool, schema mismatch, no call, a
failed request), the usage it reports, and the runner putting the verdict on the probe."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from monitor.catalog import CatalogError, parse_catalog
from monitor.live import LiveFigures
from monitor.metrics import build_metrics
from monitor.probes.base import ProbeTarget, ToolCallError, Trigger
from monitor.probes.registry import PROTOCOLS
from monitor.probes.toolcall import MAX_BODY_BYTES, TOOL, run_tool_call
from monitor.runner import ResultBuffer, Runner
from monitor.store import InMemoryStore
from monitor.testing.stream_server import ScriptedResponse, json_response
from tests.canary.providers import BASE_PATH, PATHS, count_words, counting_handler

TOOL_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "gemini": "/v1beta/models/m:generateContent"}
SUPPORTED = tuple(TOOL_PATHS)
GOOD_ARGS = {"city": "Paris", "unit": "celsius"}


def reply(protocol: str, name: str | None, arguments: object, *, usage: bool = True) -> dict:
    """The protocol's non-streaming answer with one call of `name` (None: no call at all).
    `arguments` is sent as is (openai: a JSON text; anthropic/gemini: an object)."""
    if protocol == "openai":
        message: dict = {"role": "assistant", "content": None}
        if name is not None:
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": name, "arguments": arguments}}]
        else:
            message["content"] = "It is sunny in Paris."
        doc = {"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if name else "stop"}]}
        if usage:
            doc["usage"] = {"prompt_tokens": 81, "completion_tokens": 17, "total_tokens": 98}
        return doc
    if protocol == "anthropic":
        content = [{"type": "tool_use", "id": "toolu_1", "name": name, "input": arguments}] if name else [
            {"type": "text", "text": "It is sunny."}]
        doc = {"id": "msg", "type": "message", "role": "assistant", "content": content,
               "stop_reason": "tool_use" if name else "end_turn"}
        if usage:
            doc["usage"] = {"input_tokens": 300, "cache_read_input_tokens": 20, "output_tokens": 40}
        return doc
    parts = [{"functionCall": {"name": name, "args": arguments}}] if name else [{"text": "Sunny."}]
    doc = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
    if usage:
        doc["usageMetadata"] = {"promptTokenCount": 55, "candidatesTokenCount": 9, "totalTokenCount": 64}
    return doc


def args_for(protocol: str, args: object) -> object:
    return json.dumps(args) if protocol == "openai" else args


def target(server, protocol: str, **kw) -> ProbeTarget:
    return ProbeTarget(protocol=protocol, base_url=server.url + BASE_PATH[protocol], model="m",
                       timeout_s=10.0, stall_timeout_s=10.0, checks=("answer", "tool_call"), **kw)


async def call(server, client, protocol, response):
    server.route("POST", TOOL_PATHS[protocol], response)
    return await run_tool_call(client, target(server, protocol))


@pytest.mark.parametrize("protocol", SUPPORTED)
async def test_a_valid_call_is_ok_and_reports_its_usage(server, client, protocol):
    outcome = await call(server, client, protocol, json_response(200, reply(protocol, TOOL.name, args_for(protocol, GOOD_ARGS))))
    assert outcome.ok and outcome.error is None, outcome.detail
    assert (outcome.input_tokens, outcome.output_tokens) == {"openai": (81, 17), "anthropic": (320, 40),
                                                             "gemini": (55, 9)}[protocol]
    [request] = server.requests_to(TOOL_PATHS[protocol])
    body = request.json
    assert "stream" not in body or body["stream"] is False
    text = json.dumps(body)
    assert "[canary " in text and TOOL.name in text
    # the call is forced, in each protocol's own words, with the tool's schema
    if protocol == "openai":
        assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL.name}}
        assert body["tools"][0]["function"]["parameters"] == TOOL.parameters
    elif protocol == "anthropic":
        assert body["tool_choice"] == {"type": "tool", "name": TOOL.name}
        assert body["tools"][0]["input_schema"] == TOOL.parameters
    else:
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL.name]}}
        assert body["tools"][0]["functionDeclarations"][0]["parameters"] == TOOL.parameters


@pytest.mark.parametrize("protocol", SUPPORTED)
@pytest.mark.parametrize("name, arguments, error", [
    ("get_weather", '{"city": "Paris", "unit": ', ToolCallError.INVALID_JSON),
    ("get_weather", "not json at all", ToolCallError.INVALID_JSON),
    ("get_forecast", GOOD_ARGS, ToolCallError.UNKNOWN_TOOL),
    ("get_weather", {"city": "Paris"}, ToolCallError.SCHEMA_MISMATCH),              # required missing
    ("get_weather", {"city": "Paris", "unit": "kelvin"}, ToolCallError.SCHEMA_MISMATCH),  # enum broken
    ("get_weather", {"city": 75, "unit": "celsius"}, ToolCallError.SCHEMA_MISMATCH),  # wrong type
    ("get_weather", ["Paris", "celsius"], ToolCallError.SCHEMA_MISMATCH),           # not an object
    (None, None, ToolCallError.NO_TOOL_CALL),
], ids=["cut-json", "not-json", "unknown-tool", "missing-required", "enum", "type", "array", "no-call"])
async def test_failures_are_classified(server, client, protocol, name, arguments, error):
    if protocol == "openai" and not isinstance(arguments, str) and arguments is not None:
        arguments = json.dumps(arguments)
    outcome = await call(server, client, protocol, json_response(200, reply(protocol, name, arguments)))
    assert not outcome.ok
    assert outcome.error == error, outcome.detail


@pytest.mark.parametrize("protocol", SUPPORTED)
@pytest.mark.parametrize("response", [
    json_response(500, {"error": {"message": "boom"}}),
    json_response(429, {"error": {"message": "slow down"}}),
    ScriptedResponse(status=200, headers={"content-type": "application/json"}, body=b"{not json"),
    json_response(200, {"unexpected": "shape"}),
    ScriptedResponse(status=200, headers={"content-type": "application/json"}, body=b'"' + b"x" * (MAX_BODY_BYTES + 10) + b'"'),
], ids=["500", "429", "garbled-body", "wrong-shape", "oversized"])
async def test_a_request_without_a_usable_answer_is_request_failed(server, client, protocol, response):
    outcome = await call(server, client, protocol, response)
    assert not outcome.ok and outcome.error == ToolCallError.REQUEST_FAILED


async def test_an_unreachable_provider_is_request_failed(client):
    from monitor.testing.stream_server import unused_port

    outcome = await run_tool_call(client, ProbeTarget(protocol="openai", base_url=f"http://127.0.0.1:{unused_port()}/v1",
                                                      model="m", timeout_s=3.0))
    assert outcome.error == ToolCallError.REQUEST_FAILED


def test_only_openai_anthropic_and_gemini_support_it():
    assert {name for name, p in PROTOCOLS.items() if p.supports_tool_call} == set(SUPPORTED)


# --------------------------------------------------------------------------- the runner

CONFIG = """
models:
  - id: m1
    endpoints:
      - {{provider: A, protocol: {protocol}, base_url: "{url}", model: m, checks: {checks},
         price: {{input_per_mtok: 0.027, output_per_mtok: 0.201}}}}
"""


def runner_for(server, protocol: str, checks: str):
    catalog = parse_catalog(CONFIG.format(protocol=protocol, url=server.url + BASE_PATH[protocol], checks=checks),
                            source="t")
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    live = LiveFigures(catalog, window_s=3600, interval_of=lambda e: 60)
    buffer = ResultBuffer(InMemoryStore(), metrics, capacity=10)
    return catalog, registry, buffer, metrics, live


@pytest.mark.parametrize("protocol", SUPPORTED)
@pytest.mark.parametrize("arguments, ok, outcome", [
    (GOOD_ARGS, True, "ok"), ({"city": "Paris", "unit": "kelvin"}, False, "schema_mismatch"),
])
async def test_the_runner_runs_it_after_an_ok_probe_and_records_it(server, client, protocol, arguments, ok, outcome):
    stream = counting_handler(protocol, count_words)
    tool = json_response(200, reply(protocol, TOOL.name, args_for(protocol, arguments)))
    stream_path = PATHS[protocol] if protocol != "gemini" else "/v1beta/models/m:streamGenerateContent"
    # openai and anthropic serve both requests on one path: the tool-call one is told by its tools
    server.route("POST", stream_path, lambda request: tool if "tools" in request.json else stream(request))
    server.route("POST", TOOL_PATHS[protocol], lambda request: tool if "tools" in request.json else stream(request))
    catalog, registry, buffer, metrics, live = runner_for(server, protocol, "[answer, tool_call]")
    runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=1)
    model = catalog.models[0]
    result = await runner.probe_endpoint(model, model.endpoints[0])
    assert result.ok and result.answer_ok is True
    assert result.tool_call_ok is ok
    assert result.tool_call_error == (None if ok else ToolCallError.SCHEMA_MISMATCH)
    assert result.tool_call_input_tokens is not None and result.tool_call_output_tokens is not None
    assert registry.get_sample_value("llm_tool_call_checks_total",
                                     {"model": "m1", "provider": "A", "outcome": outcome}) == 1
    # priced with the probe: the probe's usage plus the canary request's (price of the catalog)
    price = model.endpoints[0].price
    assert result.cost_usd == pytest.approx(price.cost_usd(
        result.prompt_tokens + result.tool_call_input_tokens, result.output_tokens + result.tool_call_output_tokens))
    # the timed probe and the canary are two requests; the timed one carries no tool
    requests = server.requests_to(stream_path) + (server.requests_to(TOOL_PATHS[protocol]) if protocol == "gemini" else [])
    assert ["tools" in r.json for r in requests] == [False, True]
    if protocol != "gemini":  # gemini says streaming in its URL (streamGenerateContent vs generateContent)
        assert [r.json.get("stream", False) for r in requests] == [True, False]


async def test_the_runner_skips_it_after_a_confirmation_probe_and_without_the_check(server, client):
    server.route("POST", PATHS["openai"], counting_handler("openai", count_words))
    catalog, registry, buffer, metrics, live = runner_for(server, "openai", "[answer]")
    runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=1)
    model = catalog.models[0]
    result = await runner.probe_endpoint(model, model.endpoints[0])
    assert result.ok and result.tool_call_ok is None and result.tool_call_error is None
    catalog, registry, buffer, metrics, live = runner_for(server, "openai", "[answer, tool_call]")
    runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=1)
    model = catalog.models[0]
    result = await runner.probe_endpoint(model, model.endpoints[0], trigger=Trigger.CONFIRM)
    assert result.ok and result.tool_call_ok is None
    # the chat path served only the two timed probes: no tool-call request went out
    assert all("tools" not in r.json for r in server.requests_to(PATHS["openai"]))


async def test_the_runner_skips_it_after_a_failed_probe(server, client):
    server.route("POST", PATHS["openai"], json_response(500, {"error": {"message": "down"}}))
    catalog, registry, buffer, metrics, live = runner_for(server, "openai", "[answer, tool_call]")
    runner = Runner(client=client, metrics=metrics, live=live, buffer=buffer, environ={}, max_concurrent=1)
    model = catalog.models[0]
    result = await runner.probe_endpoint(model, model.endpoints[0])
    assert not result.ok and result.tool_call_ok is None
    assert len(server.requests_to(PATHS["openai"])) == 1


# --------------------------------------------------------------------------- check-config

ENDPOINT = """models:
  - id: a/b
    endpoints:
      - provider: P
        protocol: {protocol}
        base_url: {url}
        model: m
{extra}"""
URLS = {"openai": "http://127.0.0.1:9/v1", "anthropic": "http://127.0.0.1:9/v1", "gemini": "http://127.0.0.1:9/v1beta",
        "ollama": "http://127.0.0.1:9", "cloudflare": "http://127.0.0.1:9/ai"}


@pytest.mark.parametrize("protocol", ["ollama", "cloudflare"])
def test_check_config_refuses_tool_call_on_protocols_without_it_naming_the_field(protocol):
    with pytest.raises(CatalogError) as caught:
        parse_catalog(ENDPOINT.format(protocol=protocol, url=URLS[protocol], extra="        checks: [answer, tool_call]\n"))
    [problem] = caught.value.problems
    assert "models[0].endpoints[0]" in problem and "checks: tool_call" in problem and protocol in problem
    with pytest.raises(CatalogError) as caught:
        parse_catalog("defaults:\n  checks: [answer, tool_call]\n" + ENDPOINT.format(
            protocol=protocol, url=URLS[protocol], extra=""))
    [problem] = caught.value.problems
    assert "defaults.checks" in problem and "models[0].endpoints[0]" in problem
    # an endpoint may opt out of an inherited tool_call with its own checks
    catalog = parse_catalog("defaults:\n  checks: [answer, tool_call]\n" + ENDPOINT.format(
        protocol=protocol, url=URLS[protocol], extra="        checks: [answer]\n"))
    assert catalog.models[0].endpoints[0].checks == ("answer",)


@pytest.mark.parametrize("protocol", SUPPORTED)
def test_check_config_accepts_it_where_supported_and_the_target_carries_it(protocol):
    catalog = parse_catalog(ENDPOINT.format(protocol=protocol, url=URLS[protocol],
                                            extra="        checks: [answer, tool_call]\n        input_tokens: 1000\n"))
    t = catalog.models[0].endpoints[0].to_target({})
    assert t.checks == ("answer", "tool_call") and t.input_tokens == 1000
