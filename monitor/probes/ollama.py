"""Ollama native chat protocol (`POST {base_url}/api/chat`, NDJSON; base_url like
`http://127.0.0.1:11434`, or `https://ollama.com` with a key).

Owns the request shape and the decoding of one NDJSON line into a `Delta` (PROTOCOLS.md §5):
- each line is `{"message": {"content": ..., "thinking": ...}, "done": false}`; content is the
  answer, `thinking` the reasoning trace, `tool_calls` a tool call;
- the `/api/generate` shape (`response` / `thinking` at the top level) is accepted too, so one
  parser reads both endpoints' transcripts (the documented mid-stream error example is one);
- the final line has `done: true`, `done_reason` and the metrics; `eval_count` is the output token
  count, `prompt_eval_count` the prompt's, and `load_duration`, `prompt_eval_duration`,
  `eval_duration` (ns) the server's own timings (`ServerTimings`, for cold starts); metrics are
  `omitempty` on the wire, so a missing `eval_count` is unknown (None), never 0;
- a line `{"error": "..."}` (HTTP status already 200) becomes an error delta.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from monitor.probes import wire
from monitor.probes.base import (
    Delta, Framing, ProbeTarget, ProtocolOptions, RequestSpec, ServerTimings, StreamDataError, WireProtocol,
)


class Options(ProtocolOptions):
    # `think` sent to Ollama (a level for models such as gpt-oss); null leaves the model's
    # default; unset sends false.
    think: bool | Literal["low", "medium", "high"] | None = None


def _auth_headers(target: ProbeTarget) -> dict[str, str]:
    # A local server needs no key (none is sent); ollama.com's API takes a Bearer token.
    return wire.bearer_headers(target)


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    body: dict[str, Any] = {
        "model": target.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        # Ollama rejects `think: true` on models without the capability, but accepts `false`
        # everywhere; the endpoint option `think` overrides (None leaves the model default).
        "think": False,
        "options": {"num_predict": target.max_tokens, "temperature": 0},
    }
    if "think" in target.options:
        think = target.options["think"]
        if think is None:
            del body["think"]
        else:
            body["think"] = think
    wire.merge_extra_body(body, target)
    return RequestSpec(
        url=f"{wire.base_root(target)}/api/chat",
        headers={**_auth_headers(target), "Content-Type": "application/json", "Accept": "application/x-ndjson"},
        json=body,
    )


def warmup_url(target: ProbeTarget) -> str:
    return f"{wire.base_root(target)}/api/version"


def liveness_url(target: ProbeTarget) -> str:
    """`GET /api/version`: answered by the server itself, no model touched (no key needed)."""
    return warmup_url(target)


def warmup_headers(target: ProbeTarget) -> dict[str, str]:
    return _auth_headers(target)


def _load(line: str) -> dict[str, Any]:
    return wire.json_object(line, what="Ollama stream line")


def _text(obj: Mapping[str, Any], key: str) -> str:
    return wire.optional_text(obj.get(key), field=key)


def _seconds(value: Any) -> float | None:
    """A duration in nanoseconds (a non-negative integer) as seconds; None when absent or odd."""
    ns = wire.int_or_none(value)
    # Beyond 2**63 ns (292 years) is no duration, and a huge int would not even convert to float.
    return None if ns is None or not 0 <= ns < 2**63 else ns / 1e9


def server_timings(obj: Mapping[str, Any]) -> ServerTimings | None:
    """The final line's own timings (`load_duration`, `prompt_eval_duration`, `eval_duration`
    in ns, `eval_count`), or None when it carries none of them (they are `omitempty`)."""
    timings = ServerTimings(
        load_s=_seconds(obj.get("load_duration")),
        prompt_eval_s=_seconds(obj.get("prompt_eval_duration")),
        eval_s=_seconds(obj.get("eval_duration")),
        eval_tokens=wire.int_or_none(obj.get("eval_count")),
    )
    return None if timings == ServerTimings() else timings


def parse_event(line: str) -> Delta | None:
    if not line.strip():
        return None
    obj = _load(line)
    error = obj.get("error")
    if error:
        return Delta(error=str(error))

    message = obj.get("message")
    if message is None:
        message = {}
    elif not isinstance(message, Mapping):
        raise StreamDataError("`message` is not an object")
    content = _text(message, "content") + _text(obj, "response")
    reasoning = _text(message, "thinking") + _text(obj, "thinking")
    tool_call = bool(message.get("tool_calls"))

    if obj.get("done") is True:
        done_reason = obj.get("done_reason")
        return Delta(
            content=content,
            reasoning=reasoning,
            tool_call=tool_call,
            usage_output_tokens=wire.int_or_none(obj.get("eval_count")),
            usage_input_tokens=wire.int_or_none(obj.get("prompt_eval_count")),
            server_timings=server_timings(obj),
            finish_reason=done_reason if isinstance(done_reason, str) else None,
            done=True,
        )
    return wire.delta_or_none(content=content, reasoning=reasoning, tool_call=tool_call)


PROTOCOL = WireProtocol(
    name="ollama",
    framing=Framing.NDJSON,
    build_request=build_request,
    parse_event=parse_event,
    warmup_url=warmup_url,
    warmup_headers=warmup_headers,
    liveness_url=liveness_url,
    liveness_headers=warmup_headers,
    requires_end_marker=True,
    options_model=Options,
)
