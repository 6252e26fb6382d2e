"""SSE framing edge cases beyond the recorded transcripts (tests/probes/test_fixtures.py replays
those): raw JSON objects written into an event stream without `data:`."""

from __future__ import annotations

import json

import pytest

from monitor.probes.framing import RAW_JSON_EVENT, SSEDecoder, SSEEvent, brace_balance

GEMINI_ERROR = {"error": {"code": 500, "message": "Internal error {retry} \"later\"", "status": "INTERNAL"}}
STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "One,"}]}}]}\r\n\r\n'
    + json.dumps(GEMINI_ERROR, indent=2).encode()
    + b"\n"
    + b'data: {"after": true}\n\n'
)


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.flush()


@pytest.mark.parametrize(
    ("line", "balance"),
    [
        ("{", 1),
        ("}", -1),
        ('  "error": {', 1),
        ('{"a": {"b": 1}}', 0),
        ('{"text": "} {{ "', 1),
        ('{"text": "a \\" } still inside"', 1),
        ('"ends with a backslash \\\\", "x": {', 1),
        ("", 0),
    ],
)
def test_brace_balance_ignores_braces_inside_strings(line, balance):
    assert brace_balance(line) == balance


def test_raw_json_object_between_events_is_one_event_in_order():
    events = decode([STREAM])
    assert [e.event for e in events] == ["", RAW_JSON_EVENT, ""]
    assert json.loads(events[0].data)["candidates"][0]["content"]["parts"][0]["text"] == "One,"
    assert json.loads(events[1].data) == GEMINI_ERROR
    assert json.loads(events[2].data) == {"after": True}


def test_raw_json_object_split_at_every_byte_gives_the_same_events():
    whole = decode([STREAM])
    for cut in range(1, len(STREAM)):
        assert decode([STREAM[:cut], STREAM[cut:]]) == whole, cut
    assert decode([bytes([b]) for b in STREAM]) == whole


def test_single_line_raw_object_without_trailing_newline_is_flushed_at_eof():
    events = decode([b'data: {"x": 1}\n\n{"error": {"message": "late"}}'])
    assert [json.loads(e.data) for e in events] == [{"x": 1}, {"error": {"message": "late"}}]


def test_object_still_open_at_eof_comes_out_unparseable():
    events = decode([b'data: {"x": 1}\n\n{\n  "error": {\n    "message": "cut'])
    assert len(events) == 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1].data)


def test_other_stray_lines_are_still_ignored_as_the_spec_says():
    events = decode([b"id: 7\nretry: 100\nfoo: bar\ndata: {\"x\": 1}\n\n"])
    assert events == [SSEEvent(event="", data='{"x": 1}')]
