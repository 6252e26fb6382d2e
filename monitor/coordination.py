"""Who probes which slot: claims that make each (endpoint, location, slot) run exactly once,
whichever probing processes are alive.

`SlotClaims.claim` returns True to exactly one caller per key; everyone else skips the slot.
`LocalClaims` is the single-process implementation (SQLite, tests): an in-memory set. The
PostgreSQL implementation shares the decision between processes through the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class SlotClaims(Protocol):
    async def claim(self, model_id: str, provider: str, location: str, slot: datetime, kind: str = "scheduled") -> bool:
        """True when the caller won (model_id, provider, location, kind, slot) and must probe it."""


class LocalClaims:
    """Claims within one process. Forgets slots older than the newest `keep` per key."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._won: dict[tuple[str, str, str, str], list[datetime]] = {}

    async def claim(self, model_id: str, provider: str, location: str, slot: datetime, kind: str = "scheduled") -> bool:
        slots = self._won.setdefault((model_id, provider, location, kind), [])
        if slot in slots:
            return False
        slots.append(slot)
        if len(slots) > self._keep:
            slots.sort()
            del slots[: len(slots) - self._keep]
        return True
