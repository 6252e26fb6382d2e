"""Transcript replay helpers for the protocol tests, and checks on the fixture folder itself.

`replay_fixture(protocol, name)` feeds a transcript's bytes through the protocol's framing
decoder and `parse_event`, whole, one byte at a time and in random-sized pieces (fixed seeds),
asserts every split gives the same deltas, and returns them folded into a `Replay`.

The checks here: the copied recordings are byte-for-byte what the README's hashes say, every
synthetic transcript is labelled as such, and every fixture file is read by some test.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.probes.base import Delta, Framing, WireProtocol
from monitor.probes.framing import NDJSONDecoder, SSEDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocols"
TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Replay:
    """A transcript as the engine would see it: the parsed deltas, in order."""

    deltas: tuple[Delta, ...]

    @property
    def content(self) -> str:
        return "".join(d.content for d in self.deltas)

    @property
    def reasoning(self) -> str:
        return "".join(d.reasoning for d in self.deltas)

    @property
    def token_events(self) -> int:
        """Events the engine counts as tokens (content, reasoning or tool call)."""
        return sum(1 for d in self.deltas if d.has_token)

    @property
    def tool_call_events(self) -> int:
        return sum(1 for d in self.deltas if d.tool_call)

    @property
    def usage(self) -> int | None:
        """Last reported cumulative output-token count, as the engine keeps it."""
        reported = [d.usage_output_tokens for d in self.deltas if d.usage_output_tokens is not None]
        return reported[-1] if reported else None

    @property
    def finish_reason(self) -> str | None:
        reasons = [d.finish_reason for d in self.deltas if d.finish_reason]
        return reasons[-1] if reasons else None

    @property
    def done(self) -> bool:
        return any(d.done for d in self.deltas)

    @property
    def done_is_last(self) -> bool:
        return bool(self.deltas) and self.deltas[-1].done and sum(d.done for d in self.deltas) == 1

    @property
    def errors(self) -> list[str]:
        return [d.error for d in self.deltas if d.error]


def read_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def replay_pieces(protocol: WireProtocol, pieces: list[bytes]) -> Replay:
    decoder = SSEDecoder() if protocol.framing == Framing.SSE else NDJSONDecoder()
    deltas: list[Delta] = []
    for piece in pieces:
        for item in decoder.feed(piece):
            delta = protocol.parse_event(item)
            if delta is not None:
                deltas.append(delta)
    for item in decoder.flush():
        delta = protocol.parse_event(item)
        if delta is not None:
            deltas.append(delta)
    return Replay(tuple(deltas))


def random_pieces(data: bytes, seed: int, max_piece: int = 17) -> list[bytes]:
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[at:at + size])
        at += size
    return pieces


def replay_bytes(protocol: WireProtocol, data: bytes) -> Replay:
    whole = replay_pieces(protocol, [data])
    splits = [[data[i:i + 1] for i in range(len(data))]]
    splits += [random_pieces(data, seed) for seed in range(12)]
    splits += [random_pieces(data, seed, max_piece=300) for seed in range(12, 16)]
    for pieces in splits:
        assert b"".join(pieces) == data
        assert replay_pieces(protocol, pieces) == whole, "read boundaries changed the parsed deltas"
    return whole


def replay_fixture(protocol: WireProtocol, name: str) -> Replay:
    return replay_bytes(protocol, read_fixture(name))


# ---------------------------------------------------------------------------- folder checks

def _readme() -> str:
    return (FIXTURES / "README.md").read_text()


def _table_rows(section_title: str) -> list[list[str]]:
    section = _readme().split(section_title, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("file", "") and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def _transcripts() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.suffix in (".sse", ".ndjson"))


def test_copied_recordings_match_their_recorded_hashes():
    rows = _table_rows("## Recorded / documented")
    assert len(rows) == 8
    for name, _protocol, _origin, sha256 in rows:
        assert hashlib.sha256(read_fixture(name)).hexdigest() == sha256, name


def test_every_transcript_is_listed_and_synthetic_ones_are_labelled():
    recorded = {row[0] for row in _table_rows("## Recorded / documented")}
    synthetic = {row[0] for row in _table_rows("## Synthetic")}
    names = {p.name for p in _transcripts()}
    assert names == recorded | synthetic
    assert all(name.startswith("synthetic_") for name in synthetic)
    assert not any(name.startswith("synthetic_") for name in recorded)
    for name in synthetic:
        if name.endswith(".sse"):
            first_line = re.split(rb"\r\n|\r|\n", read_fixture(name), maxsplit=1)[0]
            assert first_line.startswith(b": synthetic transcript"), name


@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.name)
def test_every_transcript_is_read_by_some_test(path: Path):
    # A test "reads" a transcript when it names it in a string literal (the generic decode test
    # below globs the folder and names none, so it does not count).
    sources = [p.read_text() for p in TESTS.glob("test_*.py")]
    assert any(f'"{path.name}"' in source for source in sources), (
        f"no test in tests/probes reads {path.name}"
    )


@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.name)
def test_every_transcript_decodes_with_its_protocol(path: Path):
    """Whatever a protocol's own tests assert, its transcripts must decode (no StreamDataError)
    identically across read boundaries, and yield something."""
    from monitor.probes.registry import PROTOCOLS

    rows = {row[0]: row[1] for row in _table_rows("## Recorded / documented") + _table_rows("## Synthetic")}
    replay = replay_bytes(PROTOCOLS[rows[path.name]], path.read_bytes())
    assert replay.deltas, f"{path.name} produced no deltas"


# The openai protocol belongs to the engine's tests; these pin the two openai-shaped recordings
# here too, so the folder check above does not depend on how other test files name them.

def test_openai_recording_with_one_token():
    from monitor.probes.openai import PROTOCOL as OPENAI

    replay = replay_fixture(OPENAI, "openai_chat_stream_len1.sse")
    assert replay.content == '{"'
    assert replay.token_events == 1  # the role-only first chunk is not a token
    assert replay.usage == 1 and replay.finish_reason == "length"
    assert replay.done_is_last and replay.errors == []


def test_openrouter_midstream_error_recording():
    from monitor.probes.openai import PROTOCOL as OPENAI

    replay = replay_fixture(OPENAI, "openrouter_midstream_error.sse")
    assert replay.errors == ["Provider disconnected unexpectedly"]
    assert replay.token_events == 0 and not replay.done
