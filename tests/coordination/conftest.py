"""Fixtures for the HA coordination tests: PostgreSQL databases of their own (`ha_<random>`,
dropped afterwards) at 127.0.0.1:5432. Under CI=true an unreachable PostgreSQL FAILS these tests;
elsewhere they skip with the reason (the store suite's rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from monitor.store import SQLStore, open_store
from tests.e2e.conftest import start_service  # noqa: F401  (the e2e fixture: real processes)
from tests.store.conftest import create_postgres_database, drop_postgres_database, postgres_url


def create_ha_database() -> str:
    return create_postgres_database("ha")


def drop_ha_database(name: str) -> None:
    drop_postgres_database(name)


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
