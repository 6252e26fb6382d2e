"""The one map from protocol name to its WireProtocol declaration.

Adding a protocol = one module exposing `PROTOCOL`, one entry here, one test file.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from monitor.probes import anthropic, cloudflare, gemini, ollama, openai
from monitor.probes.base import PROTOCOL_NAMES, WireProtocol

PROTOCOLS: Mapping[str, WireProtocol] = MappingProxyType({
    "openai": openai.PROTOCOL,
    "cloudflare": cloudflare.PROTOCOL,
    "anthropic": anthropic.PROTOCOL,
    "gemini": gemini.PROTOCOL,
    "ollama": ollama.PROTOCOL,
})

assert tuple(PROTOCOLS) == PROTOCOL_NAMES, "registry and PROTOCOL_NAMES must list the same protocols"
