"""Gemini streamGenerateContent protocol: transcripts, request shape, and probes over a real socket."""

from __future__ import annotations

import json

import pytest

from monitor.probes.base import Delta, ErrorKind, ProbeTarget, Secret, StreamDataError, TokenCountSource
from monitor.probes.engine import run_probe
from monitor.probes.framing import SSEEvent
from monitor.probes.gemini import PROTOCOL, output_tokens, parse_event, thinking_budget
from tests.probes.support import replay_fixture
from monitor.testing.stream_server import Frame, json_response, sse_event, sse_stream_response

KEY = "AIza-test-key-777"
MODEL = "gemini-2.5-flash"


def target(base_url: str = "https://generativelanguage.googleapis.com/v1beta", **kw) -> ProbeTarget:
    fields = dict(protocol="gemini", base_url=base_url, model=MODEL, api_key=Secret(KEY),
                  api_key_env="GEMINI_API_KEY", max_tokens=80, timeout_s=10.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


# ---------------------------------------------------------------------------- transcripts

def test_basic_recorded_transcript():
    replay = replay_fixture(PROTOCOL, "gemini_basic_stream.sse")
    assert replay.content == "The capital of Wyoming is **Cheyenne**.\n"
    assert replay.token_events == 3
    # early chunks carry only promptTokenCount: no usage until candidatesTokenCount appears
    assert [d.usage_output_tokens for d in replay.deltas] == [None, None, 10]
    assert replay.usage == 10
    assert replay.finish_reason == "STOP"
    assert not replay.done  # Gemini has no end marker: EOF ends the stream
    assert replay.errors == []


def test_thinking_transcript_counts_thoughts_as_reasoning_and_tokens():
    replay = replay_fixture(PROTOCOL, "synthetic_gemini_thinking.sse")
    assert replay.content == "The capital of France is Paris."
    assert replay.reasoning == "**Planning the answer**\n\nI need to recall the capital. Verified."
    assert replay.token_events == 5
    assert replay.deltas[0].content == "" and replay.deltas[0].reasoning
    # cumulative: each chunk reports its running total, the last is candidates + thoughts
    assert [d.usage_output_tokens for d in replay.deltas] == [180, 400, 540, 560, 588]
    assert replay.usage == 48 + 540
    assert replay.finish_reason == "STOP" and not replay.done


def test_finish_reason_on_every_chunk_then_error_transcript():
    replay = replay_fixture(PROTOCOL, "synthetic_gemini_midstream_error.sse")
    assert replay.content == "One two"
    assert [d.finish_reason for d in replay.deltas[:2]] == ["STOP", "STOP"]
    assert not replay.done  # a finishReason is not an end marker
    assert replay.errors == ["503 UNAVAILABLE: The model is overloaded. Please try again later."]


def test_blocked_prompt_transcript():
    replay = replay_fixture(PROTOCOL, "synthetic_gemini_blocked_prompt.sse")
    assert replay.errors == ["prompt blocked: SAFETY"]
    assert replay.token_events == 0


@pytest.mark.parametrize("data, expected", [
    ('{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"}}]}', None),
    ('{"candidates":[{"content":{"parts":[{"text":"a"},{"text":"b"}]}}]}', Delta(content="ab")),
    ('{"candidates":[{"content":{"parts":[{"text":"hm","thought":true},{"text":"A"}]}}]}', Delta(content="A", reasoning="hm")),
    ('{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]}}]}', Delta(tool_call=True)),
    ('{"candidates":[{"finishReason":"MAX_TOKENS","content":{"role":"model"}}],'
     '"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":80}}',
     Delta(finish_reason="MAX_TOKENS", usage_output_tokens=80, usage_input_tokens=5)),
    # the prompt size alone (early chunks): no output usage yet
    ('{"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5}}', Delta(usage_input_tokens=5)),
    ('{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}',
     Delta(error="429 RESOURCE_EXHAUSTED: Resource exhausted")),
    ('{"error":"plain text failure"}', Delta(error="plain text failure")),
])
def test_parse_event_shapes(data, expected):
    assert parse_event(SSEEvent(event="", data=data)) == expected


@pytest.mark.parametrize("usage, expected", [
    ({"promptTokenCount": 4}, None),
    ({"candidatesTokenCount": 12}, 12),
    ({"thoughtsTokenCount": 30}, 30),
    ({"candidatesTokenCount": 48, "thoughtsTokenCount": 540}, 588),
    ({"candidatesTokenCount": 0}, 0),
    (None, None),
])
def test_output_tokens_adds_thoughts(usage, expected):
    assert output_tokens(usage) == expected


@pytest.mark.parametrize("data", [
    "{not json}",
    "[1, 2]",
    '{"candidates": {"content": {}}}',
    '{"candidates": ["text"]}',
    '{"candidates": [{"content": ["parts"]}]}',
    '{"candidates": [{"content": {"parts": "abc"}}]}',
    '{"candidates": [{"content": {"parts": [{"text": 3}]}}]}',
])
def test_malformed_events_raise_stream_data_error(data):
    with pytest.raises(StreamDataError):
        parse_event(SSEEvent(event="", data=data))


# ---------------------------------------------------------------------------- request shape

def test_request_shape():
    spec = PROTOCOL.build_request(target(), "PROMPT-3")
    assert spec.url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                        "gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert spec.headers["x-goog-api-key"] == KEY
    assert spec.json == {
        "contents": [{"role": "user", "parts": [{"text": "PROMPT-3"}]}],
        "generationConfig": {"maxOutputTokens": 80, "temperature": 0, "thinkingConfig": {"thinkingBudget": 0}},
    }


def test_key_travels_only_in_headers():
    t = target()
    spec = PROTOCOL.build_request(t, "hi")
    assert KEY not in spec.url and "key=" not in spec.url and KEY not in json.dumps(spec.json)
    assert [name for name, value in spec.headers.items() if KEY in value] == ["x-goog-api-key"]
    assert PROTOCOL.warmup_url(t) == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1"
    assert PROTOCOL.warmup_headers(t) == {"x-goog-api-key": KEY}


@pytest.mark.parametrize("model, options, budget", [
    ("gemini-2.5-flash", {}, 0),
    ("models/gemini-2.5-flash-lite", {}, 0),
    ("gemini-2.5-pro", {}, None),  # cannot turn thinking off: a 0 budget would be a 400
    ("gemini-2.0-flash", {}, None),  # no thinking config at all
    ("gemini-3-pro-preview", {}, None),
    ("gemini-2.5-pro", {"thinking_budget": 128}, 128),
    ("gemini-2.5-flash", {"thinking_budget": None}, None),
])
def test_thinking_budget_only_where_allowed(model, options, budget):
    t = target(model=model, options=options)
    assert thinking_budget(t) == budget
    config = PROTOCOL.build_request(t, "hi").json["generationConfig"]
    assert config.get("thinkingConfig") == (None if budget is None else {"thinkingBudget": budget})


def test_models_prefix_is_accepted():
    spec = PROTOCOL.build_request(target(base_url="https://proxy.example/v1beta/", model="models/gemini-2.5-flash"), "x")
    assert spec.url == "https://proxy.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"



# ---------------------------------------------------------------------------- over a real socket

PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"


def _chunk(text: str, *, candidates_tokens: int | None = None, finish: str | None = None) -> bytes:
    usage = {"promptTokenCount": 9, "totalTokenCount": 9 + (candidates_tokens or 0)}
    if candidates_tokens is not None:
        usage["candidatesTokenCount"] = candidates_tokens
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return sse_event({"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL})


async def test_probe_measures_a_stream_that_ends_at_eof(server, client):
    frames = [
        Frame(0.100, _chunk("One,"), token=True),
        Frame(0.030, _chunk(" two,"), token=True),
        Frame(0.030, _chunk(" three."), token=True),
        Frame(0.030, _chunk(" Four.", candidates_tokens=13, finish="STOP"), token=True),
    ]
    server.route("GET", "/v1beta/models", json_response(200, {"models": []}))
    server.route("POST", PATH, sse_stream_response(frames))
    result = await run_probe(client, target(base_url=server.url + "/v1beta"))
    [warmup] = server.requests_to("/v1beta/models")
    [served] = server.requests_to(PATH)

    assert result.ok, result.error
    assert result.ttft_s == pytest.approx(served.ttft_truth_s(), abs=0.010)
    assert result.ttft_s >= 0.090
    assert result.output_tokens == 13 and result.token_count_source == TokenCountSource.USAGE
    assert result.token_chunks == 4 and result.finish_reason == "STOP"
    assert warmup.query == {"pageSize": "1"} and warmup.headers["x-goog-api-key"] == KEY
    assert served.connection_id == warmup.connection_id
    assert served.query == {"alt": "sse"}
    assert served.json["generationConfig"]["maxOutputTokens"] == 80


async def test_http_429_resource_exhausted_is_rate_limited(server, client):
    body = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                      "status": "RESOURCE_EXHAUSTED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}
    server.route("POST", PATH, json_response(429, body))
    result = await run_probe(client, target(base_url=server.url + "/v1beta"))
    assert not result.ok
    assert result.error_kind == ErrorKind.RATE_LIMITED and result.http_status == 429
    assert "Resource has been exhausted" in result.error and KEY not in result.error



async def test_raw_multi_line_error_mid_stream_is_a_stream_error(server, client):
    # Gemini can write a mid-stream error as pretty-printed JSON without `data:` (PROTOCOLS.md §4);
    # the spec's SSE rules would drop it and the stream would end "cleanly" at EOF.
    error = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                       "status": "UNAVAILABLE"}}
    raw = json.dumps(error, indent=2).encode() + b"\n"
    frames = [Frame(0.020, _chunk("One,"), token=True), Frame(0.010, _chunk(" two,"), token=True),
              Frame(0.010, raw[:20]), Frame(0.005, raw[20:])]
    server.route("POST", PATH, sse_stream_response(frames))
    result = await run_probe(client, target(base_url=server.url + "/v1beta"))
    assert not result.ok
    assert result.error_kind == ErrorKind.STREAM_ERROR
    assert "503 UNAVAILABLE: The model is overloaded" in result.error
    assert result.token_chunks == 2 and result.http_status == 200


async def test_raw_error_cut_off_by_the_end_of_the_stream_is_a_stream_error(server, client):
    frames = [Frame(0.020, _chunk("One,"), token=True), Frame(0.010, b'{\n  "error": {\n    "code": 500,\n')]
    server.route("POST", PATH, sse_stream_response(frames))
    result = await run_probe(client, target(base_url=server.url + "/v1beta"))
    assert not result.ok
    assert result.error_kind == ErrorKind.STREAM_ERROR and "malformed" in result.error
