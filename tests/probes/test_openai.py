"""OpenAI Chat Completions protocol: recorded transcripts and synthetic edge cases (parsing is pure,
so these replay bytes through the SSE decoder), plus the request it builds."""

from __future__ import annotations

import pytest

from monitor.probes.base import Delta, ProbeTarget, Secret, StreamDataError
from monitor.probes.framing import SSEDecoder, SSEEvent
from monitor.probes.openai import PROTOCOL, parse_event
from tests.probes.support import read_fixture, replay_bytes, replay_fixture


def test_recorded_openai_stream():
    replay = replay_fixture(PROTOCOL, "openai_chat_stream_len1.sse")
    assert len(replay.deltas) == 5
    role_only, text, finish, usage, done = replay.deltas
    assert not role_only.has_token  # role-only first chunk with content "" is not a token
    assert text.content == '{"' and text.has_token
    assert finish.finish_reason == "length" and not finish.has_token
    assert usage.usage_output_tokens == 1 and not usage.has_token  # usage with choices: []
    assert replay.done_is_last and replay.errors == []


def test_openrouter_midstream_error_after_a_comment():
    raw = read_fixture("openrouter_midstream_error.sse")
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.flush()
    assert decoder.comments == 1  # ": OPENROUTER PROCESSING" never reaches the JSON parser
    [delta] = [parse_event(e) for e in events]
    assert delta.error == "Provider disconnected unexpectedly"
    assert delta.finish_reason == "error"


def ev(data: str, event: str = "") -> SSEEvent:
    return SSEEvent(event=event, data=data)


@pytest.mark.parametrize(("data", "expected"), [
    ('{"choices":[{"index":0,"delta":{"reasoning":"Let me think"}}]}', Delta(reasoning="Let me think")),
    ('{"choices":[{"index":0,"delta":{"reasoning_content":"Hmm"}}]}', Delta(reasoning="Hmm")),
    ('{"choices":[{"index":0,"delta":{"content":null,"reasoning":null}}]}', Delta()),
    ('{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}', Delta(content="Hi")),
    ('{"choices":[{"index":0,"delta":{"content":" "}}]}', Delta(content=" ")),
    ('{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function",'
     '"function":{"name":"get_weather","arguments":""}}]}}]}', Delta(tool_call=True)),
    ('{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]}}]}',
     Delta(tool_call=True)),
    ('{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":""}}]}}]}', Delta()),
    ('{"choices":null,"usage":{"prompt_tokens":5,"completion_tokens":42,"total_tokens":47}}',
     Delta(usage_output_tokens=42, usage_input_tokens=5)),
    ('{"usage":{"completion_tokens":9}}', Delta(usage_output_tokens=9)),
    ('{"choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"stop"}],"usage":{"completion_tokens":3}}',
     Delta(content="end", finish_reason="stop", usage_output_tokens=3)),
    ('{"choices":[{"index":0,"delta":{}}],"usage":null}', Delta()),
    ('{"choices":[],"x_groq":{"id":"req_1","usage":{"completion_tokens":17,"completion_time":0.05}}}',
     Delta(usage_output_tokens=17)),
    ('{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"obfuscation":"abc"}', Delta(finish_reason="stop")),
    ("[DONE]", Delta(done=True)),
])
def test_chunk_shapes(data, expected):
    assert parse_event(ev(data)) == expected


@pytest.mark.parametrize(("data", "event", "text"), [
    ('{"error":{"message":"The server had an error","type":"server_error"}}', "", "The server had an error"),
    ('{"error":{"type":"overloaded"}}', "", "overloaded"),
    ('{"error":"plain string"}', "", "plain string"),
    ('{"choices":[],"x_groq":{"error":"stopped early"}}', "", "stopped early"),
    ('{"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}', "", "finish_reason"),
    ('{"message":"bad"}', "error", "error event"),
])
def test_in_band_errors(data, event, text):
    delta = parse_event(ev(data, event))
    assert delta.error and text in delta.error


def test_falsy_error_field_is_not_an_error():
    assert parse_event(ev('{"error":null,"choices":[{"index":0,"delta":{"content":"x"}}]}')).error is None


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"', "nul"])
def test_malformed_events_raise(data):
    with pytest.raises(StreamDataError):
        parse_event(ev(data))


def test_comments_and_crlf_framing():
    raw = (b": keep-alive\r\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
           b": OPENROUTER PROCESSING\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\r\r"
           b"data: [DONE]")  # no trailing blank line: flushed at EOF
    replay = replay_bytes(PROTOCOL, raw)
    assert [d.content for d in replay.deltas if d.content] == ["a", "b"]
    assert replay.done_is_last


def target(**kw) -> ProbeTarget:
    fields = dict(protocol="openai", base_url="https://api.example.com/v1/", model="gpt-x",
                  api_key=Secret("sk-test"), api_key_env="K", max_tokens=64)
    fields.update(kw)
    return ProbeTarget(**fields)


def test_request_shape_and_urls():
    spec = PROTOCOL.build_request(target(), "PROMPT")
    assert spec.url == "https://api.example.com/v1/chat/completions"
    assert spec.headers["authorization"] == "Bearer sk-test"
    assert spec.json == {
        "model": "gpt-x", "messages": [{"role": "user", "content": "PROMPT"}], "stream": True,
        "temperature": 0, "max_tokens": 64, "stream_options": {"include_usage": True},
    }
    assert PROTOCOL.warmup_url(target()) == "https://api.example.com/v1/models"
    assert PROTOCOL.warmup_headers(target()) == {"authorization": "Bearer sk-test"}
    assert PROTOCOL.requires_end_marker


def test_request_options():
    spec = PROTOCOL.build_request(target(api_key=None, api_key_env=None, options={
        "max_tokens_field": "max_completion_tokens", "include_usage": False,
        "extra_body": {"reasoning_format": "parsed"}}), "P")
    assert "authorization" not in spec.headers
    assert spec.json["max_completion_tokens"] == 64 and "max_tokens" not in spec.json
    assert "stream_options" not in spec.json
    assert spec.json["reasoning_format"] == "parsed"
    with pytest.raises(ValueError):
        PROTOCOL.build_request(target(options={"max_tokens_field": "max_output"}), "P")
