"""Fixtures for the canary tests: the probe tests' loopback stream server and shared client."""

from tests.probes.conftest import client, server  # noqa: F401 (fixtures)
