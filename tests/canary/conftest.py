"""Fixtures for the canary tests: a fresh loopback stream server and the engine's shared client."""

from __future__ import annotations

import pytest

from monitor.probes.transport import build_client
from monitor.testing.stream_server import StreamServer


@pytest.fixture
def server():
    with StreamServer() as srv:
        yield srv


@pytest.fixture
async def client():
    async with build_client() as http:
        yield http
