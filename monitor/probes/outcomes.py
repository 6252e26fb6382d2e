"""How a probe's failure is classified and worded, and how provider text is scrubbed of secrets.

Every rule that turns a cause into an `ErrorKind` lives here; the engine (`engine.py`) only keeps
the timeline and raises what these functions build. Causes, in the order a probe meets them:

    cause                                                      ErrorKind        function
    ---------------------------------------------------------  ---------------  ----------------------
    target not resolvable (unset variable/key, bad URL, ...)    config_error     config_failure
    protocol cannot build the request for this target           config_error     build_failure
    connecting
      name resolution fails or times out                        dns_error        connection_failure
      TCP connect refused / unreachable / timed out             connect_error    connection_failure
      TLS handshake fails or times out                          tls_error        connection_failure
      no free connection in the client pool in time             timeout          connection_failure
    after the connection is up, before a response
      peer closes or resets before sending any byte             connect_error    transport_failure
      bytes arrive but no valid HTTP response head (illegal     stream_error     transport_failure
        status line, head too large, malformed header, cut)
    response head received
      401, 403                                                  auth_error       status_failure
      404                                                       not_found        status_failure
      429, 529 (Anthropic overload); keeps Retry-After          rate_limited     status_failure
      any other non-2xx                                         http_error       status_failure
      2xx with an HTML page, or JSON where SSE was asked for    stream_error     non_stream_body_failure
    reading the stream
      more bytes than `max_stream_bytes`                        stream_error     stream_over_limit
      an event the protocol cannot parse                        stream_error     malformed_event
      an in-band error event                                    stream_error     error_event
      reset or close mid-stream, or unparseable framing         stream_error     transport_failure
      bytes but no event at all                                 stream_error     not_an_event_stream
      EOF without the protocol's end marker                     stream_error     missing_end_marker
      EOF without a finish reason (protocols ending at EOF)     stream_error     missing_finish_reason
      clean end (marker or EOF) without any token               empty_response   finished_without_token,
                                                                                 ended_without_token
    limits
      no response head within `timeout_s`                       timeout          timeout_failure
      no first token within `first_token_timeout_s`             timeout          timeout_failure
      no data for `stall_timeout_s` once the response started   timeout          timeout_failure
      stream not finished within `timeout_s`                    timeout          timeout_failure
    anything unforeseen                                         stream_error     unexpected_failure
                                                                (http_error before the stream)

Error bodies are read through the protocol's `error_message` hook (its own error shape), falling
back to `json_error_message`, the generic reading of the common shapes.

Scrubbing (`scrub`): every provider-derived text of a result (`PROVIDER_TEXT_FIELDS`) loses any
trace of the target's key and of its `redact` values, whatever form the provider echoed them in.
See `scrub` for what counts as a trace.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import functools
import html
import json
import math
import os
import re
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote, quote_plus, urlsplit

import httpcore
import httpx

from monitor.probes.base import ErrorKind, ProbeResult, ProbeTarget, WireProtocol

# --------------------------------------------------------------------------- the failure

class ProbeFailure(Exception):
    """A classified probe failure: what `run_probe` turns into a failed `ProbeResult`."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


# A connection that never came up has no set-up time (its phases stay in dns_s/tcp_s).
CONNECTION_KINDS = frozenset({ErrorKind.DNS_ERROR, ErrorKind.CONNECT_ERROR, ErrorKind.TLS_ERROR})


class DNSLookupError(httpcore.ConnectError):
    """Name resolution failed (subclass so httpx maps it to ConnectError; found as __cause__)."""


class DNSLookupTimeout(httpcore.ConnectTimeout):
    pass


# --------------------------------------------------------------------------- before any response

def config_failure(problem: str) -> ProbeFailure:
    return ProbeFailure(ErrorKind.CONFIG_ERROR, problem)


def build_failure(exc: BaseException) -> ProbeFailure:
    return ProbeFailure(ErrorKind.CONFIG_ERROR, f"cannot build request: {describe(exc)}")


def connection_failure(exc: BaseException, *, phase: str | None, target: ProbeTarget) -> ProbeFailure:
    """A failure while the connection was being opened; `phase` is the connection step that
    started and never completed ("connect_tcp", "start_tls" or None)."""
    timed_out = isinstance(exc, (httpx.TimeoutException, TimeoutError))
    cause = exc.__cause__
    if isinstance(cause, (DNSLookupError, DNSLookupTimeout)):
        return ProbeFailure(ErrorKind.DNS_ERROR, str(cause))
    # Our backend raises httpcore errors with a ready human reason; anything else gets its type.
    reason = str(cause) if isinstance(cause, httpcore.NetworkError) and str(cause) else describe(cause or exc)
    detail = "timed out" if timed_out else one_line(reason)
    if phase == "start_tls":
        return ProbeFailure(ErrorKind.TLS_ERROR, f"TLS handshake failed: {detail}")
    if isinstance(exc, httpx.PoolTimeout):
        return ProbeFailure(ErrorKind.TIMEOUT, "no free connection in the client pool in time")
    host = urlsplit(target.base_url).netloc
    if timed_out:
        return ProbeFailure(ErrorKind.CONNECT_ERROR,
                            f"connecting to {host} timed out after {target.connect_timeout_s:g} s")
    return ProbeFailure(ErrorKind.CONNECT_ERROR, f"cannot connect to {host}: {detail}")


