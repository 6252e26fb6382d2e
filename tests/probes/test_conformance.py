"""Every registered protocol passes the conformance suite (`tests/probes/conformance.py`)."""

from __future__ import annotations

import pytest

from monitor.probes.registry import PROTOCOLS
from tests.probes.conformance import KITS, Kit, ProtocolConformance


@pytest.fixture(params=list(PROTOCOLS))
def name(request) -> str:
    return request.param


@pytest.fixture
def kit(name) -> Kit:
    assert name in KITS, f"protocol {name!r} has no conformance kit in tests/probes/conformance.py"
    return KITS[name]


class TestRegisteredProtocols(ProtocolConformance):
    pass
