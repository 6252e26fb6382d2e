"""Alembic environment for llm-endpoint-monitor.

Normally run by `monitor.store.database` (migrate / upgrade), which passes an open SYNC connection in
`config.attributes["connection"]` (an async connection's `run_sync` side), inside a transaction it
commits itself. For hand use (`alembic -c some.ini revision --autogenerate`) it falls back to
`sqlalchemy.url` from the config and opens its own async engine.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from monitor.store import tables  # noqa: F401  (registers the tables on the metadata)
from sqlmodel import SQLModel

target_metadata = SQLModel.metadata


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    # Only our own tables: a shared PostgreSQL database may hold other applications' tables.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _run_with_connection(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        # SQLite cannot ALTER most things in place: future migrations copy-and-move tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url, hide_parameters=True)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_with_connection)
    finally:
        await engine.dispose()


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_with_connection(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    from monitor.store import normalize_database_url

    asyncio.run(_run_with_own_engine(normalize_database_url(url)))


_run()