def transport_failure(exc: BaseException, *, response_started: bool, bytes_received: bool) -> ProbeFailure:
    """An HTTP, TLS or OS error once the connection was up.

    `response_started`: the response head had been parsed (the stream was being read).
    `bytes_received`: some byte of the response had arrived. A server that answered with bytes
    that are no valid HTTP response head (an illegal status line, a head too large, a malformed
    header, a head cut short) did answer: that is an unparseable response (`stream_error`), never
    a connection failure. Only a peer that went away before sending anything is `connect_error`.
    """
    if response_started:
        return ProbeFailure(ErrorKind.STREAM_ERROR, _stream_break_text(exc))
    if bytes_received:
        if isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith("Server disconnected"):
            detail = "the connection closed inside the response head"
        elif isinstance(exc, httpx.RemoteProtocolError):
            detail = _protocol_error_text(exc)
        else:
            detail = describe(exc)
        return ProbeFailure(ErrorKind.STREAM_ERROR, f"invalid HTTP response: {detail}")
    return ProbeFailure(ErrorKind.CONNECT_ERROR, f"connection lost before a response: {describe(exc)}")


def _protocol_error_text(exc: BaseException) -> str:
    # h11 quotes the offending line as `bytearray(b'...')`; the line itself is what helps.
    text = re.sub(r"bytearray\((b(['\"]).*?\2)\)", r"\1", str(exc))
    return one_line(text) or type(exc).__name__


def _stream_break_text(exc: BaseException) -> str:
    if isinstance(exc, (httpx.ReadError, ConnectionResetError)):
        return "connection reset mid-stream"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection closed mid-stream ({one_line(str(exc))})"
    return f"stream broke: {describe(exc)}"


def timeout_failure(reason: str, target: ProbeTarget, *, headers_seen: bool) -> ProbeFailure:
    """The limit that fired: "stall", "first_token" or "total"."""
    if reason == "stall":
        text = f"stream stalled: no data for {target.stall_timeout_s:g} s"
    elif reason == "first_token":
        text = f"no first token within {target.first_token_timeout_s:g} s"
    elif not headers_seen:
        text = f"no response headers within the {target.timeout_s:g} s limit"
    else:
        text = f"stream not finished within the {target.timeout_s:g} s limit"
    return ProbeFailure(ErrorKind.TIMEOUT, text)


def unexpected_failure(exc: BaseException, *, streaming: bool) -> ProbeFailure:
    """A bug or an unforeseen library error: still a result, never an exception."""
    kind = ErrorKind.STREAM_ERROR if streaming else ErrorKind.HTTP_ERROR
    return ProbeFailure(kind, f"unexpected error: {describe(exc)}")


# --------------------------------------------------------------------------- the response head

def status_failure(status: int, headers: httpx.Headers, body: bytes,
                   protocol: WireProtocol | None = None) -> ProbeFailure:
    """A non-2xx response (`body`: its first bytes)."""
    detail = error_detail(body, headers.get("content-type", ""), protocol)
    text = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return ProbeFailure(ErrorKind.AUTH_ERROR, text, status=status)
    if status == 404:
        return ProbeFailure(ErrorKind.NOT_FOUND, text, status=status)
    if status in (429, 529):
        retry_after = retry_after_s(headers)
        if retry_after is not None:
            text += f" (retry after {retry_after:g} s)"
        return ProbeFailure(ErrorKind.RATE_LIMITED, text, status=status, retry_after_s=retry_after)
    return ProbeFailure(ErrorKind.HTTP_ERROR, text, status=status)


def is_non_stream_body(content_type: str, protocol: WireProtocol) -> bool:
    """A 2xx whose content type says it is no stream: an HTML page, or JSON where SSE was asked."""
    media = content_type.split(";")[0].strip().lower()
    return media == "text/html" or (protocol.framing == "sse" and media == "application/json")


def non_stream_body_failure(status: int, content_type: str, body: bytes,
                            protocol: WireProtocol | None = None) -> ProbeFailure:
    media = content_type.split(";")[0].strip().lower()
    detail = error_detail(body, media, protocol)
    return ProbeFailure(ErrorKind.STREAM_ERROR, f"HTTP {status} with a non-stream {media} body"
                        + (f": {detail}" if detail else ""))


