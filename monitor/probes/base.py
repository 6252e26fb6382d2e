"""Probe vocabulary shared by every protocol: the target, the result, the error taxonomy.

A probe is one streaming chat request. Protocol modules turn a `ProbeTarget` into an HTTP request
and decode each stream event into a `Delta`; the timing core (`monitor.probes.engine`) does all
I/O and timing and returns a `ProbeResult`. Nothing here performs I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from monitor.probes.framing import SSEEvent

# Bumped whenever a change alters what a stored figure means (timing points, token counting,
# formula, what counts as ok). Stored with every probe so old figures can be told apart from new
# ones. 2026.11-2: a Gemini stream without any finishReason, or with an error object written
# without `data:`, is a stream_error (it was ok when content had arrived). 2026.12-1: a usage count
# that the stream contradicts (below the token-bearing events, or far above max_tokens) is
# replaced by the event count (`estimate`); an invalid HTTP answer is a stream_error.
# 2026.12-2: the prompt is the answer canary's (count from 1 to a nonce-derived N of 20..30 in
# words, was always 30) padded to the workload profile (`input_tokens`, default about 100 tokens,
# was about 40), nonce first (`monitor.probes.prompt`); an ok probe's answer is checked
# (`answer_ok`), and an Ollama probe that paid a model load is flagged `cold_start`.
METHODOLOGY_VERSION = "2026.12-2"


class ErrorKind(enum.StrEnum):
    """Closed set of probe failure outcomes (the contract's `error_kind`)."""

    CONFIG_ERROR = "config_error"
    DNS_ERROR = "dns_error"
    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"
    TIMEOUT = "timeout"
    AUTH_ERROR = "auth_error"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    HTTP_ERROR = "http_error"
    STREAM_ERROR = "stream_error"
    EMPTY_RESPONSE = "empty_response"


# Outcomes that say nothing about the provider's health, so they neither count towards nor
# break a run of consecutive failures (the endpoint-down alert): throttling, and a missing key or
# URL variable (the operator's to fix; it has its own gauge and warning).
NOT_PROVIDER_FAILURES = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.CONFIG_ERROR})


class Trigger(enum.StrEnum):
    """Why a probe ran (the contract's `trigger`)."""

    SCHEDULED = "scheduled"  # its interval slot; the only probes behind published medians and uptime
    CONFIRM = "confirm"  # re-probe after a provider failure or a failed liveness check
    MANUAL = "manual"  # the probe CLI or POST /admin/probe


class ToolCallError(enum.StrEnum):
    """Why a tool-call canary failed (OpenRouter's classification)."""

    INVALID_JSON = "invalid_json"
    UNKNOWN_TOOL = "unknown_tool"
    SCHEMA_MISMATCH = "schema_mismatch"
    NO_TOOL_CALL = "no_tool_call"  # the forced call was not made at all
    REQUEST_FAILED = "request_failed"  # the canary request itself failed (see the probe's error)


DEFAULT_LOCATION = "local"
DEFAULT_INPUT_TOKENS = 100


class TokenCountSource(enum.StrEnum):
    USAGE = "usage"
    ESTIMATE = "estimate"


