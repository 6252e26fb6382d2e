"""Probe engine public surface: `PROTOCOLS` maps a protocol name to its WireProtocol, and
`run_probe(client, target)` measures one streaming request on the client from `build_client()`.

Adding a protocol = one module declaring a WireProtocol, one entry in `registry.py`, one test file.
The engine names are loaded on first use, so importing a protocol module (which imports `base`
through this package) never drags in the registry or httpx.
"""

from typing import Any

from monitor.probes.base import (
    METHODOLOGY_VERSION,
    Delta,
    ErrorKind,
    ProbeResult,
    ProbeTarget,
    Secret,
    TokenCountSource,
    WireProtocol,
)

_LAZY = {
    "PROTOCOLS": "monitor.probes.registry",
    "run_probe": "monitor.probes.engine",
    "build_client": "monitor.probes.transport",
    "LoopLagMonitor": "monitor.probes.meters",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'monitor.probes' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "METHODOLOGY_VERSION",
    "Delta",
    "ErrorKind",
    "LoopLagMonitor",
    "PROTOCOLS",
    "ProbeResult",
    "ProbeTarget",
    "Secret",
    "TokenCountSource",
    "WireProtocol",
    "build_client",
    "run_probe",
]
