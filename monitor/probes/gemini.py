"""Google Gemini API streaming protocol
(`POST {base_url}/models/{model}:streamGenerateContent?alt=sse`, base_url like
`https://generativelanguage.googleapis.com/v1beta`).

Owns the request shape and the decoding of one SSE event into a `Delta` (PROTOCOLS.md §4):
- each event is a whole `GenerateContentResponse`; text is `candidates[0].content.parts[*].text`;
  parts marked `"thought": true` are thought summaries: reasoning, never content;
  a `functionCall` part is a tool call;
- `usageMetadata` is cumulative on every chunk; output tokens =
  `candidatesTokenCount + thoughtsTokenCount` (thinking tokens are not inside the first), so
  each chunk reports its running total and the engine keeps the last one; a chunk with neither
  count (early chunks) reports no usage;
- there is no end marker: the stream ends at EOF (`requires_end_marker=False`). The last chunk
  carries `finishReason` (older servers put it on every chunk, so it is no end marker either), so
  a stream that reaches EOF without any finish reason was cut short (`requires_finish_reason`);
- a chunk with a top-level `error`, or a blocked prompt (`promptFeedback.blockReason` with no
  candidates), becomes an error delta; an error object written raw, without `data:`, reaches
  `parse_event` too (`monitor.probes.framing` returns raw JSON objects as events).

The key goes in the `x-goog-api-key` header, never in the `?key=` query parameter, so it stays
out of URLs (which end up in logs and exception texts).
"""

from __future__ import annotations

from typing import Any, Mapping

from monitor.probes import wire
from monitor.probes.base import (
    Delta, Framing, ProbeTarget, ProtocolOptions, RequestSpec, StreamDataError, ToolCallReply, ToolCallWire,
    ToolSpec, WireProtocol,
)
from monitor.probes.framing import SSEEvent

# Model families that accept `thinkingBudget: 0` (thinking off). 2.5 Pro and Gemini 3 cannot turn
# thinking off (a 0 budget is a 400 there) and pre-2.5 models have no thinking config, so for them
# nothing is sent and any thinking shows up as `thoughtsTokenCount`. The endpoint option
# `thinking_budget` overrides this: an int is sent as is, None sends no thinkingConfig.
_THINKING_OFF_PREFIXES = ("gemini-2.5-flash",)


def _model_name(target: ProbeTarget) -> str:
    # The API names models `models/<id>`; accept either spelling in the config.
    return target.model.removeprefix("models/")


class Options(ProtocolOptions):
    # thinkingBudget to send; null sends no thinkingConfig; unset: 0 for models that can turn
    # thinking off, else the model's default.
    thinking_budget: int | None = None


def _headers(target: ProbeTarget) -> dict[str, str]:
    return wire.key_headers(target, "x-goog-api-key")


def thinking_budget(target: ProbeTarget) -> int | None:
    """The thinkingBudget to send for this target, or None to send no thinkingConfig."""
    if "thinking_budget" in target.options:
        budget = target.options["thinking_budget"]
        return None if budget is None else int(budget)
    return 0 if _model_name(target).startswith(_THINKING_OFF_PREFIXES) else None


def _content_body(target: ProbeTarget, prompt: str) -> dict[str, Any]:
    """The body both requests share: one user turn, temperature 0, max tokens, thinking budget."""
    generation_config: dict[str, Any] = {"maxOutputTokens": target.max_tokens, "temperature": 0}
    budget = thinking_budget(target)
    if budget is not None:
        generation_config["thinkingConfig"] = {"thinkingBudget": budget}
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation_config,
    }


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    body = _content_body(target, prompt)
    wire.merge_extra_body(body, target)
    return RequestSpec(
        url=f"{wire.base_root(target)}/models/{_model_name(target)}:streamGenerateContent?alt=sse",
        headers={**_headers(target), "Content-Type": "application/json", "Accept": "text/event-stream"},
        json=body,
    )


def warmup_url(target: ProbeTarget) -> str:
    return f"{wire.base_root(target)}/models?pageSize=1"


def liveness_url(target: ProbeTarget) -> str:
    """`GET models?pageSize=1`, the warm-up request: authenticated, free."""
    return warmup_url(target)


def warmup_headers(target: ProbeTarget) -> dict[str, str]:
    return _headers(target)


def output_tokens(usage: Any) -> int | None:
    """candidatesTokenCount + thoughtsTokenCount, or None when the chunk carries neither."""
    if not isinstance(usage, Mapping):
        return None
    counts = [wire.int_or_none(usage.get(key)) for key in ("candidatesTokenCount", "thoughtsTokenCount")]
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


