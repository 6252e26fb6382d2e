"""Anthropic Messages protocol: transcripts, request shape, and probes over a real socket."""

from __future__ import annotations

import json

import pytest

from monitor.probes.anthropic import API_VERSION, PROTOCOL, parse_event
from monitor.probes.base import Delta, ErrorKind, ProbeTarget, Secret, StreamDataError, TokenCountSource
from monitor.probes.engine import run_probe
from monitor.probes.framing import SSEEvent
from tests.probes.support import replay_fixture
from monitor.testing.stream_server import Frame, json_response, sse_event, sse_stream_response

KEY = "sk-ant-test-5151"
MODEL = "claude-haiku-4-5"


def target(base_url: str = "https://api.anthropic.com/v1", **kw) -> ProbeTarget:
    fields = dict(protocol="anthropic", base_url=base_url, model=MODEL, api_key=Secret(KEY),
                  api_key_env="ANTHROPIC_API_KEY", max_tokens=96, timeout_s=10.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


# ---------------------------------------------------------------------------- transcripts

def test_sdk_basic_transcript():
    replay = replay_fixture(PROTOCOL, "anthropic_basic_stream.sse")
    assert replay.content == "Hello there!"
    assert replay.token_events == 3
    # message_delta's cumulative 6 is the total; message_start's provisional 1 is not added
    assert replay.usage == 6
    assert [d.usage_output_tokens for d in replay.deltas if d.usage_output_tokens is not None] == [6]
    assert replay.finish_reason == "end_turn"
    assert replay.done_is_last
    assert replay.errors == []


def test_sdk_error_event_transcript():
    replay = replay_fixture(PROTOCOL, "anthropic_error_event.sse")
    assert replay.errors == ["overloaded_error: Overloaded"]
    assert replay.token_events == 0 and not replay.done


def test_thinking_text_and_tool_use_transcript():
    replay = replay_fixture(PROTOCOL, "synthetic_anthropic_thinking_tool_use.sse")
    assert replay.reasoning == "The user wants the weather."
    assert replay.content == "Let me check."
    # 2 thinking deltas + 2 text deltas + tool_use start (names the tool) + 2 non-empty
    # input_json fragments; the empty first fragment, signature_delta, ping and the unknown
    # event type carry no token
    assert replay.token_events == 7
    assert replay.tool_call_events == 3
    assert replay.deltas[0] == Delta(usage_input_tokens=40)  # message_start: the prompt size only
    assert replay.deltas[1] == Delta(reasoning="The user wants")
    assert replay.usage == 57 and replay.finish_reason == "tool_use"
    assert replay.done_is_last and replay.errors == []


def test_error_after_text_transcript():
    replay = replay_fixture(PROTOCOL, "synthetic_anthropic_midstream_error.sse")
    assert replay.content == "Hello"
    assert replay.errors == ["overloaded_error: Overloaded"]
    assert replay.usage is None and not replay.done


@pytest.mark.parametrize("name, data, expected", [
    ("ping", '{"type": "ping"}', None),
    # message_start: its output_tokens is provisional (not reported); the prompt size is
    ("message_start", '{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}',
     Delta(usage_input_tokens=5)),
    ("message_start", '{"type":"message_start","message":{"usage":{"output_tokens":1}}}', None),
    ("content_block_stop", '{"type":"content_block_stop","index":0}', None),
    ("brand_new_event", '{"type":"brand_new_event","x":1}', None),
    # dispatch falls back to the SSE event name when data has no `type`
    ("message_stop", "{}", Delta(done=True)),
    ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}', None),
    ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}', None),
    ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hi"}}', Delta(content="Hi")),
    ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":96}}',
     Delta(usage_output_tokens=96, finish_reason="max_tokens")),
    ("error", '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
     Delta(error="api_error: Internal server error")),
])
def test_parse_event_shapes(name, data, expected):
    assert parse_event(SSEEvent(event=name, data=data)) == expected


