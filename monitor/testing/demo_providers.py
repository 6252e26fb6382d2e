"""Simulated providers for `llm-monitor demo`: OpenAI-compatible endpoints on loopback with
distinct behaviours, so a machine without provider keys shows every kind of figure.

One `StreamServer` serves every behaviour under its own path prefix (`{url}/{behaviour}/v1`):

- `healthy`: answers at once (TTFT ~0.15 s, 40 tokens at 20 ms).
- `slow`: answers, but with a TTFT of 1.5 s: above the demo's `degraded_ttft` of 1 s.
- `flaky`: alternates between healthy and failing (HTTP 503, also on its `/models`) on a
  wall-clock cycle of `flaky_period_s` (two thirds up, one third down), so incidents open and
  resolve while one watches.
- `ratelimited`: always 429 with a Retry-After (an outcome that is not an outage).

"Down" needs no server: the demo config points it at a loopback port that nobody listens on.

Each answer follows the request: when the prompt asks to count up to a number, the tokens are
that count ("1, 2, 3, ..."), so an answer check passes on the healthy providers.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from monitor.testing.stream_server import (
    ScriptedResponse,
    ServedRequest,
    StreamServer,
    json_response,
    openai_stream,
    sse_stream_response,
)

BEHAVIOURS = ("healthy", "slow", "flaky", "ratelimited")
DEFAULT_FLAKY_PERIOD_S = 90.0
_LAST_NUMBER = re.compile(r"(\d{1,4})\D*$")


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    gap_s: float


TIMINGS = {"healthy": Timing(0.15, 0.02), "slow": Timing(1.5, 0.03), "flaky": Timing(0.3, 0.03)}


def answer_words(request: ServedRequest, default_tokens: int = 40) -> list[str]:
    """The tokens of the answer to `request`: a count up to the last number in its last user
    message (at most 200), else `default_tokens` filler words."""
    text = _last_user_text(request.json)
    match = _LAST_NUMBER.search(text)
    if match and 1 <= int(match.group(1)) <= 200:
        n = int(match.group(1))
        return [f"{i}, " if i < n else f"{i}." for i in range(1, n + 1)]
    return [f"word{i} " for i in range(default_tokens)]


def _last_user_text(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return ""
    for message in reversed(body["messages"]):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content[-2000:]
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))[-2000:]
    return ""


def is_flaky_down(now_s: float, period_s: float) -> bool:
    """The flaky provider fails during the last third of each wall-clock cycle."""
    return (now_s % period_s) >= period_s * 2 / 3


def _chat(behaviour: str, flaky_period_s: float, clock: Callable[[], float]) -> Callable[[ServedRequest], ScriptedResponse]:
    def respond(request: ServedRequest) -> ScriptedResponse:
        if behaviour == "ratelimited":
            return json_response(429, {"error": {"message": "rate limit exceeded (simulated)", "type": "rate_limit"}},
                                 headers={"retry-after": "30"})
        if behaviour == "flaky" and is_flaky_down(clock(), flaky_period_s):
            return json_response(503, {"error": {"message": "upstream unavailable (simulated outage)"}})
        timing = TIMINGS[behaviour]
        words = answer_words(request)
        max_tokens = _max_tokens(request.json)
        if max_tokens is not None:
            words = words[:max_tokens]
        return sse_stream_response(openai_stream(
            ttft_s=timing.ttft_s, gap_s=timing.gap_s, n_tokens=len(words),
            token_text=lambda i: words[i],
            finish_reason="stop" if max_tokens is None or len(words) < max_tokens else "length",
        ))

    return respond


def _max_tokens(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _models(behaviour: str, flaky_period_s: float, clock: Callable[[], float]) -> Callable[[ServedRequest], ScriptedResponse]:
    def respond(request: ServedRequest) -> ScriptedResponse:
        if behaviour == "flaky" and is_flaky_down(clock(), flaky_period_s):
            return json_response(503, {"error": {"message": "upstream unavailable (simulated outage)"}})
        return json_response(200, {"object": "list", "data": [{"id": "demo-model", "object": "model"}]})

    return respond


def start_demo_providers(*, flaky_period_s: float = DEFAULT_FLAKY_PERIOD_S,
                         clock: Callable[[], float] = time.time) -> StreamServer:
    """Start the simulated providers (a server thread); `stop()` it when done."""
    if flaky_period_s <= 0:
        raise ValueError("flaky_period_s must be greater than 0")
    server = StreamServer(keep_requests=100)
    for behaviour in BEHAVIOURS:
        server.route("POST", f"/{behaviour}/v1/chat/completions", _chat(behaviour, flaky_period_s, clock))
        server.route("GET", f"/{behaviour}/v1/models", _models(behaviour, flaky_period_s, clock))
    return server.start()
