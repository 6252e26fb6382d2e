"""Who probes which slot: claims that make each (endpoint, location, slot) run exactly once,
whichever probing processes are alive; the wall-clock slot arithmetic they are keyed on; and the
SQLite single-prober lock.

Slots. An endpoint's schedule is a grid fixed to the wall clock, the same in every process:
slot k starts at `k * interval + phase` seconds after the Unix epoch. `phase` is the endpoint's
stable hash offset (`endpoint_phase`), shifted by `index / L` of an interval for the location's
place in the list of L locations (staggering: some location probes each endpoint every
interval / L), and rounded to a grain so that endpoints share fire times and their claims go to
the database together. All arithmetic is in integer microseconds, so every process computes
the same slot start to the microsecond.

Claims (`SlotClaims`). Every probing process schedules every endpoint; at each fire it claims
(model_id, provider, location, kind, slot_start) and only the winner probes. `LocalClaims` is the
single-process implementation (SQLite, tests). `PostgresClaims` shares the decision through one
table (`probe_slot`, migration 0004):

- claim: `INSERT ... ON CONFLICT DO NOTHING RETURNING` - the row's primary key is the slot, so
  exactly one INSERT wins, whatever the race. Claims made within `batch_window_s` of each other
  (endpoints that share a fire time) go in ONE statement (`unnest` arrays): one round trip per
  process per fire time, not per endpoint.
- lease: a claim holds the slot until `lease_until` (the probe's timeout plus a margin). Every
  process sweeps its own location's claims whose lease expired (`take_over`: one statement,
  `FOR UPDATE SKIP LOCKED`, each claim looked at once). The proof that the winner did its job is
  the stored probe itself: a `probe_result` row of that endpoint, location and trigger inside
  the slot. With one, the claim is marked finished; without one (the winner died, SIGKILL, before
  its result was stored) and while the slot is not over, the sweeper that locked the row takes
  the slot over and probes it. A slot is so never lost with its prober, only late by at most the
  lease plus one sweep period; `attempts` caps take-overs at MAX_ATTEMPTS per slot. The winner
  writes nothing after its claim: no extra round trip per probe.
- bounded: each row expires two intervals after its slot (`expires_at`, indexed); old rows are
  deleted in batches of `prune_batch` (at most once per `prune_every_s` per process), so the
  table holds about endpoints x locations x 3 rows.
- the database's clock (`now()`) judges leases and expiry; slot starts come from the process
  clock, so hosts need NTP-level agreement (well under a grain) - not exact agreement.

When the database cannot answer a claim, `claim` raises; the scheduler then probes anyway (a
duplicate is possible, a gap is not) and counts it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
# Phases are rounded to this grain (at most 1 s, finer for short intervals): endpoints that
# share a fire time share one claim statement.
PHASE_GRAIN_MAX_S = 1.0
PHASE_GRAINS_PER_INTERVAL = 100
SCHEDULED = "scheduled"
# A claim without a given interval is kept this long after its slot.
DEFAULT_KEEP_S = 24 * 3600.0
# A slot is taken over at most this many times after its first claim (a probe that kills its
# process must not take every process down in turn).
MAX_ATTEMPTS = 3


# ---------------------------------------------------------------------------------------------
# Slot arithmetic (pure)
# ---------------------------------------------------------------------------------------------


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: slot times must be timezone-aware (UTC)")
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def phase_grain_us(interval_s: float) -> int:
    return max(1, round(min(PHASE_GRAIN_MAX_S, interval_s / PHASE_GRAINS_PER_INTERVAL) * 1e6))


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for a key (the job id): the base of its phase."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def endpoint_phase_us(key: str, interval_s: float, *, location_index: int = 0, locations: int = 1) -> int:
    """The endpoint's phase in [0, interval) microseconds: its hash offset plus
    `location_index / locations` of an interval, rounded to the grain."""
    if locations < 1 or not 0 <= location_index < locations:
        raise ValueError(f"location index {location_index} outside 0..{locations - 1}")
    interval_us = round(interval_s * 1e6)
    grain = phase_grain_us(interval_s)
    raw = (hash_fraction(key) + location_index / locations) % 1.0 * interval_us
    return (round(raw / grain) * grain) % interval_us


def slot_start_us(t_us: int, interval_us: int, phase_us: int) -> int:
    """floor((t - phase) / interval) * interval + phase: the start of the slot holding t."""
    return (t_us - phase_us) // interval_us * interval_us + phase_us


@dataclass(frozen=True)
class SlotGrid:
    """One endpoint's slots at one location."""

    interval_us: int
    phase_us: int

    @classmethod
    def of(cls, key: str, interval_s: float, *, location_index: int = 0, locations: int = 1) -> "SlotGrid":
        return cls(round(interval_s * 1e6), endpoint_phase_us(
            key, interval_s, location_index=location_index, locations=locations))

    @property
    def interval_s(self) -> float:
        return self.interval_us / 1e6

    @property
    def anchor(self) -> datetime:
        """A slot start (the first after the epoch): APScheduler's start_date."""
        return from_us(self.phase_us)

    def slot_of(self, moment: datetime) -> datetime:
        return from_us(slot_start_us(to_us(moment), self.interval_us, self.phase_us))

    def next_start(self, moment: datetime) -> datetime:
        """The first slot start at or after `moment`."""
        start = slot_start_us(to_us(moment), self.interval_us, self.phase_us)
        return from_us(start if start == to_us(moment) else start + self.interval_us)


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotKey:
    model_id: str
    provider: str
    location: str
    kind: str
    slot: datetime