def _wait(seconds: float) -> float | None:
    """A non-negative wait, or None for a value that is no number of seconds (NaN)."""
    return None if math.isnan(seconds) else max(0.0, seconds)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The wait a 429/529 asks for: `retry-after-ms`, else `retry-after` (seconds or a date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return _wait(float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return _wait(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, round((when - datetime.now(timezone.utc)).total_seconds(), 3))


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def error_detail(body: bytes, content_type: str, protocol: WireProtocol | None = None) -> str:
    """A short human message from an error body: provider JSON, an HTML page or plain text."""
    if not body.strip():
        return ""
    text = body.decode("utf-8", errors="replace").strip()
    if "html" in content_type.lower() or text[:15].lower().startswith(("<!doctype", "<html")):
        match = _TITLE.search(body)
        title = one_line(_TAG.sub("", match.group(1).decode("utf-8", "replace"))) if match else ""
        return f"HTML error page ({title})" if title else "HTML error page"
    try:
        doc = json.loads(text)
    except ValueError:
        return one_line(text)
    message = None
    if protocol is not None and protocol.error_message is not None:
        try:
            message = protocol.error_message(doc)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            message = None  # an odd body shape: the generic reading below still applies
    if not message:
        message = json_error_message(doc)
    return one_line(message) if message else one_line(text)


def json_error_message(doc: Any) -> str | None:
    """The message in the common JSON error shapes (`error.message`, `error` as a string, the
    Cloudflare v4 `errors` list, a top-level `message`/`detail`), or None."""
    if isinstance(doc, list) and doc:
        return json_error_message(doc[0])  # Gemini sometimes wraps the error in a list
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or error.get("status")
        return str(message) if message else None
    if isinstance(error, str) and error:
        return error
    errors = doc.get("errors")  # Cloudflare v4 envelope
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        return f"{first.get('message', '')}" + (f" (code {code})" if code is not None else "")
    for key in ("message", "detail"):
        if isinstance(doc.get(key), str):
            return doc[key]
    return None


# --------------------------------------------------------------------------- the stream

def stream_over_limit(max_bytes: int) -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, f"stream exceeded {max_bytes} bytes")


def malformed_event(exc: BaseException) -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, f"malformed stream event: {describe(exc)}")


def error_event(text: str) -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, f"error event in stream: {one_line(text)}")


def finished_without_token(finish_reason: str | None) -> ProbeFailure:
    return ProbeFailure(ErrorKind.EMPTY_RESPONSE, "stream finished without any output token"
                        + (f" (finish reason {finish_reason})" if finish_reason else ""))


def not_an_event_stream() -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, "response body is not an event stream")


def missing_end_marker() -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, "stream ended without its end marker (truncated)")


def missing_finish_reason() -> ProbeFailure:
    return ProbeFailure(ErrorKind.STREAM_ERROR, "stream ended without a finish reason (truncated)")


def ended_without_token() -> ProbeFailure:
    return ProbeFailure(ErrorKind.EMPTY_RESPONSE, "stream ended without any output token")


# --------------------------------------------------------------------------- error text

_MAX_ERROR_TEXT = 240


