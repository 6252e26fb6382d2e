"""Test helpers for the protocol tests: transcript replay through a protocol's own decoder.

`replay_fixture(protocol, name)` feeds a transcript's bytes through the protocol's framing
decoder (`framing.DECODERS`) and `parse_event`, whole, one byte at a time and in random-sized
pieces (fixed seeds), asserts every split gives the same deltas, and returns them folded into a
`Replay`. `event_ends` finds where each event of a stream ends (for cutting streams).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from monitor.probes.base import Delta, WireProtocol
from monitor.probes.framing import DECODERS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocols"


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
    decoder = DECODERS[protocol.framing]()
    deltas: list[Delta] = []
    for piece in pieces:
        for item in decoder.feed(piece):
            delta = protocol.parse_event(item)  # type: ignore[arg-type]
            if delta is not None:
                deltas.append(delta)
    for item in decoder.flush():
        delta = protocol.parse_event(item)  # type: ignore[arg-type]
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
    """The deltas of `data`, checked to be the same at every read boundary and random splits."""
    whole = replay_pieces(protocol, [data])
    splits = [[data[i:i + 1] for i in range(len(data))]]
    splits += [[data[:cut], data[cut:]] for cut in range(1, len(data))]
    splits += [random_pieces(data, seed) for seed in range(12)]
    splits += [random_pieces(data, seed, max_piece=300) for seed in range(12, 16)]
    for pieces in splits:
        assert b"".join(pieces) == data
        assert replay_pieces(protocol, pieces) == whole, "read boundaries changed the parsed deltas"
    return whole


def replay_fixture(protocol: WireProtocol, name: str) -> Replay:
    return replay_bytes(protocol, read_fixture(name))


def event_ends(protocol: WireProtocol, data: bytes) -> list[tuple[int, object]]:
    """(offset just past the byte that completed it, the event) for each event of `data`."""
    decoder = DECODERS[protocol.framing]()
    ends: list[tuple[int, object]] = []
    for i in range(len(data)):
        ends += [(i + 1, item) for item in decoder.feed(data[i:i + 1])]
    ends += [(len(data), item) for item in decoder.flush()]
    return ends
