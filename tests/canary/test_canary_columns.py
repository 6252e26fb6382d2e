"""The canary's fields in the database: every one round-trips through SQLite and PostgreSQL
(migrations up to 0007 applied by `open_store`), and the memory store, unchanged."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from monitor.probes.base import ProbeResult, TokenCountSource, ToolCallError
from monitor.store import InMemoryStore, open_store
from tests.store.conftest import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, postgres_url


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER,
                                       database="postgres", timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "memory":
        yield None
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'canary.db'}"
    else:
        name = f"canary_{uuid.uuid4().hex[:12]}"
        try:
            asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as error:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"PostgreSQL unreachable ({error}); CI=true requires it", pytrace=False)
            pytest.skip(f"PostgreSQL unreachable ({error}); set CI=true to make this a failure")
        yield postgres_url(name)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def canary_result(**changes) -> ProbeResult:
    values = dict(
        ok=True, error_kind=None, error=None, http_status=200,
        started_at=datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc),
        ttft_s=3.1, connect_s=0.001, total_s=4.0, output_tokens=71, token_count_source=TokenCountSource.USAGE,
        tokens_per_second=88.5, protocol="ollama", model="llama3.2:1b", finish_reason="stop",
        answer_ok=False, tool_call_ok=False, tool_call_error=ToolCallError.SCHEMA_MISMATCH,
        input_tokens=10000, prompt_tokens=10342, cold_start=True, server_load_s=2.534,
        server_prompt_eval_s=0.41, server_eval_s=0.8, server_eval_tokens=71,
        tool_call_input_tokens=81, tool_call_output_tokens=17,
    )
    values.update(changes)
    return ProbeResult(**values)


async def test_the_canary_fields_round_trip(store_url):
    store = InMemoryStore() if store_url is None else await open_store(store_url)
    try:
        rows = [canary_result(), canary_result(started_at=datetime(2026, 12, 1, 12, 5, tzinfo=timezone.utc),
                                               answer_ok=None, tool_call_ok=None, tool_call_error=None,
                                               prompt_tokens=None, cold_start=False, server_load_s=None,
                                               tool_call_input_tokens=None, tool_call_output_tokens=None)]
        await store.insert_results([("m", "P", row) for row in rows])
        got = await store.recent_results("m", "P", 10)
        assert got == list(reversed(rows))  # newest first, every field as written
    finally:
        if store_url is not None:
            await store.close()
