"""Loopback providers for the canary tests: each protocol's stream for a given answer text, and
handlers that read the probe's own prompt (the nonce-derived N, the padding) from the request.

`stream_for(protocol, chunks, ...)` writes one protocol's wire format for the answer `chunks`
(one token-bearing event each), a finish reason, a reported prompt size and (Ollama) the server
timings. `counting_handler(protocol, answer)` answers each request with `answer(n)`, n being the
number the request's prompt asks to count to.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Sequence

from monitor.testing.stream_server import (
    Frame,
    ScriptedResponse,
    ServedRequest,
    openai_chunk,
    sse_event,
    sse_stream_response,
)

WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
TENS = {2: "twenty", 3: "thirty"}

# The finish reason each protocol uses for "stopped at max_tokens" and for a natural stop.
LENGTH = {"openai": "length", "cloudflare": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS",
          "ollama": "length"}
STOP = {"openai": "stop", "cloudflare": "stop", "anthropic": "end_turn", "gemini": "STOP", "ollama": "stop"}
PROTOCOL_NAMES = tuple(LENGTH)


def word(i: int) -> str:
    if i < 20:
        return WORDS[i]
    tens, unit = divmod(i, 10)
    return TENS[tens] + (f"-{WORDS[unit]}" if unit else "")


def count_words(n: int, *, start: int = 1) -> list[str]:
    """The right answer as chunks: "one", ", two", ", three", ..."""
    return [(", " if i > start else "") + word(i) for i in range(start, n + 1)]


def prompt_of(request: ServedRequest) -> str:
    body = request.json or {}
    if "messages" in body:
        return body["messages"][0]["content"]
    return body["contents"][0]["parts"][0]["text"]  # gemini


def n_of(request: ServedRequest) -> int:
    return int(re.search(r"Count from 1 to (\d+)", prompt_of(request))[1])


def stream_for(protocol: str, chunks: Sequence[str], *, finish: str | None = "stop", prompt_tokens: int | None = 40,
               timings: dict[str, int] | None = None, gap_s: float = 0.0) -> ScriptedResponse:
    """A complete stream of `protocol` carrying `chunks`; `finish` "stop" or "length" (mapped to
    the protocol's own word), or None for none."""
    reason = None if finish is None else (LENGTH if finish == "length" else STOP)[protocol]
    out = len(chunks)
    if protocol == "openai":
        events: list[Any] = [openai_chunk({"role": "assistant", "content": ""})]
        events += [openai_chunk({"content": c}) for c in chunks]
        events.append(openai_chunk({}, finish_reason=reason))
        usage = {"completion_tokens": out, "total_tokens": out + (prompt_tokens or 0)}
        if prompt_tokens is not None:
            usage["prompt_tokens"] = prompt_tokens
        events.append(openai_chunk(choices=[], usage=usage))
        return _sse([*events, "[DONE]"], gap_s)
    if protocol == "cloudflare":
        # OpenAI-shaped chunks on the native endpoint (newer models), so a finish reason exists.
        events = [{"choices": [{"index": 0, "delta": {"content": c}}]} for c in chunks]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
        usage = {"completion_tokens": out}
        if prompt_tokens is not None:
            usage["prompt_tokens"] = prompt_tokens
        events.append({"response": "", "usage": usage})
        return _sse([*events, "[DONE]"], gap_s)
    if protocol == "anthropic":
        usage_start = {"output_tokens": 1}
        if prompt_tokens is not None:
            usage_start["input_tokens"] = prompt_tokens
        events = [("message_start", {"type": "message_start", "message": {
            "id": "msg_t", "type": "message", "role": "assistant", "content": [], "model": "m",
            "usage": usage_start}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": c}}) for c in chunks]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason},
                                      "usage": {"output_tokens": out}}),
                   ("message_stop", {"type": "message_stop"})]
        frames = [Frame(gap_s, sse_event(data, event=name), token=name == "content_block_delta")
                  for name, data in events]
        return sse_stream_response(frames)
    if protocol == "gemini":
        events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": c}]}}]} for c in chunks]
        usage = {"candidatesTokenCount": out}
        if prompt_tokens is not None:
            usage["promptTokenCount"] = prompt_tokens
        events.append({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                       **({"finishReason": reason} if reason else {})}],
                       "usageMetadata": usage})
        return _sse(events, gap_s)
    if protocol == "ollama":
        lines = [{"model": "m", "message": {"role": "assistant", "content": c}, "done": False} for c in chunks]
        final: dict[str, Any] = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": reason, "eval_count": out}
        if prompt_tokens is not None:
            final["prompt_eval_count"] = prompt_tokens
        final.update(timings or {})
        lines.append(final)
        frames = [Frame(gap_s, (json.dumps(line) + "\n").encode(), token=not line["done"]) for line in lines]
        return ScriptedResponse(status=200, headers={"content-type": "application/x-ndjson"}, frames=frames)
    raise ValueError(protocol)


def _sse(events: Sequence[Any], gap_s: float) -> ScriptedResponse:
    return sse_stream_response([Frame(gap_s, sse_event(e)) for e in events])


def counting_handler(protocol: str, answer: Callable[[int], Sequence[str]], **kw: Any
                     ) -> Callable[[ServedRequest], ScriptedResponse]:
    """Answer each probe with `answer(n)` for the n its prompt asks to count to."""
    return lambda request: stream_for(protocol, answer(n_of(request)), **kw)


BASE_PATH = {"openai": "/v1", "cloudflare": "/ai", "anthropic": "/v1", "gemini": "/v1beta", "ollama": ""}
PATHS = {"openai": "/v1/chat/completions", "cloudflare": "/ai/run/m", "anthropic": "/v1/messages",
         "gemini": "/v1beta/models/m:streamGenerateContent", "ollama": "/api/chat"}