class Secret:
    """An API key that never prints itself (repr, str and format all mask it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ProbeTarget:
    """Everything one probe needs. Built from the CLI flags or from a catalog endpoint."""

    protocol: str
    base_url: str
    model: str
    api_key: Secret | None = None
    # Name of the environment variable the key came from (for messages; never the value).
    api_key_env: str | None = None
    # Set when the endpoint's config could not be resolved (e.g. an unset ${VAR}): the probe
    # then fails with `config_error` and this text, without any network call.
    config_error: str | None = None
    max_tokens: int = 128
    # Bounds the whole probe (warm-up excluded): the contract's `--timeout`.
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    # None = bounded only by timeout_s.
    first_token_timeout_s: float | None = None
    # Longest silence allowed between two stream reads once the response has started.
    stall_timeout_s: float = 30.0
    max_stream_bytes: int = 4 * 1024 * 1024
    # Protocol-specific knobs, e.g. {"max_tokens_field": "max_completion_tokens"} for openai:
    # the keys the config set, validated by the protocol's `options_model`.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Values other than the key that must never be echoed back (what a `${VAR}` in the base URL
    # or model expanded to, e.g. an account id): scrubbed from every provider text like the key.
    redact: tuple[Secret, ...] = ()
    # Workload profile: the prompt is padded to about this many input tokens (monitor.probes.prompt).
    input_tokens: int = DEFAULT_INPUT_TOKENS
    # Canaries on: "answer" checks the timed probe's answer; "tool_call" adds a separate
    # tool-call request after an ok probe (`monitor.probes.toolcall`, run by the runner).
    checks: tuple[str, ...] = ("answer",)


@dataclass(frozen=True)
class ServerTimings:
    """What a provider reports about its own work on the request (Ollama: `load_duration`,
    `prompt_eval_duration`, `eval_duration` in ns, `eval_count`), in seconds and tokens."""

    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    eval_tokens: int | None = None


@dataclass(frozen=True)
class Delta:
    """What one stream event contributes. Protocol parsers return one per event (or None)."""

    content: str = ""  # visible answer text
    reasoning: str = ""  # reasoning / thinking text
    tool_call: bool = False  # a tool-call delta with arguments or a name
    # Provider-reported output tokens for the whole response so far (cumulative; last one wins).
    usage_output_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False  # explicit end-of-stream marker ([DONE], message_stop, done:true, ...)
    error: str | None = None  # an in-band error event; becomes stream_error
    # Provider-reported input (prompt) tokens, when the event carries them (last one wins).
    usage_input_tokens: int | None = None
    # Provider-side timings (Ollama's final line), when the event carries them.
    server_timings: ServerTimings | None = None

    @property
    def has_token(self) -> bool:
        """A token-bearing event: the events that define ttft_s and count as content chunks."""
        return bool(self.content or self.reasoning or self.tool_call)


class StreamDataError(ValueError):
    """Raised by a protocol parser on a malformed event (invalid JSON, wrong shape)."""


# Contract fields, in contract order; `ProbeResult.to_dict()` emits them first.
CONTRACT_FIELDS = (
    "ok",
    "error_kind",
    "error",
    "http_status",
    "started_at",
    "ttft_s",
    "connect_s",
    "total_s",
    "output_tokens",
    "token_count_source",
    "tokens_per_second",
)


@dataclass
class ProbeResult:
    """One probe's outcome. Contract fields first, then the richer audit record."""

    ok: bool
    error_kind: ErrorKind | None
    error: str | None
    http_status: int | None
    started_at: datetime  # timezone-aware UTC
    ttft_s: float | None
    connect_s: float | None
    total_s: float | None
    output_tokens: int | None
    token_count_source: TokenCountSource | None
    tokens_per_second: float | None
    # --- audit record (stored, printed by the CLI after the contract fields) ---
    protocol: str = ""
    model: str = ""
    first_answer_s: float | None = None  # first visible content token (ttft also counts reasoning/tool calls)
    first_reasoning_s: float | None = None
    last_token_s: float | None = None
    headers_s: float | None = None  # response headers received (TTFB of the measured request)
    dns_s: float | None = None  # cold-connection phases seen during warm-up
    tcp_s: float | None = None
    tls_s: float | None = None
    token_chunks: int = 0  # stream events that carried a token (content, reasoning or tool call)
    usage_tokens: int | None = None  # provider-reported output tokens
    # Token-bearing events that arrived in the same network read as the first one. 1: ttft_s is
    # exact to the read. More: the first token was read late, together with later ones (a busy
    # event loop), so ttft_s is an upper bound and the decode rate is less certain.
    first_read_tokens: int = 0
    finish_reason: str | None = None
    http_version: str | None = None
    connection_reused: bool | None = None
    loop_lag_s: float | None = None  # worst event-loop lag observed while the probe ran
    cpu_s: float | None = None  # process CPU time spent while the probe ran
    stream_bytes: int = 0
    retry_after_s: float | None = None
    methodology: str = METHODOLOGY_VERSION
    # --- where, why and how well (stored; also CLI JSON and history items) ---
    location: str = DEFAULT_LOCATION  # the probing process's --location
    trigger: Trigger = Trigger.SCHEDULED
    answer_ok: bool | None = None  # answer canary verdict on an ok probe; None when not checked
    tool_call_ok: bool | None = None  # tool-call canary (separate request); None when not checked
    tool_call_error: ToolCallError | None = None
    input_tokens: int = DEFAULT_INPUT_TOKENS  # workload profile the prompt was padded to
    prompt_tokens: int | None = None  # provider-reported input tokens (usage), when sent
    cost_usd: float | None = None  # from usage (or estimate) and the endpoint's price; None without one
    cold_start: bool = False  # the provider paid a model load for this probe (e.g. Ollama load_duration)
    # Provider-side timings where the provider reports them (Ollama), seconds.
    server_load_s: float | None = None
    server_prompt_eval_s: float | None = None
    server_eval_s: float | None = None
    server_eval_tokens: int | None = None
    # Finished while the monitor's own self-test error exceeded its threshold (an overloaded host).
    suspect: bool = False
    # Provider-reported usage of the tool-call canary's own request (cost accounting), when it ran.
    tool_call_input_tokens: int | None = None
    tool_call_output_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: contract fields first, enums as strings, ISO 8601 UTC timestamps."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            out[f.name] = value
        return out


