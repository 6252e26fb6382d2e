"""How the store talks to a database: URLs, driver choice, engine settings (SQLite pragmas,
PostgreSQL pool), translation of driver errors into `StoreError` / `StoreUnavailableError`, the
identity of an open SQLite file, and the alembic migrations (`monitor/migrations`, which own the
schema). Nothing here knows about probes; `sql.py` builds the queries on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from monitor.store import StoreError, StoreUnavailableError

# ---------------------------------------------------------------------------------------------
# Driver errors
# ---------------------------------------------------------------------------------------------

# PostgreSQL SQLSTATE classes that blame the data itself (data exception, integrity constraint
# violation): only then is one row refused while others could be written. Every other failure
# is about the database's state, and writing the same rows later may succeed.
_DATA_SQLSTATE_CLASSES = ("22", "23")


def _is_data_refusal(error: sa_exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return False
    if isinstance(error, (sa_exc.IntegrityError, sa_exc.DataError)):
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _DATA_SQLSTATE_CLASSES


# asyncpg names the refused value in its client-side message: keep only the reason.
_ASYNCPG_ARGUMENT = re.compile(r"^(invalid input for query argument \$\d+): .*?(?: \((.*)\))?$")


def describe_error(error: BaseException) -> str:
    """Short text for an exception: class and first line, without SQL, parameters or values."""
    orig = getattr(error, "orig", None) or error
    if isinstance(orig, UnicodeError):
        first_line = getattr(orig, "reason", "")
    else:
        first_line = (str(orig).strip().splitlines() or [""])[0][:240]
        argument = _ASYNCPG_ARGUMENT.match(first_line)
        if argument:
            first_line = argument.group(1) + (f" ({argument.group(2)})" if argument.group(2) else "")
    return f"{type(orig).__name__}: {first_line}" if first_line else type(orig).__name__


# Raised by a driver (or a column type) that cannot take a value at all: an int beyond 64 bits,
# a string that is not encodable (a lone surrogate), a value of the wrong type.
_UNBINDABLE_VALUE = (OverflowError, UnicodeError, ValueError, TypeError)


@contextlib.contextmanager
def database_errors(verb: str, *, binds_values: bool = False) -> Iterator[None]:
    """Translate what the driver raises during `verb` into StoreError / StoreUnavailableError.
    `binds_values`: the operation sends row values, so a value the driver cannot take at all is
    a refusal of that data too."""
    try:
        yield
    except sa_exc.DBAPIError as error:
        kind = StoreError if _is_data_refusal(error) else StoreUnavailableError
        raise kind(f"database error in {verb}: {describe_error(error)}") from error
    except (sa_exc.TimeoutError, sa_exc.DisconnectionError, OSError, TimeoutError) as error:
        raise StoreUnavailableError(f"database unavailable in {verb}: {describe_error(error)}") from error
    except (sa_exc.StatementError, *_UNBINDABLE_VALUE) as error:
        # StatementError: a column type refused a value while binding it.
        if not binds_values:
            raise
        raise StoreError(f"value refused in {verb}: {describe_error(error)}") from error


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

_SCHEME_ALIASES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgres+asyncpg": "postgresql+asyncpg",
}
_URL_HELP = "use sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def normalize_database_url(url: str) -> str:
    """The async-driver form of a database URL; ValueError for anything unsupported.

    `sqlite:///./data/monitor.db` -> `sqlite+aiosqlite:///./data/monitor.db`;
    `postgresql://` and `postgres://` -> `postgresql+asyncpg://`; async URLs pass through.
    libpq's `sslmode=` query option becomes asyncpg's `ssl=`. Only the scheme is rewritten, so the
    rest (including a password with special characters) is kept byte for byte. Error messages
    name the scheme only, never the URL (it may hold a password).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"database URL has no scheme: {_URL_HELP}")
    scheme, rest = url.strip().split("://", 1)
    normalized = _SCHEME_ALIASES.get(scheme.lower())
    if normalized is None:
        base = scheme.lower().split("+", 1)[0]
        if base in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"database driver {scheme!r} is not supported (the monitor is async): {_URL_HELP}"
            )
        raise ValueError(f"unsupported database URL scheme {scheme!r}: {_URL_HELP}")
    if normalized.startswith("postgresql") and "?" in rest:
        rest = _libpq_options_to_asyncpg(rest)
    return f"{normalized}://{rest}"


