"""Small pure helpers shared by protocol modules.

Each protocol module (`openai`, `cloudflare`, `anthropic`, `gemini`, `ollama`) keeps its own wire
specifics; what lives here is only what they all do the same way: the base-URL root, the
API-key header (absent when there is no key), the `extra_body` option, decoding one event into a
JSON object, and lenient/strict field coercions that raise `StreamDataError` on malformed data.
No I/O, no clocks.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from monitor.probes.base import Delta, ProbeTarget, StreamDataError

# How much of an undecodable event an error message quotes (enough to recognise it, no more).
_QUOTED_CHARS = 80


def base_root(target: ProbeTarget) -> str:
    """The target's base URL without trailing slashes, ready for `f"{root}/path"`."""
    return target.base_url.rstrip("/")


def key_headers(target: ProbeTarget, header: str, *, scheme: str | None = None) -> dict[str, str]:
    """`{header: key}` (`{header: "<scheme> <key>"}` with a scheme), or {} when there is no key.

    An empty key counts as no key: a local server needs none, and a bare `Bearer ` would only
    earn a confusing 401. The header name is used exactly as given (each protocol's tests pin it).
    """
    key = target.api_key.reveal() if target.api_key is not None else ""
    if not key:
        return {}
    return {header: f"{scheme} {key}" if scheme else key}


def bearer_headers(target: ProbeTarget, *, header: str = "Authorization") -> dict[str, str]:
    """`{header: "Bearer <key>"}`, or {} when the target has no key."""
    return key_headers(target, header, scheme="Bearer")


def merge_extra_body(body: dict[str, Any], target: ProbeTarget) -> dict[str, Any]:
    """Merge the `extra_body` option (a mapping) into `body`, overriding its keys; returns `body`.

    A missing, empty or non-mapping `extra_body` leaves the body as it is.
    """
    extra = (target.options or {}).get("extra_body")
    if isinstance(extra, Mapping):
        body.update(extra)
    return body


def json_object(data: str, *, what: str) -> dict[str, Any]:
    """Decode one event (SSE data or NDJSON line) that must be a JSON object.

    `what` names the stream in error messages, e.g. "Gemini stream".
    """
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise StreamDataError(f"invalid JSON in {what}: {data[:_QUOTED_CHARS]!r}") from exc
    if not isinstance(obj, dict):
        raise StreamDataError(f"expected a JSON object in {what}, got {type(obj).__name__}")
    return obj


def int_or_none(value: Any) -> int | None:
    """`value` when it is an int (a bool is not a count), else None (absent or malformed)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def optional_text(value: Any, *, field: str) -> str:
    """`value` when it is a string, "" when it is None (absent); any other type is malformed."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StreamDataError(f"`{field}` is {type(value).__name__}, expected a string")
    return value


def delta_or_none(
    *,
    content: str = "",
    reasoning: str = "",
    tool_call: bool = False,
    usage_output_tokens: int | None = None,
    finish_reason: str | None = None,
    usage_input_tokens: int | None = None,
) -> Delta | None:
    """A Delta with these fields, or None when the event carries nothing (padding, keep-alive)."""
    if not (content or reasoning or tool_call or finish_reason or usage_output_tokens is not None
            or usage_input_tokens is not None):
        return None
    return Delta(
        content=content,
        reasoning=reasoning,
        tool_call=tool_call,
        usage_output_tokens=usage_output_tokens,
        finish_reason=finish_reason,
        usage_input_tokens=usage_input_tokens,
    )


def has_tool_call(delta: Mapping[str, Any]) -> bool:
    """An OpenAI-shaped delta carries a tool call worth counting as a token: a name or argument
    text (an empty placeholder entry is not a token, as for text)."""
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and (function.get("name") or function.get("arguments")):
                return True
    legacy = delta.get("function_call")
    return isinstance(legacy, dict) and bool(legacy.get("name") or legacy.get("arguments"))


REASONING_KEYS = ("reasoning", "reasoning_content")  # OpenRouter/Groq/Ollama; DeepSeek/vLLM


def reasoning_text(delta: Mapping[str, Any]) -> str:
    """The reasoning text of an OpenAI-shaped delta: the first of REASONING_KEYS that has text
    (providers that send both carry the same text twice)."""
    for key in REASONING_KEYS:
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
