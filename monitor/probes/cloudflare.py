"""Cloudflare Workers AI native streaming protocol (`POST {base_url}/run/{model}`).

Owns the request shape and the decoding of one SSE event into a `Delta`. `base_url` is the
account's AI root, e.g. `https://api.cloudflare.com/client/v4/accounts/<account_id>/ai`.

Wire facts (PROTOCOLS.md §2):
- text frames are `data: {"response": "<text>", "p": "<padding>"}`; `p` is random-length padding
  against the token-length side channel and is ignored; frames whose `response` is "" carry no
  token (padding-only frames exist), so they never count towards TTFT;
- the last JSON frame is `{"response": "", "usage": {"completion_tokens": N, ...}}`, then
  `data: [DONE]`;
- newer models emit OpenAI-shaped chunks on this same endpoint (`choices[0].delta.content`,
  `delta.reasoning` / `delta.reasoning_content`, `tool_calls`), still ending with the usage frame;
  both shapes are accepted in any mix;
- errors use the Cloudflare v4 envelope `{"success": false, "errors": [{"code", "message"}]}`;
  the mid-stream error shape is undocumented, so an envelope or a top-level `error` inside the
  stream becomes an error delta.

`max_tokens` is always sent: Workers AI silently caps output at 256 tokens otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

from monitor.probes import wire
from monitor.probes.base import Delta, Framing, ProbeTarget, RequestSpec, StreamDataError, WireProtocol
from monitor.probes.framing import SSEEvent

# The warm-up asks the model catalogue for one entry: an authenticated, cheap, non-inference
# call on the same host (api.cloudflare.com), so the measured request finds the TLS connection
# open. Its status (200, or 401/403 with a bad token) does not matter.
_WARMUP_PATH = "/models/search?per_page=1"


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": target.max_tokens,
        "temperature": 0,
    }
    wire.merge_extra_body(body, target)
    # The model id (`@cf/meta/llama-3.2-1b-instruct`) goes into the path as is: its `@` and `/`
    # are what the API expects there.
    return RequestSpec(
        url=f"{wire.base_root(target)}/run/{target.model.lstrip('/')}",
        headers={
            **wire.bearer_headers(target),
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        },
        json=body,
    )


def warmup_url(target: ProbeTarget) -> str:
    return wire.base_root(target) + _WARMUP_PATH


def liveness_url(target: ProbeTarget) -> str:
    """The warm-up's one-entry model search on the account's AI root: authenticated and free,
    but served by Cloudflare's API layer, not by Workers AI inference itself."""
    return warmup_url(target)


def warmup_headers(target: ProbeTarget) -> dict[str, str]:
    return wire.bearer_headers(target)


def error_text(obj: Mapping[str, Any]) -> str | None:
    """The error carried by a Cloudflare v4 envelope or a top-level `error`, else None."""
    if obj.get("success") is False or (obj.get("errors") and not obj.get("result")):
        errors = obj.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if isinstance(err, Mapping):
                    code, message = err.get("code"), err.get("message")
                    parts.append(f"{code}: {message}" if code is not None else str(message))
                else:
                    parts.append(str(err))
            return "; ".join(parts)
        return "Workers AI reported success=false"
    error = obj.get("error")
    if error:
        if isinstance(error, Mapping):
            return str(error.get("message") or error.get("code") or "error")
        return str(error)
    return None


def error_message(doc: object) -> str | None:
    """An HTTP error body: the v4 envelope (`errors[].code/message`), worded as in the stream."""
    return error_text(doc) if isinstance(doc, Mapping) else None


def parse_event(event: SSEEvent) -> Delta | None:
    data = event.data.strip()
    if not data:
        return None
    if data.startswith("[DONE]"):
        return Delta(done=True)
    obj = wire.json_object(data, what="Workers AI stream")

    error = error_text(obj)
    if error is not None:
        return Delta(error=error)

    content = wire.optional_text(obj.get("response"), field="response")
    reasoning = ""
    tool_call = bool(obj.get("tool_calls"))
    finish_reason: str | None = None

    choices = obj.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise StreamDataError("`choices` is not a list")
    if choices:
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise StreamDataError("`choices[0]` is not an object")
        delta = choice.get("delta") or {}
        if not isinstance(delta, Mapping):
            raise StreamDataError("`choices[0].delta` is not an object")
        content += wire.optional_text(delta.get("content"), field="delta.content")
        reasoning += wire.reasoning_text(delta)
        tool_call = tool_call or wire.has_tool_call(delta)
        if isinstance(choice.get("finish_reason"), str):
            finish_reason = choice["finish_reason"]

    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    usage = obj.get("usage")
    if isinstance(usage, Mapping):
        usage_tokens = wire.int_or_none(usage.get("completion_tokens"))
        prompt_tokens = wire.int_or_none(usage.get("prompt_tokens"))

    # A padding-only or empty frame carries nothing: None.
    return wire.delta_or_none(
        content=content,
        reasoning=reasoning,
        tool_call=tool_call,
        usage_output_tokens=usage_tokens,
        usage_input_tokens=prompt_tokens,
        finish_reason=finish_reason,
    )


PROTOCOL = WireProtocol(
    name="cloudflare",
    framing=Framing.SSE,
    build_request=build_request,
    parse_event=parse_event,
    warmup_url=warmup_url,
    warmup_headers=warmup_headers,
    liveness_url=liveness_url,
    liveness_headers=warmup_headers,
    requires_end_marker=True,
    error_message=error_message,
)
