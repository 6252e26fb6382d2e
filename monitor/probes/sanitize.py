"""Store-safe probe results: the last step of every probe, after all measurement is done.

Every value a provider can influence (counts it reports, texts it sends, headers) is hostile. A
single odd value must not stop the result from being stored or served: a count beyond a 32-bit
column, a lone surrogate or a NUL byte in a text, a non-finite float. `sanitize` returns a copy of
the result in which every field is within what the table (`monitor/store/tables.py`) and JSON accept:

- Integer columns (`INTEGER`, 32-bit on PostgreSQL) hold 0 ..= 2**31 - 1; `stream_bytes`
  (`BIGINT`) 0 ..= 2**63 - 1. A count outside its range becomes None where the column is nullable
  and is clamped into range where it is not (`token_chunks`, `first_read_tokens`,
  `stream_bytes`: our own counts, naturally far below the bound, so the clamp never fires in
  practice and only keeps the row writable). `http_status` outside 100 ..= 999 is None.
- `usage_tokens` is the audit of what the provider claimed, so it saturates instead of vanishing:
  a negative claim is stored as 0 and one beyond the column as 2**31 - 1. A claim that contradicts
  the stream (see below) is kept that way next to the count actually used.
- Texts are valid UTF-8: lone surrogates and NUL become U+FFFD; a non-text value where a text
  belongs is dropped. Lengths are bounded (`error` 240 characters, `finish_reason` 64,
  `http_version` 16 as its column, `protocol`/`model` 256), cut with a trailing "…".
- Floats are finite (NaN and infinities become None) and durations are not negative;
  `retry_after_s` is clamped to at most one day (a longer wait is still "wait a long time").

Usage that contradicts the stream (`reconcile_usage`). A provider's usage count is trusted only
when it is possible: at least the number of token-bearing chunks (each carries at least one token)
and at most `2 * max(max_tokens, token chunks) + 64` (providers overshoot max_tokens a little, and
a server that ignores max_tokens is bounded by what it streamed). Otherwise the count used is the
chunk count (`token_count_source: estimate`) and `usage_tokens` keeps the claim, so
"estimate with usage_tokens set" marks a rejected claim. The decode rate is then recomputed from
the counts used (`monitor.stats.decode_rate`), and a rate above `MAX_TOKENS_PER_SECOND` is
dropped: no served model decodes within an order of magnitude of it, so such a figure measures
how reads were batched, not decoding.

Pure: no I/O, no clocks. Secrets are scrubbed before this step (by the engine); cutting a scrubbed
text cannot bring a key back.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from monitor.probes.base import DEFAULT_LOCATION, ProbeResult, TokenCountSource
from monitor.stats import decode_rate

__all__ = [
    "INT32_MAX",
    "MAX_RETRY_AFTER_S",
    "MAX_TOKENS_PER_SECOND",
    "reconcile_usage",
    "sanitize",
    "usage_is_plausible",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_RETRY_AFTER_S = 86_400.0
# The fastest published single-stream decode rates are a few thousand tokens per second.
MAX_TOKENS_PER_SECOND = 50_000.0
# Upper bound of a believable usage count: 2 * max(max_tokens, token chunks) + this slack.
USAGE_SLACK_TOKENS = 64

_TEXT_LIMITS = {
    "error": 240,
    "finish_reason": 64,
    "http_version": 16,
    "protocol": 256,
    "model": 256,
    "location": 32,
}
_REQUIRED_COUNTS = {"token_chunks": INT32_MAX, "first_read_tokens": INT32_MAX, "stream_bytes": INT64_MAX}
_DURATIONS = ("ttft_s", "connect_s", "total_s", "first_answer_s", "first_reasoning_s", "last_token_s",
              "headers_s", "dns_s", "tcp_s", "tls_s", "loop_lag_s", "cpu_s",
              "server_load_s", "server_prompt_eval_s", "server_eval_s")
_UNSAFE_CHARS = re.compile("[\x00\ud800-\udfff]")


def sanitize(result: ProbeResult, *, max_tokens: int | None = None) -> ProbeResult:
    """A copy of `result` whose every field is store-safe (see the module docstring).

    `max_tokens` (the probe's request limit) enables the upper bound on a usage count."""
    changes: dict[str, Any] = {}
    for name, limit in _TEXT_LIMITS.items():
        changes[name] = clean_text(getattr(result, name), limit)
    if changes["protocol"] is None:
        changes["protocol"] = ""
    if changes["model"] is None:
        changes["model"] = ""
    if changes["location"] is None:
        changes["location"] = DEFAULT_LOCATION
    changes["output_tokens"] = bounded_int(result.output_tokens, INT32_MAX)
    for name, maximum in _REQUIRED_COUNTS.items():
        value = as_int(getattr(result, name))
        changes[name] = 0 if value is None else min(max(value, 0), maximum)
    status = as_int(result.http_status)
    changes["http_status"] = status if status is not None and 100 <= status <= 999 else None
    for name in _DURATIONS:
        changes[name] = duration(getattr(result, name))
    retry_after = duration(result.retry_after_s)
    changes["retry_after_s"] = None if retry_after is None else min(retry_after, MAX_RETRY_AFTER_S)
    changes["tokens_per_second"] = finite(result.tokens_per_second)
    changes["prompt_tokens"] = bounded_int(result.prompt_tokens, INT32_MAX)
    changes["server_eval_tokens"] = bounded_int(result.server_eval_tokens, INT32_MAX)
    changes["tool_call_input_tokens"] = bounded_int(result.tool_call_input_tokens, INT32_MAX)
    changes["tool_call_output_tokens"] = bounded_int(result.tool_call_output_tokens, INT32_MAX)
    cost = finite(result.cost_usd)
    changes["cost_usd"] = None if cost is None or cost < 0 else cost
    clean = dataclasses.replace(result, **changes)
    return reconcile_usage(clean, as_int(result.usage_tokens), max_tokens=max_tokens)


def usage_is_plausible(usage: int, token_chunks: int, max_tokens: int | None) -> bool:
    """Whether a provider's output-token count can be true for a stream of `token_chunks`
    token-bearing chunks asked for at most `max_tokens` tokens."""
    if usage < token_chunks:
        return False
    if max_tokens is None:
        return usage <= INT32_MAX
    return usage <= 2 * max(max_tokens, token_chunks) + USAGE_SLACK_TOKENS


def reconcile_usage(result: ProbeResult, usage: int | None, *, max_tokens: int | None) -> ProbeResult:
    """Use the provider's count `usage` only when it is plausible; recompute the decode rate from
    the count used. `result` must already hold sanitised counts."""
    chunks = result.token_chunks
    output_tokens, source = result.output_tokens, result.token_count_source
    if source == TokenCountSource.USAGE and (usage is None or not usage_is_plausible(usage, chunks, max_tokens)):
        output_tokens, source = chunks, TokenCountSource.ESTIMATE
    rate = result.tokens_per_second
    if output_tokens != result.output_tokens or rate is None or rate < 0:
        rate = None
        if output_tokens is not None and result.ttft_s is not None and result.last_token_s is not None:
            recomputed = decode_rate(output_tokens, chunks, result.ttft_s, result.last_token_s)
            rate = None if recomputed is None else round(recomputed, 3)
    if rate is not None and not 0 <= rate <= MAX_TOKENS_PER_SECOND:
        rate = None
    stored_usage = None if usage is None else min(max(usage, 0), INT32_MAX)
    return dataclasses.replace(result, output_tokens=output_tokens, token_count_source=source,
                               tokens_per_second=rate, usage_tokens=stored_usage)


# --------------------------------------------------------------------------- value helpers

def as_int(value: Any) -> int | None:
    """An int for an int or an integral finite float; None for anything else (a bool is not a
    count)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def bounded_int(value: Any, maximum: int) -> int | None:
    number = as_int(value)
    return number if number is not None and 0 <= number <= maximum else None


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return number if math.isfinite(number) else None


def duration(value: Any) -> float | None:
    number = finite(value)
    return None if number is None else max(number, 0.0)


def clean_text(value: Any, limit: int) -> str | None:
    """Valid UTF-8 without NUL, at most `limit` characters; None for a non-text value."""
    if not isinstance(value, str):
        return None
    if len(value) <= limit:
        return _UNSAFE_CHARS.sub("\ufffd", value)
    return _UNSAFE_CHARS.sub("\ufffd", value[: limit - 1]) + "…"