class ProtocolOptions(BaseModel):
    """The `options` every protocol accepts; a protocol subclasses it with its own knobs.

    Unknown keys are refused, so a misspelt knob fails `check-config` instead of every probe.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A mapping merged into the request body, overriding its keys.
    extra_body: dict[str, Any] | None = None


class Framing(enum.StrEnum):
    SSE = "sse"  # parse_event receives a framing.SSEEvent
    NDJSON = "ndjson"  # parse_event receives one line (str)


@dataclass(frozen=True)
class RequestSpec:
    """The measured request, as a protocol builds it. Headers may hold the key: never log them."""

    url: str
    headers: Mapping[str, str]
    json: Mapping[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    """The tool-call canary's one tool: a name, what it does, its arguments' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCallReply:
    """A decoded (non-streaming) tool-call response: the calls the model made, as
    (tool name, arguments) with the arguments as sent (a JSON text for openai, an object for
    anthropic and gemini), and the provider's token usage."""

    calls: tuple[tuple[object, object], ...]
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class ToolCallWire:
    """How one protocol asks for a forced tool call (non-streaming) and reads the answer.

    - `build_request(target, prompt, tool)` -> RequestSpec forcing a call of `tool`;
    - `parse_response(doc)` -> ToolCallReply from the decoded JSON body; raises StreamDataError
      when the body is not the protocol's response shape. Pure: no I/O.
    """

    build_request: Callable[[ProbeTarget, str, ToolSpec], RequestSpec]
    parse_response: Callable[[object], ToolCallReply]


@dataclass(frozen=True)
class WireProtocol:
    """One provider wire protocol, declared in its own module (monitor/probes/<name>.py).

    - `build_request(target, prompt)` -> RequestSpec for the streaming chat request.
    - `warmup_url(target)` -> a cheap non-inference URL (GET, any status is fine) that opens the
      connection before the measured request, or None when the protocol has none.
    - `warmup_headers(target)` -> headers for the warm-up GET (auth where the provider wants it).
    - `parse_event(event)` -> Delta | None for one SSE event or NDJSON line; raises
      StreamDataError on malformed data. Pure: no I/O, no clocks.
    - `error_message(doc)` -> the provider's message in a decoded non-2xx JSON error body, or
      None to fall back to the generic reading (`outcomes.json_error_message`).
    - `liveness_url(target)` / `liveness_headers(target)` -> the cheap, token-free GET that the
      liveness checks send between probes (monitor.liveness; docs/liveness.md), or None when the
      protocol has none (liveness is then off for its endpoints). Usually the warm-up request.

    Registered by name in `monitor.probes.registry`.
    """

    name: str
    framing: Framing
    build_request: Callable[[ProbeTarget, str], RequestSpec]
    # Receives a framing.SSEEvent (Framing.SSE) or one line of text (Framing.NDJSON).
    parse_event: Callable[[SSEEvent], Delta | None] | Callable[[str], Delta | None]
    warmup_url: Callable[[ProbeTarget], str | None]
    warmup_headers: Callable[[ProbeTarget], Mapping[str, str]] | None = None
    # True when a clean stream must end with an explicit marker (openai's [DONE], anthropic's
    # message_stop, ollama's done:true); EOF without it is then a stream_error. Gemini: False.
    requires_end_marker: bool = True
    # For a stream that ends at EOF (Gemini): True when some chunk must have carried a finish
    # reason, the only sign that the server finished rather than stopped; else stream_error.
    requires_finish_reason: bool = False
    # The pydantic model of the endpoint's `options` (the catalog validates them with it).
    options_model: type[ProtocolOptions] = ProtocolOptions
    error_message: Callable[[object], str | None] | None = None
    # The tool-call canary's wire format; None: the protocol cannot force a tool call, and
    # `check-config` refuses `checks: [tool_call]` for its endpoints.
    tool_call: ToolCallWire | None = None

    @property
    def supports_tool_call(self) -> bool:
        return self.tool_call is not None
    # The liveness request (a GET); None: the protocol declares none, so liveness stays off.
    liveness_url: Callable[[ProbeTarget], str | None] | None = None
    liveness_headers: Callable[[ProbeTarget], Mapping[str, str]] | None = None