def _libpq_options_to_asyncpg(rest: str) -> str:
    location, query = rest.split("?", 1)
    options = parse_qsl(query, keep_blank_values=True)
    if not any(key == "sslmode" for key, _ in options):
        return rest
    has_ssl = any(key == "ssl" for key, _ in options)
    translated = [
        ("ssl", value) if key == "sslmode" else (key, value)
        for key, value in options
        if not (key == "sslmode" and has_ssl)
    ]
    return f"{location}?{urlencode(translated)}"


def redact_database_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is shown by scheme only
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"

# ---------------------------------------------------------------------------------------------
# Engine and migrations
# ---------------------------------------------------------------------------------------------

_LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Serializes concurrent `open_store(migrate=True)` calls on one PostgreSQL database
# (pg_advisory_xact_lock key: any constant unique to this application).
_MIGRATION_LOCK_KEY = 0x6C6C6D6D6F6E  # "llmmon"
SQLITE_BUSY_TIMEOUT_MS = 5000
_SQLITE_BEGIN = "monitor_sqlite_begin"
POSTGRES_CONNECT_TIMEOUT_S = 10


def _sqlite_is_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or "mode=memory" in database


def create_engine(url: str) -> AsyncEngine:
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if _sqlite_is_memory(database):
            # Each connection to ":memory:" would be its own empty database: share one.
            engine = create_async_engine(url, poolclass=StaticPool, hide_parameters=True)
        else:
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=POSTGRES_CONNECT_TIMEOUT_S,
        connect_args={
            "timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "server_settings": {"application_name": "llm-monitor"},
        },
    )


def _ensure_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so only its first opener really does it). Switching
    needs an exclusive lock and SQLite may answer "database is locked" at once, without waiting
    out busy_timeout, while another connection is switching the same new file: retry briefly.
    Runs on aiosqlite's own thread, so sleeping here does not block the event loop."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which never BEGINs before DDL
        # or SELECT) and BEGIN ourselves below: migrations become atomic, reads consistent.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # WAL: readers (API) never block the writer (runner) and vice versa.
            _ensure_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE), so a second writer waits out
        # busy_timeout instead of failing when both try to upgrade a read lock.
        connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade_on_connection(connection: sa.Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a write transaction (committed on success, rolled back on error)."""
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection = await connection.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        async with connection.begin():
            yield connection


async def migrate_to_head(engine: AsyncEngine) -> None:
    async with writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Two processes starting at once: the second waits, then finds the schema at head.
            await connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade_on_connection)


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head



def schema_revision_on(connection: sa.Connection) -> str | None:
    """The alembic revision the database is at (None before the first migration)."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


async def upgrade_async(database_url: str) -> str:
    """Migrate the database to head; returns the revision it is now at."""
    with database_errors("open_store"):  # e.g. the SQLite directory cannot be created
        engine = create_engine(normalize_database_url(database_url))
    try:
        with database_errors("migrations"):
            await migrate_to_head(engine)
            async with engine.connect() as connection:
                return await connection.run_sync(schema_revision_on) or ""
    finally:
        await engine.dispose()


def upgrade(database_url: str) -> str:
    """Blocking `upgrade_async` for `llm-monitor db upgrade` (not callable inside a running loop)."""
    return asyncio.run(upgrade_async(database_url))
# ---------------------------------------------------------------------------------------------
# The identity of a SQLite file
# ---------------------------------------------------------------------------------------------


def sqlite_file_of(engine: AsyncEngine) -> Path | None:
    """The file a SQLite engine opens (None for PostgreSQL and in-memory SQLite)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or _sqlite_is_memory(url.database):
        return None
    database = url.database or ""
    if database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database).expanduser().resolve()


class SQLiteFileIdentity:
    """The (device, inode) of the SQLite file when the store opened it, checked again on demand.

    A file deleted or replaced while open goes unnoticed by SQLite: its open connections keep
    writing to the old inode, which nobody will read again (a restart opens the path). `check`
    raises StoreUnavailableError from the moment the path no longer names the opened file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        opened = os.stat(path)
        self._identity = (opened.st_dev, opened.st_ino)

    def check(self, verb: str) -> None:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            problem = "was deleted"
        except OSError as error:
            raise StoreUnavailableError(f"database unavailable in {verb}: {describe_error(error)}") from error
        else:
            if (now.st_dev, now.st_ino) == self._identity:
                return
            problem = "was replaced by another file"
        raise StoreUnavailableError(
            f"database unavailable in {verb}: the SQLite file {self.path} {problem} while open; "
            "restart the service to open the file at that path"
        )