class SlotClaims(Protocol):
    async def claim(
        self, model_id: str, provider: str, location: str, slot: datetime, kind: str = SCHEDULED,
        *, interval_s: float | None = None, lease_s: float | None = None,
    ) -> bool:
        """True when the caller won (model_id, provider, location, kind, slot) and must probe it.
        `interval_s`: the cadence (the claim is kept 2 intervals); `lease_s`: how long the
        winner has to store its probe before another process may take the slot over."""

    async def take_over(self, location: str) -> list[SlotKey]:
        """Claims of `location` whose lease expired with no probe stored in their slot, while
        the slot is not over: the caller now holds them (one caller per claim) and must probe."""

    async def close(self) -> None: ...


class LocalClaims:
    """Claims within one process. Forgets slots older than the newest `keep` per key."""

    shared = False

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._won: dict[tuple[str, str, str, str], list[datetime]] = {}

    async def claim(
        self, model_id: str, provider: str, location: str, slot: datetime, kind: str = SCHEDULED,
        *, interval_s: float | None = None, lease_s: float | None = None,
    ) -> bool:
        slots = self._won.setdefault((model_id, provider, location, kind), [])
        if slot in slots:
            return False
        slots.append(slot)
        if len(slots) > self._keep:
            slots.sort()
            del slots[: len(slots) - self._keep]
        return True

    async def take_over(self, location: str) -> list[SlotKey]:
        return []  # one process: nobody else could have died holding a slot

    async def close(self) -> None:
        pass


