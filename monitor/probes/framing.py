"""Incremental stream framing: raw bytes in, complete SSE events or NDJSON lines out.

The timing core timestamps each network read *before* it reaches these decoders, so the decoders
never affect timing; they only split. Rules follow the WHATWG SSE spec as the official SDKs apply
it: lines end in CR, LF or CRLF; a blank line dispatches an event; `data:` lines are joined with
"\\n" after dropping one leading space; lines starting with ":" are comments; a pending event is
flushed at EOF even without a trailing blank line.

One addition for probing: a JSON object written into the stream WITHOUT `data:` (Gemini sends
mid-stream errors that way, pretty-printed over several lines; PROTOCOLS.md §4) would be dropped
by the spec's "ignore unknown fields" rule, and the truncated stream would then look clean. Lines
from one that starts with `{` up to its matching `}` are joined and returned as an event of their
own (event name `RAW_JSON_EVENT`), so the protocol parser sees the error. An object still open at
EOF is returned as it is, and fails to parse as the truncation it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "" when the stream gave no `event:` field ("message" per spec)
    data: str


RAW_JSON_EVENT = ""  # raw JSON objects are parsed like unnamed `data:` events
_EOL_CHAR = re.compile(rb"[\r\n]")


def brace_balance(line: str) -> int:
    """Opening minus closing braces of one line of JSON, ignoring those inside strings (a JSON
    string cannot span lines, so each line starts outside one)."""
    depth, in_string, escaped = 0, False, False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
    return depth


class _LineSplitter:
    """Splits bytes into text lines on CR, LF or CRLF, across read boundaries.

    Linear in the bytes fed: a partial line waits in one growing buffer, and each read is
    searched from where the previous search stopped (re-joining or re-scanning the pending bytes
    on every read would make one long line cost quadratic time).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched without finding a line end

    def feed(self, chunk: bytes) -> list[str]:
        buf = self._buf
        buf += chunk
        lines: list[str] = []
        start = 0
        search = _EOL_CHAR.search
        match = search(buf, self._scanned)
        while match is not None:
            at = match.start()
            if buf[at] == 0x0D:  # CR
                if at + 1 == len(buf):
                    break  # may be the first half of a CRLF split across reads: keep it back
                end = at + 2 if buf[at + 1] == 0x0A else at + 1
            else:
                end = at + 1
            lines.append(buf[start:at].decode("utf-8", errors="replace"))
            start = end
            match = search(buf, start)
        self._scanned = len(buf) if match is None else match.start()
        if start:
            del buf[:start]
            self._scanned -= start
        return lines

    def flush(self) -> str | None:
        data = bytes(self._buf)
        self._buf, self._scanned = bytearray(), 0
        if data.endswith(b"\r"):
            data = data[:-1]  # a final CR just ends the last line
        return data.decode("utf-8", errors="replace") if data else None


class SSEDecoder:
    """Feed raw bytes; get back the events completed by them."""

    def __init__(self) -> None:
        self._lines = _LineSplitter()
        self._event = ""
        self._data: list[str] = []
        self._raw: list[str] = []  # lines of a raw JSON object being collected
        self._raw_depth = 0
        self.comments = 0  # comment lines seen (keep-alives such as ": OPENROUTER PROCESSING")

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in self._lines.feed(chunk):
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch whatever is pending."""
        events: list[SSEEvent] = []
        tail = self._lines.flush()
        if tail is not None:
            event = self._line(tail)
            if event is not None:
                events.append(event)
        event = self._line("")
        if event is not None:
            events.append(event)
        if self._raw:  # an object cut off by the end of the stream
            events.append(SSEEvent(event=RAW_JSON_EVENT, data="\n".join(self._raw)))
            self._raw, self._raw_depth = [], 0
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if self._raw or line.lstrip().startswith("{"):  # no SSE field name starts with "{"
            return self._raw_line(line)
        if line == "":
            if not self._data and not self._event:
                return None
            event = SSEEvent(event=self._event, data="\n".join(self._data))
            self._event, self._data = "", []
            return event if event.data or event.event else None
        if line.startswith(":"):
            self.comments += 1
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # `id:` and `retry:` carry nothing a probe needs.
        return None

    def _raw_line(self, line: str) -> SSEEvent | None:
        self._raw.append(line)
        self._raw_depth += brace_balance(line)
        if self._raw_depth > 0:
            return None
        event = SSEEvent(event=RAW_JSON_EVENT, data="\n".join(self._raw))
        self._raw, self._raw_depth = [], 0
        return event


class NDJSONDecoder:
    """Feed raw bytes; get back complete non-blank lines (one JSON document each)."""

    def __init__(self) -> None:
        self._lines = _LineSplitter()
        self.comments = 0  # NDJSON has no comments; kept so both decoders answer alike

    def feed(self, chunk: bytes) -> list[str]:
        return [line for line in self._lines.feed(chunk) if line.strip()]

    def flush(self) -> list[str]:
        tail = self._lines.flush()
        return [tail] if tail is not None and tail.strip() else []


# The one map from a protocol's framing (`base.Framing`, a str enum, so its members are these
# keys) to its decoder class; the engine and the tests read it.
DECODERS: dict[str, type[SSEDecoder] | type[NDJSONDecoder]] = {
    "sse": SSEDecoder,
    "ndjson": NDJSONDecoder,
}
