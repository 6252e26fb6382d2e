"""Scratch PostgreSQL databases for the history benchmark (and its smoke test).

Each run gets a fresh database `bench_<random>` on the local server (127.0.0.1:5432, trust
auth), dropped afterwards even when the run fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Iterator

POSTGRES_ADMIN_URL = dict(host="127.0.0.1", port=5432, user="postgres", database="test")


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(**POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_postgres(prefix: str = "bench") -> Iterator[str]:
    """A fresh database `<prefix>_<random>` on the local PostgreSQL (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{POSTGRES_ADMIN_URL['user']}@{POSTGRES_ADMIN_URL['host']}:{POSTGRES_ADMIN_URL['port']}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
