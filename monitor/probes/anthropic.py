"""Anthropic Messages streaming protocol (`POST {base_url}/messages`, base_url like
`https://api.anthropic.com/v1`).

Owns the request shape and the decoding of one SSE event into a `Delta` (PROTOCOLS.md §3):
- dispatch on `data.type` (falling back to the SSE `event:` name when `type` is missing);
- `content_block_delta`: `text_delta` -> content, `thinking_delta` -> reasoning,
  `input_json_delta` with a non-empty fragment -> tool call; `signature_delta`,
  `citations_delta` and unknown delta types carry no token;
- `content_block_start` of a `tool_use` block (it names the tool) counts as a tool-call token,
  and a text/thinking block that already carries text counts as that text;
- `message_delta.usage.output_tokens` is CUMULATIVE: it is the total, and `message_start`'s
  provisional count is not added to it (nor reported on its own);
- `message_stop` is the end marker; `ping` and unknown event types are ignored (the versioning
  policy allows new ones);
- `event: error` (e.g. `overloaded_error`, the in-stream form of HTTP 529) -> an error delta.
"""

from __future__ import annotations

from typing import Any, Mapping

from monitor.probes import wire
from monitor.probes.base import (
    Delta, Framing, ProbeTarget, RequestSpec, StreamDataError, ToolCallReply, ToolCallWire, ToolSpec, WireProtocol,
)
from monitor.probes.framing import SSEEvent

API_VERSION = "2023-06-01"


def _headers(target: ProbeTarget) -> dict[str, str]:
    return {"anthropic-version": API_VERSION, **wire.key_headers(target, "x-api-key")}


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    body: dict[str, Any] = {
        "model": target.model,
        "max_tokens": target.max_tokens,  # required by the Messages API
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    }
    wire.merge_extra_body(body, target)
    return RequestSpec(
        url=f"{wire.base_root(target)}/messages",
        headers={**_headers(target), "content-type": "application/json", "accept": "text/event-stream"},
        json=body,
    )


def warmup_url(target: ProbeTarget) -> str:
    # Listing models is free and needs no inference; 200 or 401 both open the connection.
    return f"{wire.base_root(target)}/models"


def liveness_url(target: ProbeTarget) -> str:
    """`GET /v1/models?limit=1`: authenticated, free, one entry long."""
    return f"{wire.base_root(target)}/models?limit=1"


def warmup_headers(target: ProbeTarget) -> dict[str, str]:
    return _headers(target)


def _mapping(obj: Mapping[str, Any], key: str, kind: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, Mapping):
        raise StreamDataError(f"{kind}: `{key}` is missing or not an object")
    return value


def _text(obj: Mapping[str, Any], key: str, kind: str) -> str:
    # Stricter than wire.optional_text: the key may be absent, but an explicit null is malformed.
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise StreamDataError(f"{kind}: `{key}` is {type(value).__name__}, expected a string")
    return value


def _error_text(obj: Mapping[str, Any]) -> str:
    error = obj.get("error")
    if isinstance(error, Mapping):
        kind, message = error.get("type"), error.get("message")
        if kind and message:
            return f"{kind}: {message}"
        return str(message or kind or "error event")
    return str(error) if error else "error event"


def error_message(doc: object) -> str | None:
    """An HTTP error body: `{"type": "error", "error": {"type", "message"}}` (PROTOCOLS.md §3),
    worded like the in-stream error event ("overloaded_error: Overloaded")."""
    if isinstance(doc, Mapping) and isinstance(doc.get("error"), Mapping):
        return _error_text(doc)
    return None


def _content_block_delta(obj: Mapping[str, Any]) -> Delta | None:
    delta = _mapping(obj, "delta", "content_block_delta")
    kind = delta.get("type")
    if kind == "text_delta":
        text = _text(delta, "text", kind)
        return Delta(content=text) if text else None
    if kind == "thinking_delta":
        thinking = _text(delta, "thinking", kind)
        return Delta(reasoning=thinking) if thinking else None
    if kind == "input_json_delta":
        # The first fragment of a tool call's arguments is often "": not a token.
        return Delta(tool_call=True) if _text(delta, "partial_json", kind) else None
    return None  # signature_delta, citations_delta, future delta types


