"""Cloudflare Workers AI native protocol: transcripts, request shape, and probes over a real socket."""

from __future__ import annotations

import json

import pytest

from monitor.probes.base import Delta, ErrorKind, ProbeTarget, Secret, StreamDataError, TokenCountSource
from monitor.probes.cloudflare import PROTOCOL, parse_event
from monitor.probes.engine import run_probe
from monitor.probes.framing import SSEEvent
from tests.probes.support import replay_fixture
from monitor.testing.stream_server import Frame, json_response, sse_event, sse_stream_response

KEY = "cf-secret-token-4242"
MODEL = "@cf/meta/llama-3.2-1b-instruct"
AI_ROOT = "/client/v4/accounts/acc123/ai"


def target(base_url: str = "https://api.cloudflare.com/client/v4/accounts/acc123/ai", **kw) -> ProbeTarget:
    fields = dict(protocol="cloudflare", base_url=base_url, model=MODEL, api_key=Secret(KEY),
                  api_key_env="CLOUDFLARE_API_TOKEN", max_tokens=64, timeout_s=10.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


# ---------------------------------------------------------------------------- transcripts

def test_docs_template_transcript():
    replay = replay_fixture(PROTOCOL, "cloudflare_workers_ai_native.sse")
    assert replay.content == "Hello there"
    assert replay.token_events == 2
    assert replay.usage == 50  # completion_tokens of the last JSON frame
    assert replay.done_is_last
    assert replay.errors == []


def test_padding_only_frames_are_not_tokens():
    replay = replay_fixture(PROTOCOL, "synthetic_cloudflare_native_padding.sse")
    assert replay.content == "Paris is the capital."
    assert replay.token_events == 5  # the two `response: ""` padding frames are skipped
    assert replay.usage == 5
    assert replay.done_is_last
    assert replay.errors == []


def test_openai_shaped_chunks_on_the_native_endpoint():
    replay = replay_fixture(PROTOCOL, "synthetic_cloudflare_openai_shape.sse")
    assert replay.reasoning == "User wants a greeting."
    assert replay.content == "Hi there!"
    # role-only first chunk is no token; reasoning_content, reasoning, 2 x content are
    assert replay.token_events == 4
    assert replay.deltas[0].reasoning == "User wants" and not replay.deltas[0].content
    assert replay.finish_reason == "stop"
    assert replay.usage == 9
    assert replay.done_is_last


def test_error_envelope_inside_the_stream():
    replay = replay_fixture(PROTOCOL, "synthetic_cloudflare_error_envelope.sse")
    assert replay.content == "Once"
    assert replay.errors == ["3040: Capacity temporarily exceeded, please try again."]
    assert not replay.done


@pytest.mark.parametrize("data, expected", [
    ('{"response":"","p":"abcdef"}', None),
    ('{"response":null}', None),
    ('{"response":"x","p":"pad"}', Delta(content="x")),
    ('{"response":"","tool_calls":[{"name":"f","arguments":{}}]}', Delta(tool_call=True)),
    ('{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}', Delta(tool_call=True)),
    ('{"choices":[]}', None),
    # usage without completion_tokens: output unknown, the prompt size known
    ('{"response":"","usage":{"prompt_tokens":3}}', Delta(usage_input_tokens=3)),
    ('{"response":"","usage":{"completion_tokens":0}}', Delta(usage_output_tokens=0)),
    ('{"error":"worker crashed"}', Delta(error="worker crashed")),
    ('{"error":{"message":"bad thing"}}', Delta(error="bad thing")),
    ('{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}', Delta(error="10000: Authentication error")),
    ("[DONE]", Delta(done=True)),
])
def test_parse_event_shapes(data, expected):
    assert parse_event(SSEEvent(event="", data=data)) == expected


@pytest.mark.parametrize("data", [
    '{"response": "unterminated',
    '["not", "an", "object"]',
    '{"response": 42}',
    '{"choices": {"0": {}}}',
    '{"choices": [{"delta": "text"}]}',
    '{"choices": [{"delta": {"content": 7}}]}',
])
def test_malformed_events_raise_stream_data_error(data):
    with pytest.raises(StreamDataError):
        parse_event(SSEEvent(event="", data=data))


# ---------------------------------------------------------------------------- request shape

def test_request_shape():
    spec = PROTOCOL.build_request(target(), "PROMPT-7")
    assert spec.url == f"https://api.cloudflare.com{AI_ROOT}/run/{MODEL}"
    assert spec.headers["Authorization"] == f"Bearer {KEY}"
    assert spec.headers["Content-Type"] == "application/json"
    assert spec.json == {
        "messages": [{"role": "user", "content": "PROMPT-7"}],
        "stream": True,
        "max_tokens": 64,  # always explicit: Workers AI would stop at 256 otherwise
        "temperature": 0,
    }


def test_key_travels_only_in_headers():
    t = target()
    spec = PROTOCOL.build_request(t, "hi")
    assert KEY not in spec.url and KEY not in json.dumps(spec.json)
    assert [name for name, value in spec.headers.items() if KEY in value] == ["Authorization"]
    assert KEY not in PROTOCOL.warmup_url(t)
    assert PROTOCOL.warmup_headers(t) == {"Authorization": f"Bearer {KEY}"}


def test_trailing_slash_no_key_and_extra_body():
    t = target(base_url="https://gw.example/ai/", api_key=None, api_key_env=None,
               options={"extra_body": {"temperature": 0.6, "seed": 7}})
    spec = PROTOCOL.build_request(t, "hi")
    assert spec.url == f"https://gw.example/ai/run/{MODEL}"
    assert "Authorization" not in spec.headers
    assert spec.json["temperature"] == 0.6 and spec.json["seed"] == 7
    assert PROTOCOL.warmup_url(t) == "https://gw.example/ai/models/search?per_page=1"
    assert PROTOCOL.warmup_headers(t) == {}



# ---------------------------------------------------------------------------- over a real socket

def _stream(ttft_s: float, gap_s: float, words: list[str], usage_tokens: int | None) -> list[Frame]:
    frames = [Frame(0.0, sse_event({"response": "", "p": "padding-only"}))]  # early, not a token
    for i, word in enumerate(words):
        frames.append(Frame(ttft_s if i == 0 else gap_s, sse_event({"response": word, "p": "x" * (i + 3)}), token=True))
    if usage_tokens is not None:
        usage = {"prompt_tokens": 20, "completion_tokens": usage_tokens, "total_tokens": 20 + usage_tokens}
        frames.append(Frame(0.0, sse_event({"response": "", "usage": usage})))
    frames.append(Frame(0.0, b"data: [DONE]\n\n"))
    return frames


async def test_probe_measures_a_native_stream(server, client):
    server.route("GET", f"{AI_ROOT}/models/search", json_response(200, {"success": True, "result": []}))
    server.route("POST", f"{AI_ROOT}/run/{MODEL}",
                 sse_stream_response(_stream(0.120, 0.025, ["One", ",", " two", ",", " three"], usage_tokens=9)))
    result = await run_probe(client, target(base_url=server.url + AI_ROOT))
    [warmup] = server.requests_to(f"{AI_ROOT}/models/search")
    [served] = server.requests_to(f"{AI_ROOT}/run/{MODEL}")

    assert result.ok, result.error
    assert result.error_kind is None and result.http_status == 200
    assert result.ttft_s == pytest.approx(served.ttft_truth_s(), abs=0.010)
    assert result.ttft_s >= 0.110
    assert result.output_tokens == 9 and result.token_count_source == TokenCountSource.USAGE
    assert result.token_chunks == 5
    # the warm-up opened the connection the measured request then used
    assert warmup.query == {"per_page": "1"} and warmup.headers["authorization"] == f"Bearer {KEY}"
    assert served.connection_id == warmup.connection_id
    assert served.json["max_tokens"] == 64 and served.json["stream"] is True
    assert served.json["messages"][0]["role"] == "user" and served.json["messages"][0]["content"]


async def test_probe_without_usage_counts_deltas(server, client):
    server.route("POST", f"{AI_ROOT}/run/{MODEL}",
                 sse_stream_response(_stream(0.050, 0.010, ["a", "b", "c"], usage_tokens=None)))
    result = await run_probe(client, target(base_url=server.url + AI_ROOT))
    assert result.ok, result.error
    assert result.output_tokens == 3 and result.token_count_source == TokenCountSource.ESTIMATE


async def test_bad_token_envelope_is_an_auth_error(server, client):
    envelope = {"result": None, "success": False, "errors": [{"code": 10000, "message": "Authentication error"}],
                "messages": []}
    server.route("POST", f"{AI_ROOT}/run/{MODEL}", json_response(401, envelope))
    result = await run_probe(client, target(base_url=server.url + AI_ROOT))
    assert not result.ok
    assert result.error_kind == ErrorKind.AUTH_ERROR and result.http_status == 401
    assert "Authentication error" in result.error and KEY not in result.error
    assert result.ttft_s is None
