"""Streams in four wire formats (openai, anthropic, gemini, ollama) with chosen hostile values.

`stream_route(protocol, words=..., usage=..., finish=...)` gives the path and the scripted
response of one streaming answer whose usage count and finish reason are whatever the test picks:
any JSON value, or raw bytes (`Raw`) spliced into the JSON text unescaped (non-UTF-8 bytes, NUL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from monitor.probes.base import ProbeTarget, Secret
from monitor.testing.stream_server import Frame, ScriptedResponse, sse_stream_response

MODEL = "test-model"
KEY = "sk-hostile-provider-test-0042"
PROTOCOLS = ("openai", "anthropic", "gemini", "ollama")


@dataclass(frozen=True)
class Raw:
    """Bytes written into the JSON text as they are, in place of a JSON string value."""

    data: bytes


_MARK = "\u2063raw\u2063"


def _encode(obj: Any) -> tuple[Any, list[bytes]]:
    raws: list[bytes] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.data)
            return _MARK
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(obj), raws


def dumps(obj: Any) -> bytes:
    """JSON bytes of `obj`; each `Raw` becomes `"<its bytes>"` unescaped."""
    walked, raws = _encode(obj)
    text = json.dumps(walked).encode("utf-8", "surrogatepass")
    for raw in raws:
        text = text.replace(json.dumps(_MARK).encode(), b'"' + raw + b'"', 1)
    return text


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + dumps(obj) + b"\n\n"


def base_url(protocol: str, server_url: str) -> str:
    return {"openai": f"{server_url}/v1", "anthropic": f"{server_url}/v1",
            "gemini": f"{server_url}/v1beta", "ollama": server_url}[protocol]


def target(protocol: str, server_url: str, **kw: Any) -> ProbeTarget:
    fields: dict[str, Any] = dict(protocol=protocol, base_url=base_url(protocol, server_url), model=MODEL,
                                  api_key=Secret(KEY), api_key_env="TEST_KEY", max_tokens=128,
                                  timeout_s=10.0, connect_timeout_s=2.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


def chat_path(protocol: str) -> str:
    return {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
            "gemini": f"/v1beta/models/{MODEL}:streamGenerateContent", "ollama": "/api/chat"}[protocol]


def stream_route(protocol: str, *, words: list[str], usage: Any, finish: Any = "stop",
                 gap_s: float = 0.002) -> tuple[str, ScriptedResponse]:
    """(path, response) of a clean stream of `words` (one token-bearing chunk each) whose usage
    count is `usage` and whose finish reason is `finish`."""
    delays = [0.0] + [gap_s] * (len(words) - 1)
    if protocol == "openai":
        frames = [Frame(d, _sse({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}), token=True)
                  for d, w in zip(delays, words)]
        frames += [Frame(0.0, _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})),
                   Frame(0.0, _sse({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": usage}})),
                   Frame(0.0, b"data: [DONE]\n\n")]
        return chat_path(protocol), sse_stream_response(frames)
    if protocol == "anthropic":
        frames = [Frame(0.0, _sse({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": MODEL,
            "usage": {"input_tokens": 9, "output_tokens": 1}}}, "message_start"))]
        frames += [Frame(d, _sse({"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "text_delta", "text": w}}, "content_block_delta"), token=True)
                   for d, w in zip(delays, words)]
        frames += [Frame(0.0, _sse({"type": "message_delta", "delta": {"stop_reason": finish},
                                    "usage": {"output_tokens": usage}}, "message_delta")),
                   Frame(0.0, _sse({"type": "message_stop"}, "message_stop"))]
        return chat_path(protocol), sse_stream_response(frames)
    if protocol == "gemini":
        def chunk(text: str, last: bool) -> bytes:
            candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            body: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL}
            if last:
                candidate["finishReason"] = finish
                body["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": usage}
            return _sse(body)
        frames = [Frame(d, chunk(w, i == len(words) - 1), token=True) for i, (d, w) in enumerate(zip(delays, words))]
        return chat_path(protocol), sse_stream_response(frames)
    if protocol == "ollama":
        def line(obj: Any) -> bytes:
            return dumps(obj) + b"\n"
        frames = [Frame(d, line({"model": MODEL, "message": {"role": "assistant", "content": w}, "done": False}),
                        token=True) for d, w in zip(delays, words)]
        frames.append(Frame(0.0, line({"model": MODEL, "message": {"role": "assistant", "content": ""},
                                       "done": True, "done_reason": finish, "eval_count": usage})))
        return chat_path(protocol), ScriptedResponse(status=200, headers={"content-type": "application/x-ndjson"},
                                                     frames=frames)
    raise ValueError(protocol)


__all__ = ["KEY", "MODEL", "PROTOCOLS", "Raw", "base_url", "chat_path", "dumps", "stream_route",
           "target"]
