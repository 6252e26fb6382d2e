"""Probe engine public surface: `PROTOCOLS` maps a protocol name to its WireProtocol, and
`run_probe(client, target)` measures one streaming request.

Adding a protocol = one module declaring a WireProtocol, one entry below, one test file.
"""

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

__all__ = [
    "METHODOLOGY_VERSION",
    "Delta",
    "ErrorKind",
    "ProbeResult",
    "ProbeTarget",
    "Secret",
    "TokenCountSource",
    "WireProtocol",
]
