"""The tool-call canary: one forced call of one small tool, checked against its JSON Schema.

A separate request from the timed probe (it never touches TTFT or the decode rate): the runner
sends it right after an ok scheduled or manual probe of an endpoint whose `checks` hold
`tool_call` (not after confirmation probes: they exist to time a recovery, and a failing
endpoint gets none), on the same shared client, inside the same concurrency slot.

The request is non-streaming (the verdict needs the whole call, and a JSON body is simpler to
bound than a stream): each protocol's `ToolCallWire` builds it and decodes the answer; the body
is read up to `MAX_BODY_BYTES`, the whole exchange is bounded by the endpoint's timeout.

The verdict, in OpenRouter's classification (`ToolCallError`):
- `request_failed`: no usable answer (connection failure, timeout, non-2xx status, a body that is
  not JSON or not the protocol's response shape, a body over the limit);
- `no_tool_call`: the answer holds no tool call although one was forced;
- `unknown_tool`: the first call names a tool that was not offered;
- `invalid_json`: its arguments are not a JSON object text (openai sends them as a string); for
  anthropic and gemini, whose wire carries the arguments as an object, a string there that does
  not decode counts the same;
- `schema_mismatch`: the arguments decode but break the tool's schema (`jsonschema`, Draft 2020-12).
Otherwise ok. The provider's token usage of the request is returned (`input_tokens`,
`output_tokens`) so its cost can be accounted like the probe's.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema

from monitor.probes import outcomes
from monitor.probes.base import ProbeTarget, StreamDataError, ToolCallError, ToolCallReply, ToolSpec
from monitor.probes.registry import PROTOCOLS
from monitor.probes.transport import decoded_body

__all__ = ["MAX_BODY_BYTES", "TOOL", "ToolCallOutcome", "build_tool_prompt", "judge_reply", "run_tool_call"]

MAX_BODY_BYTES = 256 * 1024

TOOL = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1, "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
)
_VALIDATOR = jsonschema.Draft202012Validator(TOOL.parameters)


@dataclass(frozen=True)
class ToolCallOutcome:
    ok: bool
    error: ToolCallError | None
    detail: str  # what was wrong (or "ok"), for the log; never holds provider text beyond a status
    http_status: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_s: float | None = None


def build_tool_prompt(nonce: str) -> str:
    """The canary's prompt; the nonce first, as for the probe, against prefix caches."""
    return f"[canary {nonce}] What is the weather in Paris, in celsius? Use the {TOOL.name} tool."


def _decode_arguments(arguments: object) -> tuple[object, str | None]:
    """(decoded arguments, None) or (None, why they are not JSON)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments), None
        except ValueError:
            return None, "arguments are not valid JSON"
    if arguments is None:
        return None, "arguments are missing"
    return arguments, None


def judge_reply(reply: ToolCallReply, tool: ToolSpec = TOOL) -> tuple[ToolCallError | None, str]:
    """The verdict on a decoded answer: (None, "ok") or (error, why)."""
    if not reply.calls:
        return ToolCallError.NO_TOOL_CALL, "no tool call in the answer"
    name, arguments = reply.calls[0]
    if name != tool.name:
        shown = name if isinstance(name, str) and len(name) <= 64 else type(name).__name__
        return ToolCallError.UNKNOWN_TOOL, f"called an unknown tool {shown!r}"
    decoded, problem = _decode_arguments(arguments)
    if problem is not None:
        return ToolCallError.INVALID_JSON, problem
    validator = _VALIDATOR if tool is TOOL else jsonschema.Draft202012Validator(tool.parameters)
    error = jsonschema.exceptions.best_match(validator.iter_errors(decoded))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "arguments"
        return ToolCallError.SCHEMA_MISMATCH, f"{where}: fails `{error.validator}` of the schema"
    return None, "ok"


async def run_tool_call(client: httpx.AsyncClient, target: ProbeTarget) -> ToolCallOutcome:
    """Send the forced tool call for `target` and judge it; never raises for provider outcomes."""
    protocol = PROTOCOLS.get(target.protocol)
    if protocol is None or protocol.tool_call is None:
        return ToolCallOutcome(False, ToolCallError.REQUEST_FAILED,
                               f"protocol {target.protocol!r} has no tool-call canary")
    started = time.perf_counter()
    try:
        spec = protocol.tool_call.build_request(target, build_tool_prompt(secrets.token_hex(6)), TOOL)
    except Exception as exc:
        return ToolCallOutcome(False, ToolCallError.REQUEST_FAILED, f"cannot build the request: {type(exc).__name__}")
    timeout = httpx.Timeout(target.timeout_s, connect=target.connect_timeout_s)
    status: int | None = None
    try:
        async with asyncio.timeout(target.timeout_s):
            request = client.build_request("POST", spec.url, headers={"accept-encoding": "identity", **spec.headers},
                                           json=dict(spec.json), timeout=timeout)
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                body = await _read_bounded(response)
            finally:
                await response.aclose()
    except TimeoutError:
        return _failed("timed out", status, started)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return _failed(outcomes.scrub(outcomes.describe(exc), target)[:200], status, started)
    if body is None:
        return _failed(f"response body over {MAX_BODY_BYTES} bytes", status, started)
    if not 200 <= status < 300:
        return _failed(f"HTTP {status}", status, started)
    try:
        reply = protocol.tool_call.parse_response(json.loads(body))
    except (ValueError, StreamDataError, TypeError, AttributeError, KeyError, IndexError):
        return _failed("the response is not the protocol's JSON answer", status, started)
    error, detail = judge_reply(reply)
    return ToolCallOutcome(error is None, error, detail, status, _count(reply.input_tokens),
                           _count(reply.output_tokens), round(time.perf_counter() - started, 6))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and 0 <= value < 2**31 else None


def _failed(detail: str, status: int | None, started: float) -> ToolCallOutcome:
    return ToolCallOutcome(False, ToolCallError.REQUEST_FAILED, detail, status,
                           total_s=round(time.perf_counter() - started, 6))


async def _read_bounded(response: httpx.Response) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    async for chunk in decoded_body(response):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)
