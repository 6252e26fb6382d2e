"""The one map from protocol name to its WireProtocol declaration, and the names derived from it.

`PROTOCOLS` (a read-only live view) and `PROTOCOL_NAMES` (a live sequence of the names, in
registration order) are what the engine, the catalog and the CLI read; nothing else lists
protocol names. The five built-in protocols are registered here at import; `register` adds
another one at run time and `registered` does so for the length of a `with` block (tests).

Adding a protocol = one module declaring a `WireProtocol`, its entry in `_BUILT_IN`, one test
file for its wire facts (the conformance suite in tests/probes covers the rest).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Mapping, overload

from monitor.probes import anthropic, cloudflare, gemini, ollama, openai
from monitor.probes.base import WireProtocol

_protocols: dict[str, WireProtocol] = {}

PROTOCOLS: Mapping[str, WireProtocol] = MappingProxyType(_protocols)


class _Names(Sequence[str]):
    """The registered protocol names, read from the registry on every use."""

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return tuple(_protocols)[index]

    def __len__(self) -> int:
        return len(_protocols)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_protocols))

    def __contains__(self, name: object) -> bool:
        return name in _protocols

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


PROTOCOL_NAMES: Sequence[str] = _Names()


def register(protocol: WireProtocol) -> WireProtocol:
    """Add `protocol` under its own name; a name already taken is refused (ValueError)."""
    if not isinstance(protocol, WireProtocol):
        raise TypeError(f"expected a WireProtocol, got {type(protocol).__name__}")
    if protocol.name in _protocols:
        raise ValueError(f"protocol {protocol.name!r} is already registered")
    _protocols[protocol.name] = protocol
    return protocol


def unregister(name: str) -> None:
    """Remove the protocol registered as `name` (KeyError when there is none)."""
    del _protocols[name]


@contextlib.contextmanager
def registered(protocol: WireProtocol) -> Iterator[WireProtocol]:
    """`protocol` is registered inside the block and removed after it."""
    register(protocol)
    try:
        yield protocol
    finally:
        unregister(protocol.name)


_BUILT_IN = (openai.PROTOCOL, cloudflare.PROTOCOL, anthropic.PROTOCOL, gemini.PROTOCOL, ollama.PROTOCOL)
for _protocol in _BUILT_IN:
    register(_protocol)
