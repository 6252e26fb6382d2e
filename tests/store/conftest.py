"""Backends for the store contract tests.

Every test that takes `store` runs three times: on `InMemoryStore`, on a fresh SQLite file and on
a PostgreSQL database created for this test session (`test_store_<random>`, dropped at the end),
so parallel runs never share tables. Tests about SQL itself (migrations, schema, pragmas, driver
errors, query plans) take `sql_store`, `database_url` or `fresh_database_url` and run on the two
SQL backends only. PostgreSQL is expected at 127.0.0.1:5432 (user postgres, trust).
Under CI=true an unreachable PostgreSQL FAILS these tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from monitor.store import InMemoryStore, SQLStore, Store, open_store

POSTGRES_HOST = "127.0.0.1"
# Override only to check the unreachable-database behaviour (e.g. STORE_TEST_POSTGRES_PORT=1).
POSTGRES_PORT = int(os.environ.get("STORE_TEST_POSTGRES_PORT", "5432"))
POSTGRES_USER = "postgres"
POSTGRES_ADMIN_DATABASE = "test"
SQL_BACKENDS = ("sqlite", "postgresql")
BACKENDS = ("memory", *SQL_BACKENDS)


def postgres_url(database: str, *, port: int = POSTGRES_PORT) -> str:
    return f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{port}/{database}"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER,
        database=POSTGRES_ADMIN_DATABASE, timeout=5,
    )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_postgres_database(prefix: str = "test_store") -> str:
    """A new, empty database named `<prefix>_<random>`; under CI=true an unreachable server
    fails the test, elsewhere it skips with the reason."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as error:
        reason = (
            f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} unreachable "
            f"({type(error).__name__}: {error})"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires the PostgreSQL backend", pytrace=False)
        pytest.skip(f"{reason}; set CI=true to make this a failure")
    return name


def drop_postgres_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    """One PostgreSQL database shared by this session's tests (tables emptied per test)."""
    name = create_postgres_database()
    yield name
    drop_postgres_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(sql_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL in the plain (user-facing) form. SQLite: a file whose directory does not exist yet."""
    if sql_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'monitor.db'}"
    return postgres_url(request.getfixturevalue("postgres_session_database"))


@pytest.fixture
def fresh_database_url(sql_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated yet (its own PostgreSQL database, dropped afterwards)."""
    if sql_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'monitor.db'}"
        return
    name = create_postgres_database()
    yield postgres_url(name)
    drop_postgres_database(name)


async def empty_tables(store: SQLStore) -> None:
    async with store.engine.begin() as connection:
        if store.dialect_name == "postgresql":
            await connection.execute(
                sa.text("TRUNCATE endpoint_latest, probe_result RESTART IDENTITY")
            )
        else:
            await connection.execute(sa.text("DELETE FROM endpoint_latest"))
            await connection.execute(sa.text("DELETE FROM probe_result"))


@pytest.fixture
async def sql_store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await open_store(database_url)
    await empty_tables(opened)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    """The database behind `store` (None for the in-memory store)."""
    if backend == "memory":
        return None
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'monitor.db'}"
    return postgres_url(request.getfixturevalue("postgres_session_database"))


@pytest.fixture
async def store(store_url: str | None) -> AsyncIterator[Store]:
    """An empty store of each backend."""
    if store_url is None:
        yield InMemoryStore()
        return
    opened = await open_store(store_url)
    await empty_tables(opened)
    try:
        yield opened
    finally:
        await opened.close()