def _content_block_start(obj: Mapping[str, Any]) -> Delta | None:
    block = _mapping(obj, "content_block", "content_block_start")
    kind = block.get("type")
    if kind == "tool_use":
        return Delta(tool_call=True) if block.get("name") else None
    if kind == "text":
        text = _text(block, "text", "content_block_start")
        return Delta(content=text) if text else None
    if kind == "thinking":
        thinking = _text(block, "thinking", "content_block_start")
        return Delta(reasoning=thinking) if thinking else None
    return None


def input_tokens(usage: Mapping[str, Any]) -> int | None:
    """The whole prompt's size: `input_tokens` counts only the uncached part, so the cache
    writes and reads are added; None when `input_tokens` is absent."""
    base = wire.int_or_none(usage.get("input_tokens"))
    if base is None:
        return None
    cached = (wire.int_or_none(usage.get(key)) for key in ("cache_creation_input_tokens", "cache_read_input_tokens"))
    return base + sum(count for count in cached if count is not None)


def _message_start(obj: Mapping[str, Any]) -> Delta | None:
    """Only the prompt size: message_start's output_tokens is provisional."""
    message = obj.get("message")
    usage = message.get("usage") if isinstance(message, Mapping) else None
    tokens = input_tokens(usage) if isinstance(usage, Mapping) else None
    return None if tokens is None else Delta(usage_input_tokens=tokens)


def _message_delta(obj: Mapping[str, Any]) -> Delta:
    delta = obj.get("delta") or {}
    usage = obj.get("usage") or {}
    if not isinstance(delta, Mapping) or not isinstance(usage, Mapping):
        raise StreamDataError("message_delta: `delta`/`usage` is not an object")
    stop_reason = delta.get("stop_reason")
    return Delta(
        usage_output_tokens=wire.int_or_none(usage.get("output_tokens")),
        # Newer API versions repeat the (cumulative) input counts here.
        usage_input_tokens=input_tokens(usage),
        finish_reason=stop_reason if isinstance(stop_reason, str) else None,
    )


def parse_event(event: SSEEvent) -> Delta | None:
    if not event.data.strip():
        return None
    obj = wire.json_object(event.data, what="Anthropic stream")
    kind = obj.get("type") or event.event
    if kind == "content_block_delta":
        return _content_block_delta(obj)
    if kind == "content_block_start":
        return _content_block_start(obj)
    if kind == "message_delta":
        return _message_delta(obj)
    if kind == "message_start":
        return _message_start(obj)
    if kind == "message_stop":
        return Delta(done=True)
    if kind == "error":
        return Delta(error=_error_text(obj))
    # content_block_stop, ping, unknown types.
    return None


def build_tool_request(target: ProbeTarget, prompt: str, tool: ToolSpec) -> RequestSpec:
    """The tool-call canary: one non-streaming request forcing a call of `tool`
    (`tool_choice: {"type": "tool", "name": ...}`)."""
    body: dict[str, Any] = {
        "model": target.model,
        "max_tokens": target.max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [{"name": tool.name, "description": tool.description, "input_schema": dict(tool.parameters)}],
        "tool_choice": {"type": "tool", "name": tool.name},
    }
    wire.merge_extra_body(body, target)
    return RequestSpec(
        url=f"{wire.base_root(target)}/messages",
        headers={**_headers(target), "content-type": "application/json", "accept": "application/json"},
        json=body,
    )


def parse_tool_response(doc: object) -> ToolCallReply:
    """`content[]` blocks of type `tool_use` with `name` and `input` (an object on the wire; any
    other value is passed on for the checker to judge); usage `input_tokens` (+ cache) and
    `output_tokens`."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("content"), list):
        raise StreamDataError("not a Messages response: no `content` list")
    calls = tuple(
        (block.get("name"), block.get("input"))
        for block in doc["content"]
        if isinstance(block, Mapping) and block.get("type") == "tool_use"
    )
    usage = doc.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    return ToolCallReply(calls=calls, input_tokens=input_tokens(usage),
                         output_tokens=wire.int_or_none(usage.get("output_tokens")))


PROTOCOL = WireProtocol(
    name="anthropic",
    framing=Framing.SSE,
    build_request=build_request,
    parse_event=parse_event,
    warmup_url=warmup_url,
    warmup_headers=warmup_headers,
    liveness_url=liveness_url,
    liveness_headers=warmup_headers,
    requires_end_marker=True,
    error_message=error_message,
    tool_call=ToolCallWire(build_request=build_tool_request, parse_response=parse_tool_response),
)
