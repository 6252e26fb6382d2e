"""`ProcessMode`: what one service process does (the `run` / `scheduler` / `api` subcommands).

Its own module so the command line can name the modes without importing the service's
dependencies (a `probe` or `check-config` run starts no server).
"""

from __future__ import annotations

import enum


class ProcessMode(enum.StrEnum):
    """What one process does; the values are the CLI subcommands."""

    RUN = "run"  # scheduler + API + /metrics in one process
    SCHEDULER = "scheduler"  # probing + /metrics and health
    API = "api"  # read-only API over the database

    @property
    def probes(self) -> bool:
        return self is not ProcessMode.API
