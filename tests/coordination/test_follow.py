"""Several schedulers write probes at once: a follower (API replica, or another scheduler) must
not lose a probe whose transaction commits after one with a larger id was already read."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from monitor.catalog import parse_catalog
from monitor.live import LiveFigures
from monitor.store.sql import result_to_row
from monitor.store.tables import probe_table
from tests.service.conftest import result

CONFIG = """
models:
  - id: m
    name: M
    endpoints:
      - {provider: A, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
      - {provider: B, protocol: openai, base_url: "http://127.0.0.1:9/v1", model: x}
"""


async def test_a_late_commit_with_a_smaller_id_is_still_followed(pg_store):
    now = datetime.now(timezone.utc)
    live = LiveFigures(parse_catalog(CONFIG, source="test"), window_s=3600, interval_of=lambda e: 60)
    await live.follow(pg_store)  # first call: loads the (empty) window
    probe = probe_table()
    slow = await pg_store.engine.connect()
    transaction = await slow.begin()
    # Writer 1 takes the smaller id but commits last.
    await slow.execute(sa.insert(probe), [result_to_row("m", "A", replace(result(), started_at=now - timedelta(seconds=2)))])
    await pg_store.insert_results([("m", "B", replace(result(), started_at=now - timedelta(seconds=1)))])
    await live.follow(pg_store)
    assert [e.samples for e in live.model("m").endpoints] == [0, 1]
    await transaction.commit()
    await slow.close()
    await live.follow(pg_store)
    assert [e.samples for e in live.model("m").endpoints] == [1, 1]
    await live.follow(pg_store)  # read again in the overlap: not counted twice
    assert [e.samples for e in live.model("m").endpoints] == [1, 1]