@pytest.mark.parametrize("data", [
    '{"type":"content_block_delta","delta":',
    '"just a string"',
    '{"type":"content_block_delta","index":0}',
    '{"type":"content_block_delta","delta":{"type":"text_delta","text":5}}',
    '{"type":"content_block_start","index":0}',
    '{"type":"message_delta","delta":"end_turn"}',
])
def test_malformed_events_raise_stream_data_error(data):
    with pytest.raises(StreamDataError):
        parse_event(SSEEvent(event="", data=data))


# ---------------------------------------------------------------------------- request shape

def test_request_shape():
    spec = PROTOCOL.build_request(target(), "PROMPT-9")
    assert spec.url == "https://api.anthropic.com/v1/messages"
    assert spec.headers["x-api-key"] == KEY
    assert spec.headers["anthropic-version"] == API_VERSION == "2023-06-01"
    assert "Authorization" not in spec.headers and "authorization" not in spec.headers
    assert spec.json == {
        "model": MODEL,
        "max_tokens": 96,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": "PROMPT-9"}],
    }


def test_key_travels_only_in_headers():
    t = target()
    spec = PROTOCOL.build_request(t, "hi")
    assert KEY not in spec.url and KEY not in json.dumps(spec.json)
    assert [name for name, value in spec.headers.items() if KEY in value] == ["x-api-key"]
    assert PROTOCOL.warmup_url(t) == "https://api.anthropic.com/v1/models"
    assert PROTOCOL.warmup_headers(t) == {"x-api-key": KEY, "anthropic-version": "2023-06-01"}



# ---------------------------------------------------------------------------- over a real socket

def _ev(name: str, data: dict) -> bytes:
    return sse_event(data, event=name)


def _stream(ttft_s: float, gap_s: float, words: list[str], output_tokens: int, *, end: bool = True) -> list[Frame]:
    frames = [
        Frame(0.0, _ev("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": MODEL,
            "usage": {"input_tokens": 14, "output_tokens": 1}}})),
        Frame(0.0, _ev("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})),
        Frame(0.0, _ev("ping", {"type": "ping"})),
    ]
    for i, word in enumerate(words):
        frames.append(Frame(ttft_s if i == 0 else gap_s, _ev("content_block_delta", {
            "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}), token=True))
    if end:
        frames += [
            Frame(0.0, _ev("content_block_stop", {"type": "content_block_stop", "index": 0})),
            Frame(0.0, _ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": {"output_tokens": output_tokens}})),
            Frame(0.0, _ev("message_stop", {"type": "message_stop"})),
        ]
    return frames


async def test_probe_measures_a_messages_stream(server, client):
    server.route("GET", "/v1/models", json_response(200, {"data": [], "has_more": False}))
    server.route("POST", "/v1/messages",
                 sse_stream_response(_stream(0.150, 0.020, ["one", ", two", ", three", ", four"], output_tokens=11)))
    result = await run_probe(client, target(base_url=server.url + "/v1"))
    [warmup] = server.requests_to("/v1/models")
    [served] = server.requests_to("/v1/messages")

    assert result.ok, result.error
    assert result.ttft_s == pytest.approx(served.ttft_truth_s(), abs=0.010)
    assert result.ttft_s >= 0.140
    assert result.output_tokens == 11 and result.token_count_source == TokenCountSource.USAGE
    assert result.token_chunks == 4 and result.finish_reason == "end_turn"
    assert warmup.headers["x-api-key"] == KEY and warmup.headers["anthropic-version"] == "2023-06-01"
    assert served.connection_id == warmup.connection_id
    assert served.headers["x-api-key"] == KEY and served.json["max_tokens"] == 96



async def test_http_529_overloaded_is_rate_limited(server, client):
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}
    server.route("POST", "/v1/messages", json_response(529, body, headers={"retry-after": "7"}))
    result = await run_probe(client, target(base_url=server.url + "/v1"))
    assert not result.ok
    assert result.error_kind == ErrorKind.RATE_LIMITED and result.http_status == 529
    assert result.retry_after_s == 7
    assert "Overloaded" in result.error and KEY not in result.error
