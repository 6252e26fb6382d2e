"""Ollama native /api/chat protocol: transcripts, request shape, and probes over a real socket."""

from __future__ import annotations

import json

import pytest

from monitor.probes.base import Delta, ProbeTarget, Secret, ServerTimings, StreamDataError, TokenCountSource
from monitor.probes.engine import run_probe
from monitor.probes.ollama import PROTOCOL, parse_event
from tests.probes.support import replay_fixture
from monitor.testing.stream_server import Frame, ScriptedResponse, json_response

MODEL = "llama3.2:1b"


def target(base_url: str = "http://127.0.0.1:11434", **kw) -> ProbeTarget:
    fields = dict(protocol="ollama", base_url=base_url, model=MODEL, max_tokens=48,
                  timeout_s=10.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


# ---------------------------------------------------------------------------- transcripts

def test_docs_chat_transcript():
    replay = replay_fixture(PROTOCOL, "ollama_chat_stream.ndjson")
    assert replay.content == "The"
    assert replay.token_events == 1
    assert replay.usage == 282  # eval_count of the done line
    assert replay.done_is_last
    assert replay.errors == []


def test_docs_generate_midstream_error_transcript():
    # /api/generate puts text in `response`; the parser reads that shape too (decision: one
    # parser for both endpoints, so the documented error example exercises the real path).
    replay = replay_fixture(PROTOCOL, "ollama_generate_midstream_error.ndjson")
    assert replay.content == " Yes.Ican"
    assert replay.token_events == 4
    assert replay.errors == ["an error was encountered while running the model"]
    assert replay.deltas[-1].error and not replay.done


def test_thinking_transcript():
    replay = replay_fixture(PROTOCOL, "synthetic_ollama_chat_thinking.ndjson")
    assert replay.reasoning == "Okay, simple."
    assert replay.content == "Hello! How"
    assert replay.token_events == 5  # the empty content line is skipped
    assert replay.usage == 12 and replay.finish_reason == "length"
    assert replay.done_is_last


def test_missing_metrics_are_unknown_not_zero():
    replay = replay_fixture(PROTOCOL, "synthetic_ollama_chat_no_metrics.ndjson")
    assert replay.content == "Hi there"
    assert replay.usage is None  # not 0: the engine then falls back to counting deltas
    assert replay.finish_reason == "stop" and replay.done_is_last


@pytest.mark.parametrize("line, expected", [
    ('{"message":{"role":"assistant","content":""},"done":false}', None),
    ('{"message":{"role":"assistant","content":"x"},"done":false}', Delta(content="x")),
    ('{"message":{"role":"assistant","content":"","thinking":"t"},"done":false}', Delta(reasoning="t")),
    ('{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}',
     Delta(tool_call=True)),
    ('{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":0}',
     Delta(done=True, finish_reason="stop", usage_output_tokens=0, server_timings=ServerTimings(eval_tokens=0))),
    ('{"response":"","done":true,"done_reason":"load"}', Delta(done=True, finish_reason="load")),
    ('{"error":"model requires more system memory"}', Delta(error="model requires more system memory")),
])
def test_parse_event_shapes(line, expected):
    assert parse_event(line) == expected


@pytest.mark.parametrize("line", [
    '{"message": {"content": "x"',
    '"text"',
    '{"message": "hello", "done": false}',
    '{"message": {"content": 5}, "done": false}',
    '{"response": ["a"], "done": false}',
])
def test_malformed_lines_raise_stream_data_error(line):
    with pytest.raises(StreamDataError):
        parse_event(line)


# ---------------------------------------------------------------------------- request shape

def test_request_shape_local():
    t = target(base_url="http://127.0.0.1:11434/")
    spec = PROTOCOL.build_request(t, "PROMPT-5")
    assert spec.url == "http://127.0.0.1:11434/api/chat"
    assert "Authorization" not in spec.headers
    assert spec.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "PROMPT-5"}],
        "stream": True,
        "think": False,
        "options": {"num_predict": 48, "temperature": 0},
    }
    assert PROTOCOL.warmup_url(t) == "http://127.0.0.1:11434/api/version"
    assert PROTOCOL.warmup_headers(t) == {}


def test_key_travels_only_in_headers_for_ollama_cloud():
    key = "ollama-cloud-key-31"
    t = target(base_url="https://ollama.com", api_key=Secret(key), api_key_env="OLLAMA_API_KEY")
    spec = PROTOCOL.build_request(t, "hi")
    assert key not in spec.url and key not in json.dumps(spec.json)
    assert [name for name, value in spec.headers.items() if key in value] == ["Authorization"]
    assert spec.headers["Authorization"] == f"Bearer {key}"
    assert PROTOCOL.warmup_headers(t) == {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("think, expected", [(True, True), ("low", "low"), (None, ...)])
def test_think_option(think, expected):
    body = PROTOCOL.build_request(target(options={"think": think}), "hi").json
    assert body.get("think", ...) == expected



# ---------------------------------------------------------------------------- over a real socket

def _line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _content(text: str) -> dict:
    return {"model": MODEL, "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text}, "done": False}


def _done(eval_count: int | None) -> dict:
    line = {"model": MODEL, "created_at": "2025-01-01T00:00:01Z", "message": {"role": "assistant", "content": ""},
            "done": True, "done_reason": "stop", "total_duration": 500_000_000, "eval_duration": 300_000_000}
    if eval_count is not None:
        line["eval_count"] = eval_count
    return line


def _ndjson(frames: list[Frame]) -> ScriptedResponse:
    return ScriptedResponse(status=200, headers={"content-type": "application/x-ndjson"}, frames=frames)


async def test_probe_measures_an_ndjson_stream(server, client):
    frames = [Frame(0.090 if i == 0 else 0.015, _line(_content(w)), token=True)
              for i, w in enumerate(["One", ",", " two", ",", " three"])]
    frames.append(Frame(0.0, _line(_done(eval_count=6))))
    server.route("GET", "/api/version", json_response(200, {"version": "0.12.0"}))
    server.route("POST", "/api/chat", _ndjson(frames))
    result = await run_probe(client, target(base_url=server.url))
    [warmup] = server.requests_to("/api/version")
    [served] = server.requests_to("/api/chat")

    assert result.ok, result.error
    assert result.ttft_s == pytest.approx(served.ttft_truth_s(), abs=0.010)
    assert result.ttft_s >= 0.080
    assert result.output_tokens == 6 and result.token_count_source == TokenCountSource.USAGE
    assert result.token_chunks == 5 and result.finish_reason == "stop"
    assert served.connection_id == warmup.connection_id
    assert served.json["options"] == {"num_predict": 48, "temperature": 0} and served.json["think"] is False


async def test_done_line_without_eval_count_falls_back_to_counting(server, client):
    frames = [Frame(0.020, _line(_content("a")), token=True), Frame(0.010, _line(_content("b")), token=True),
              Frame(0.0, _line(_done(eval_count=None)))]
    server.route("POST", "/api/chat", _ndjson(frames))
    result = await run_probe(client, target(base_url=server.url))
    assert result.ok, result.error
    assert result.output_tokens == 2 and result.token_count_source == TokenCountSource.ESTIMATE