def process_identity() -> str:
    """Who holds a claim, for people reading the table: host and pid."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


_TEXT_ARRAY = ARRAY(sa.Text())
_CLAIM = sa.text(
    """
    INSERT INTO probe_slot
        (model_id, provider, location, kind, slot_start, slot_end, expires_at, lease_until,
         claimed_by, claimed_at, attempts)
    SELECT c.model_id, c.provider, c.location, c.kind, c.slot_start,
           c.slot_start + make_interval(secs => c.interval_s),
           c.slot_start + make_interval(secs => c.keep_s),
           now() + make_interval(secs => c.lease_s),
           :owner, now(), 1
    FROM unnest(:c_model, :c_provider, :c_location, :c_kind, :c_slot, :c_interval, :c_keep, :c_lease)
         AS c(model_id, provider, location, kind, slot_start, interval_s, keep_s, lease_s)
    ON CONFLICT DO NOTHING
    RETURNING model_id, provider, location, kind, slot_start
    """
).bindparams(
    *(sa.bindparam(name, type_=_TEXT_ARRAY) for name in ("c_model", "c_provider", "c_location", "c_kind")),
    sa.bindparam("c_slot", type_=ARRAY(sa.DateTime(timezone=True))),
    *(sa.bindparam(name, type_=ARRAY(sa.Double())) for name in ("c_interval", "c_keep", "c_lease")),
)
# Each claim whose lease expired is looked at once: resolved (finished_at) when its probe is
# stored, when its slot is over or when it ran out of attempts; taken over otherwise.
_TAKE_OVER = sa.text(
    """
    WITH due AS (
        SELECT s.model_id, s.provider, s.location, s.kind, s.slot_start,
               (s.slot_end <= now() OR s.attempts >= :max_attempts OR EXISTS (
                    SELECT 1 FROM probe_result r
                    WHERE r.model_id = s.model_id AND r.provider = s.provider
                      AND r.started_at >= s.slot_start AND r.started_at < s.slot_end
                      AND r.location = s.location AND r.trigger = s.kind)) AS resolved
        FROM probe_slot s
        WHERE s.location = :location AND s.finished_at IS NULL AND s.lease_until < now()
        ORDER BY s.lease_until
        LIMIT :limit
        FOR UPDATE OF s SKIP LOCKED
    ),
    resolved AS (
        UPDATE probe_slot AS p SET finished_at = now()
        FROM due
        WHERE due.resolved AND p.model_id = due.model_id AND p.provider = due.provider
          AND p.location = due.location AND p.kind = due.kind AND p.slot_start = due.slot_start
    )
    UPDATE probe_slot AS p
    SET claimed_by = :owner, claimed_at = now(), attempts = p.attempts + 1,
        lease_until = now() + (p.lease_until - p.claimed_at)
    FROM due
    WHERE NOT due.resolved AND p.model_id = due.model_id AND p.provider = due.provider
      AND p.location = due.location AND p.kind = due.kind AND p.slot_start = due.slot_start
    RETURNING p.model_id, p.provider, p.location, p.kind, p.slot_start
    """
)
_PRUNE = sa.text(
    """
    DELETE FROM probe_slot WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM probe_slot WHERE expires_at < now()
        ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED))
    """
)


class PostgresClaims:
    """Claims shared by every process on one PostgreSQL database (see the module docstring).

    Holds one connection of the engine's pool for itself (autocommit: each statement is its own
    transaction, with no BEGIN/COMMIT round trips and no pre-ping per batch); a broken
    connection is dropped and the next statement opens a new one."""

    shared = True

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owner: str | None = None,
        batch_window_s: float = 0.005,
        max_batch: int = 2000,
        prune_every_s: float = 60.0,
        prune_batch: int = 1000,
        take_over_limit: int = 500,
    ) -> None:
        self._engine = engine
        self.owner = owner or process_identity()
        self._batch_window_s = batch_window_s
        self._max_batch = max_batch
        self._prune_every_s = prune_every_s
        self._prune_batch = prune_batch
        self._take_over_limit = take_over_limit
        self._connection: AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._claims: list[tuple[SlotKey, float, float, float, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flusher_waiting = False
        self._flush_due = 0.0
        self._last_prune = time.monotonic()
        self.statements = 0  # statements sent (benchmarks: round trips)
        self.pruned = 0

    async def claim(
        self, model_id: str, provider: str, location: str, slot: datetime, kind: str = SCHEDULED,
        *, interval_s: float | None = None, lease_s: float | None = None,
    ) -> bool:
        interval = DEFAULT_KEEP_S / 2 if interval_s is None else float(interval_s)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        key = SlotKey(model_id, provider, location, kind, slot.astimezone(timezone.utc))
        lease = interval if lease_s is None else float(lease_s)
        self._claims.append((key, interval, 2 * interval, lease, future))
        self._wake(self._batch_window_s)
        return await future

    async def take_over(self, location: str) -> list[SlotKey]:
        rows = await self._execute(_TAKE_OVER, {
            "owner": self.owner, "location": location, "max_attempts": MAX_ATTEMPTS,
            "limit": self._take_over_limit,
        })
        return [_key_of(row) for row in rows]

    async def prune(self) -> int:
        """Delete expired claims, `prune_batch` rows per statement, until none is left."""
        total = 0
        while True:
            result = await self._execute(_PRUNE, {"limit": self._prune_batch}, rows=False)
            total += result
            if result < self._prune_batch:
                break
        self.pruned += total
        return total

    async def close(self) -> None:
        """Answer pending claims (bounded wait), then release the connection."""
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout=5)
            except Exception:
                self._flusher.cancel()
        for *_, future in self._claims:
            if not future.done():
                future.set_exception(ConnectionError("claims closed"))
        self._claims.clear()
        async with self._lock:
            if self._connection is not None:
                with _quiet():
                    await self._connection.close()
                self._connection = None

    # --- batching ---
    def _wake(self, delay_s: float) -> None:
        """Make the flusher send within `delay_s`: start it, or cut its wait short."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_s
        if self._flusher is not None and not self._flusher.done():
            if not (self._flusher_waiting and due < self._flush_due):
                return  # it sends soon enough, or is sending and will pick this up
            self._flusher.cancel()  # only ever cancelled while it sleeps (a shorter window asked)
        self._flush_due = due
        self._flusher_waiting = True
        self._flusher = loop.create_task(self._flush(delay_s), name="slot-claims")

    async def _flush(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._flusher_waiting = False
        while self._claims:
            batch, self._claims = self._claims[: self._max_batch], self._claims[self._max_batch:]
            try:
                won = await self._send(batch)
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not self._claims:
                    return
                continue
            for key, *_, future in batch:
                if not future.done():
                    future.set_result(key in won)
                    won.discard(key)  # a key claimed twice in one batch: the first caller won
            if time.monotonic() - self._last_prune >= self._prune_every_s:
                self._last_prune = time.monotonic()
                with _quiet():
                    await self.prune()

    async def _send(self, batch: list[tuple[SlotKey, float, float, float, Any]]) -> set[SlotKey]:
        keys = [item[0] for item in batch]
        params = {
            "owner": self.owner,
            "c_model": [k.model_id for k in keys], "c_provider": [k.provider for k in keys],
            "c_location": [k.location for k in keys], "c_kind": [k.kind for k in keys],
            "c_slot": [k.slot for k in keys],
            "c_interval": [item[1] for item in batch], "c_keep": [item[2] for item in batch],
            "c_lease": [item[3] for item in batch],
        }
        rows = await self._execute(_CLAIM, params)
        return {_key_of(row) for row in rows}

    async def _execute(self, statement: sa.TextClause, params: dict[str, Any], *, rows: bool = True) -> Any:
        async with self._lock:
            if self._connection is None:
                connection = await self._engine.connect()
                self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            self.statements += 1
            try:
                result = await self._connection.execute(statement, params)
                return list(result) if rows else result.rowcount
            except BaseException:
                broken, self._connection = self._connection, None
                with _quiet():
                    await broken.invalidate()
                raise


def _key_of(row: Any) -> SlotKey:
    return SlotKey(row.model_id, row.provider, row.location, row.kind, row.slot_start.astimezone(timezone.utc))


class _quiet:
    """Swallow (and log at debug) failures of best-effort housekeeping."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            log.debug("slot claims housekeeping failed: %s", type(exc).__name__)
            return True
        return False


# ---------------------------------------------------------------------------------------------
# SQLite: one probing process per database file
# ---------------------------------------------------------------------------------------------


class ProbingLockHeld(RuntimeError):
    """Another process already probes against this SQLite file."""


class ProbingLock:
    """An exclusive `flock` on `<database>.probing.lock`, held for the process lifetime.

    The OS releases it when the process ends in any way (SIGKILL included), so a crash never
    leaves a stale lock; only probing processes (run, scheduler) take it, API processes do not."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".probing.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ProbingLockHeld(
                f"another probing process{holder} already uses the SQLite database "
                f"{self.path.with_name(self.path.name.removesuffix('.probing.lock'))} (lock file {self.path}). "
                "SQLite supports ONE probing process (run or scheduler) per database file: stop the "
                "other one, start more API processes with `llm-monitor api`, or use PostgreSQL "
                "(DATABASE_URL=postgresql://...) to run several schedulers"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{process_identity()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with _quiet():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 128, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text and text.replace(":", "").replace("-", "").replace(".", "").isalnum() else ""


# ---------------------------------------------------------------------------------------------
# The choice, made at the entrypoint
# ---------------------------------------------------------------------------------------------


def open_claims(store: Any) -> tuple[SlotClaims, ProbingLock | None]:
    """The claims a probing process uses on `store` (a `SQLStore`, or any other store): shared
    through PostgreSQL, or in-process for SQLite - after taking the file's probing lock, so a
    second probing process on the same file is refused (ProbingLockHeld)."""
    from monitor.store.database import sqlite_file_of

    engine = getattr(store, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        return PostgresClaims(engine), None
    database = None if engine is None else sqlite_file_of(engine)
    if database is None:
        return LocalClaims(), None  # in-memory: nobody else can open it
    lock = ProbingLock(database)
    lock.acquire()
    return LocalClaims(), lock