def os_reason(exc: BaseException) -> str:
    """'connection refused' rather than "ConnectionRefusedError: [Errno 111] Connect call failed"."""
    if isinstance(exc, ssl.SSLError):
        return one_line(exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return describe(exc)


def describe(exc: BaseException) -> str:
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def one_line(text: str) -> str:
    """`text` on one line, cut to 240 characters (a cut ends in "…")."""
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


# --------------------------------------------------------------------------- scrubbing

# Result fields whose text can come from the provider; `scrub_result` scrubs each of them.
PROVIDER_TEXT_FIELDS = ("error", "finish_reason", "http_version")

REDACTED = "***"
# Any run of this many consecutive characters of a secret (in any form below) is removed.
# Shorter runs are left: 8 characters of a key guess nothing, while shorter runs would start to
# match ordinary words.
MIN_RUN = 8
# A text cut to its length limit can end inside an echoed key; a run of a secret's FIRST
# characters this long is removed too (raw and URL-encoded forms, where such cuts happen).
MIN_PREFIX = 4


def scrub(text: str, target: ProbeTarget) -> str:
    """`text` without any trace of `target`'s key or `redact` values; the one scrubber.

    A trace is any run of `MIN_RUN` or more consecutive characters (or the whole value, when it
    is shorter) of a secret in any of these forms, compared case-insensitively: as it is,
    reversed, URL-encoded (path, component and form encoding), JSON-escaped (`\\uXXXX`, with and
    without `\\/`), every character `\\uXXXX`-escaped, Python-escaped (`\\xNN`), HTML-escaped,
    and base64 / URL-safe base64 at each of the three byte alignments (so the key's encoding is
    found inside an encoded `user:key` or `Bearer key` too); plus a run of `MIN_PREFIX` or more
    of the first characters of the raw or URL-encoded value (an echo cut by a length limit).
    Values shorter than `MIN_PREFIX` characters are not scrubbed.

    Every trace is found in the same text, their spans are merged and each merged span becomes
    `***`, so the result does not depend on the order the forms are tried in; this repeats until
    nothing is left to remove (a span never grows back from the replacement).
    """
    values = [s.reveal() for s in ((target.api_key,) if target.api_key is not None else ()) + tuple(target.redact)]
    matchers = [m for m in (_matcher(v) for v in values if v) if m is not None]
    if not matchers or not text:
        return text
    while True:
        folded = _fold(text)
        spans = sorted(span for m in matchers for span in m.spans(folded))
        if not spans:
            return text
        out: list[str] = []
        at = 0
        start, end = spans[0]
        for s, e in spans[1:]:
            if s <= end:
                end = max(end, e)
                continue
            out += [text[at:start], REDACTED]
            at, (start, end) = end, (s, e)
        out += [text[at:start], REDACTED, text[end:]]
        text = "".join(out)


def scrub_result(result: ProbeResult, target: ProbeTarget) -> ProbeResult:
    """`result` with every provider-derived text field scrubbed (see `scrub`)."""
    changes = {name: scrub(value, target) for name in PROVIDER_TEXT_FIELDS
               if isinstance(value := getattr(result, name), str)}
    return dataclasses.replace(result, **changes)


def _fold(text: str) -> str:
    """Lower-case, one character for one (so positions in the folded text are positions in it)."""
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


def _forms(value: str) -> tuple[set[str], set[str]]:
    """(every form of `value`, the forms whose leading runs count too)."""
    raw = value.encode("utf-8", "surrogatepass")
    json_ascii = json.dumps(value)[1:-1]
    prefixed = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms = set(prefixed) | {
        value[::-1],
        json_ascii,
        json_ascii.replace("/", "\\/"),
        "".join(f"\\u{unit:04x}" for unit in _utf16_units(value)),
        raw.decode("ascii", "backslashreplace"),
        value.encode("unicode_escape").decode("ascii"),
        html.escape(value),
    }
    for shift in range(3):
        if len(raw) - shift >= 3:
            forms.add(base64.b64encode(raw[shift:]).decode("ascii").rstrip("="))
            forms.add(base64.urlsafe_b64encode(raw[shift:]).decode("ascii").rstrip("="))
    return forms, prefixed


def _utf16_units(value: str) -> list[int]:
    data = value.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@dataclass(frozen=True)
class _Matcher:
    """All forms of one secret, indexed by their short runs for one regex search over a text."""

    forms: tuple[str, ...]  # folded
    # gram -> (form index, position in the form, prefix-only)
    grams: Mapping[str, tuple[tuple[int, int, bool], ...]]
    lengths: tuple[int, ...]
    pattern: re.Pattern[str]

    def spans(self, text: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        pos = 0
        while (match := self.pattern.search(text, pos)) is not None:
            i = match.start()
            best = 0
            for length in self.lengths:
                for index, p, _prefix in self.grams.get(text[i:i + length], ()):
                    form = self.forms[index]
                    run = length
                    while i + run < len(text) and p + run < len(form) and text[i + run] == form[p + run]:
                        run += 1
                    best = max(best, run)
            if best:
                found.append((i, i + best))
            pos = i + 1
        return found


@functools.lru_cache(maxsize=256)
def _matcher(value: str) -> _Matcher | None:
    if len(value) < MIN_PREFIX:
        return None
    all_forms, prefixed = _forms(value)
    ordered = sorted(all_forms, key=lambda f: (-len(f), f))  # a fixed order, longest first
    forms = tuple(_fold(f) for f in ordered)
    grams: dict[str, list[tuple[int, int, bool]]] = {}
    for index, (form, original) in enumerate(zip(forms, ordered)):
        if len(form) < MIN_PREFIX:
            continue
        size = min(MIN_RUN, len(form))
        for p in range(len(form) - size + 1):
            grams.setdefault(form[p:p + size], []).append((index, p, False))
        if original in prefixed and len(form) > MIN_PREFIX:
            grams.setdefault(form[:MIN_PREFIX], []).append((index, 0, True))
    if not grams:
        return None
    keys = sorted(grams, key=lambda g: (-len(g), g))
    pattern = re.compile("|".join(re.escape(g) for g in keys))
    return _Matcher(
        forms=forms,
        grams={g: tuple(v) for g, v in grams.items()},
        lengths=tuple(sorted({len(g) for g in keys}, reverse=True)),
        pattern=pattern,
    )
