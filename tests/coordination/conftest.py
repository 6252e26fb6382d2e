"""Fixtures for the HA coordination tests: PostgreSQL databases of their own (`ha_<random>`,
dropped afterwards) at 127.0.0.1:5432. Under CI=true an unreachable PostgreSQL FAILS these tests;
elsewhere they skip with the reason (the store suite's rule)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from monitor.store import SQLStore, open_store
from tests.e2e.conftest import start_service  # noqa: F401  (the e2e fixture: real processes)
from tests.store.conftest import POSTGRES_HOST, POSTGRES_PORT, _admin, postgres_url


def create_ha_database() -> str:
    name = f"ha_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as error:
        reason = f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} unreachable ({type(error).__name__}: {error})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires PostgreSQL", pytrace=False)
        pytest.skip(f"{reason}; set CI=true to make this a failure")
    return name


def drop_ha_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def ha_database_url() -> Iterator[str]:
    name = create_ha_database()
    yield postgres_url(name)
    drop_ha_database(name)


@pytest.fixture
async def pg_store(ha_database_url: str) -> AsyncIterator[SQLStore]:
    store = await open_store(ha_database_url)
    try:
        yield store
    finally:
        await store.close()
