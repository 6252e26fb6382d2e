"""OpenAI Chat Completions streaming, declared as a WireProtocol (no I/O, no clocks).

Covers every OpenAI-compatible server: api.openai.com, Cloudflare `/ai/v1`, OpenRouter, Groq,
Together, vLLM, llama.cpp, Ollama `/v1`. Wire details:
`docs/PROTOCOLS.md` §1.

Target options (all optional):
- `max_tokens_field`: "max_tokens" (default, what most compatible servers read) or
  "max_completion_tokens" (api.openai.com, required by o-series models).
- `include_usage`: false for servers that reject `stream_options` (default true).
- `extra_body`: a mapping merged into the request body (e.g. `{"reasoning_format": "parsed"}`).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from monitor.probes import wire
from monitor.probes.base import (
    Delta, Framing, ProbeTarget, ProtocolOptions, RequestSpec, StreamDataError, ToolCallReply, ToolCallWire,
    ToolSpec, WireProtocol,
)
from monitor.probes.framing import SSEEvent

_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


class Options(ProtocolOptions):
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    include_usage: bool = True


def _auth_headers(target: ProbeTarget) -> dict[str, str]:
    return wire.bearer_headers(target, header="authorization")


def _chat_body(target: ProbeTarget, prompt: str, *, stream: bool) -> dict[str, Any]:
    """The chat body both requests share (model, one user message, temperature 0, the
    configured max-tokens field)."""
    options: Mapping[str, Any] = target.options or {}
    max_tokens_field = options.get("max_tokens_field", "max_tokens")
    if max_tokens_field not in _MAX_TOKENS_FIELDS:
        raise ValueError(f"options.max_tokens_field must be one of {', '.join(_MAX_TOKENS_FIELDS)}")
    return {
        "model": target.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "temperature": 0,
        max_tokens_field: target.max_tokens,
    }


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    options: Mapping[str, Any] = target.options or {}
    body = _chat_body(target, prompt, stream=True)
    if options.get("include_usage", True):
        body["stream_options"] = {"include_usage": True}
    wire.merge_extra_body(body, target)
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream",
        **_auth_headers(target),
    }
    return RequestSpec(url=f"{wire.base_root(target)}/chat/completions", headers=headers, json=body)


def warmup_url(target: ProbeTarget) -> str:
    return f"{wire.base_root(target)}/models"


def liveness_url(target: ProbeTarget) -> str:
    """Listing models: free, authenticated, offered by nearly every compatible server."""
    return warmup_url(target)


def warmup_headers(target: ProbeTarget) -> dict[str, str]:
    return _auth_headers(target)


def parse_event(event: SSEEvent) -> Delta | None:
    data = event.data.strip()
    if not data:
        return None
    if data.startswith("[DONE]"):
        return Delta(done=True)
    chunk = wire.json_object(data, what="OpenAI stream")

    error = _error_text(chunk.get("error"))
    if error is None and event.event == "error":
        error = "error event"
    x_groq = chunk.get("x_groq")
    if error is None and isinstance(x_groq, dict):
        error = _error_text(x_groq.get("error"))

    content, reasoning, tool_call, finish_reason = "", "", False, None
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        finish_reason = choice.get("finish_reason") or None
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = _text(delta.get("content"))
            reasoning = wire.reasoning_text(delta)
            tool_call = wire.has_tool_call(delta)
    if error is None and finish_reason == "error":
        error = "stream finished with finish_reason 'error'"

    return Delta(
        content=content,
        reasoning=reasoning,
        tool_call=tool_call,
        usage_output_tokens=_usage_tokens(chunk),
        usage_input_tokens=_usage_tokens(chunk, "prompt_tokens"),
        finish_reason=finish_reason,
        error=error,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""




def error_message(doc: object) -> str | None:
    """An HTTP error body: `{"error": {"message", "type", "code", ...}}` (PROTOCOLS.md §1)."""
    if isinstance(doc, Mapping):
        error = doc.get("error")
        if isinstance(error, Mapping):
            message = error.get("message") or error.get("type") or error.get("code")
            return str(message) if message else None
    return None


def _usage_tokens(chunk: Mapping[str, Any], key: str = "completion_tokens") -> int | None:
    """`key` (completion_tokens, prompt_tokens) from `usage` on any chunk, else from Groq's
    `x_groq.usage`."""
    for holder in (chunk, chunk.get("x_groq")):
        if isinstance(holder, dict):
            usage = holder.get("usage")
            if isinstance(usage, dict):
                tokens = wire.int_or_none(usage.get(key))
                if tokens is not None:
                    return tokens
    return None


def _error_text(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or error.get("code")
        return str(message) if message else "error in stream"
    return str(error)


def build_tool_request(target: ProbeTarget, prompt: str, tool: ToolSpec) -> RequestSpec:
    """The tool-call canary: one non-streaming request forcing a call of `tool`
    (`tool_choice: {"type": "function", "function": {"name": ...}}`)."""
    body = {
        **_chat_body(target, prompt, stream=False),
        "tools": [{"type": "function", "function": {
            "name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}}],
        "tool_choice": {"type": "function", "function": {"name": tool.name}},
    }
    wire.merge_extra_body(body, target)
    headers = {"content-type": "application/json", "accept": "application/json", **_auth_headers(target)}
    return RequestSpec(url=f"{wire.base_root(target)}/chat/completions", headers=headers, json=body)


def parse_tool_response(doc: object) -> ToolCallReply:
    """`choices[0].message.tool_calls[].function.{name, arguments}` (arguments: a JSON text), or
    the legacy `function_call`; usage `prompt_tokens` / `completion_tokens`."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("choices"), list):
        raise StreamDataError("not a chat completion: no `choices` list")
    calls: list[tuple[object, object]] = []
    choices = doc["choices"]
    message = choices[0].get("message") if choices and isinstance(choices[0], Mapping) else None
    if isinstance(message, Mapping):
        entries = message.get("tool_calls")
        if isinstance(entries, list):
            for entry in entries:
                function = entry.get("function") if isinstance(entry, Mapping) else None
                if isinstance(function, Mapping):
                    calls.append((function.get("name"), function.get("arguments")))
        legacy = message.get("function_call")
        if not calls and isinstance(legacy, Mapping):
            calls.append((legacy.get("name"), legacy.get("arguments")))
    return ToolCallReply(calls=tuple(calls), input_tokens=_usage_tokens(doc, "prompt_tokens"),
                         output_tokens=_usage_tokens(doc))


PROTOCOL = WireProtocol(
    name="openai",
    framing=Framing.SSE,
    build_request=build_request,
    parse_event=parse_event,
    warmup_url=warmup_url,
    warmup_headers=warmup_headers,
    liveness_url=liveness_url,
    liveness_headers=warmup_headers,
    requires_end_marker=True,
    options_model=Options,
    error_message=error_message,
    tool_call=ToolCallWire(build_request=build_tool_request, parse_response=parse_tool_response),
)