def prompt_tokens(usage: Any) -> int | None:
    """`promptTokenCount` (cached prompt tokens included), or None when the chunk has none."""
    return wire.int_or_none(usage.get("promptTokenCount")) if isinstance(usage, Mapping) else None


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        status, code, message = error.get("status"), error.get("code"), error.get("message")
        label = " ".join(str(x) for x in (code, status) if x is not None)
        if label and message:
            return f"{label}: {message}"
        return str(message or label or "error")
    return str(error)


def error_message(doc: object) -> str | None:
    """An HTTP error body: `{"error": {"code", "message", "status", "details"}}`, sometimes
    wrapped in a list (PROTOCOLS.md §4), worded like the in-stream error ("429 RESOURCE_EXHAUSTED:
    ...")."""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if isinstance(doc, Mapping) and isinstance(doc.get("error"), Mapping):
        return _error_text(doc["error"])
    return None


def parse_event(event: SSEEvent) -> Delta | None:
    if not event.data.strip():
        return None
    obj = wire.json_object(event.data, what="Gemini stream")
    if obj.get("error"):
        return Delta(error=_error_text(obj["error"]))

    candidates = obj.get("candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise StreamDataError("`candidates` is not a list")
    if not candidates:
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            return Delta(error=f"prompt blocked: {feedback['blockReason']}")

    content, reasoning, tool_call, finish_reason = "", "", False, None
    if candidates:
        candidate = candidates[0]
        if not isinstance(candidate, Mapping):
            raise StreamDataError("`candidates[0]` is not an object")
        body = candidate.get("content") or {}
        if not isinstance(body, Mapping):
            raise StreamDataError("`candidates[0].content` is not an object")
        parts = body.get("parts") or []
        if not isinstance(parts, list):
            raise StreamDataError("`candidates[0].content.parts` is not a list")
        for part in parts:
            if not isinstance(part, Mapping):
                raise StreamDataError("a content part is not an object")
            text = wire.optional_text(part.get("text"), field="candidates[0].content.parts[].text")
            if part.get("thought") is True:
                reasoning += text
            else:
                content += text
            tool_call = tool_call or bool(part.get("functionCall"))
        if isinstance(candidate.get("finishReason"), str):
            finish_reason = candidate["finishReason"]

    return wire.delta_or_none(
        content=content,
        reasoning=reasoning,
        tool_call=tool_call,
        usage_output_tokens=output_tokens(obj.get("usageMetadata")),
        finish_reason=finish_reason,
        usage_input_tokens=prompt_tokens(obj.get("usageMetadata")),
    )


def build_tool_request(target: ProbeTarget, prompt: str, tool: ToolSpec) -> RequestSpec:
    """The tool-call canary: one `generateContent` (non-streaming) request forcing a call of
    `tool` (`functionCallingConfig: {mode: ANY, allowedFunctionNames: [...]}`)."""
    body = {
        **_content_body(target, prompt),
        "tools": [{"functionDeclarations": [
            {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [tool.name]}},
    }
    wire.merge_extra_body(body, target)
    return RequestSpec(
        url=f"{wire.base_root(target)}/models/{_model_name(target)}:generateContent",
        headers={**_headers(target), "Content-Type": "application/json", "Accept": "application/json"},
        json=body,
    )


def parse_tool_response(doc: object) -> ToolCallReply:
    """`candidates[0].content.parts[].functionCall.{name, args}` (args: an object on the wire);
    usage `promptTokenCount` and `candidatesTokenCount + thoughtsTokenCount`."""
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, Mapping):
        raise StreamDataError("not a GenerateContentResponse object")
    calls: list[tuple[object, object]] = []
    candidates = doc.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], Mapping):
        content = candidates[0].get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        for part in parts if isinstance(parts, list) else []:
            call = part.get("functionCall") if isinstance(part, Mapping) else None
            if isinstance(call, Mapping):
                calls.append((call.get("name"), call.get("args")))
    elif "candidates" not in doc and "usageMetadata" not in doc:
        raise StreamDataError("not a GenerateContentResponse: no `candidates`")
    usage = doc.get("usageMetadata")
    return ToolCallReply(calls=tuple(calls), input_tokens=prompt_tokens(usage), output_tokens=output_tokens(usage))


PROTOCOL = WireProtocol(
    name="gemini",
    framing=Framing.SSE,
    build_request=build_request,
    parse_event=parse_event,
    warmup_url=warmup_url,
    warmup_headers=warmup_headers,
    liveness_url=liveness_url,
    liveness_headers=warmup_headers,
    requires_end_marker=False,
    requires_finish_reason=True,
    options_model=Options,
    error_message=error_message,
    tool_call=ToolCallWire(build_request=build_tool_request, parse_response=parse_tool_response),
)
