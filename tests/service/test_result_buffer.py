"""ResultBuffer: nothing lost while the database is down (within the bound), drops counted."""

from __future__ import annotations

import asyncio

from monitor.runner import ResultBuffer
from monitor.store import InMemoryStore
from tests.service.conftest import refused, result, stored_starts


class CountingStore(InMemoryStore):
    """Counts write attempts and the size of each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def insert_results(self, rows):
        self.batches.append(len(rows))
        await super().insert_results(rows)


async def test_rows_are_kept_while_the_database_is_down_and_written_in_order_when_back(metrics, registry):
    store = InMemoryStore()
    buffer = ResultBuffer(store, metrics, capacity=10)
    store.make_unavailable()
    for i in range(3):
        buffer.put("m", "p", result(i))
    assert await buffer.flush() is False
    assert buffer.healthy is False and buffer.pending == 3
    assert registry.get_sample_value("llm_monitor_buffered_results") == 3

    store.make_available()
    assert await buffer.flush() is True
    assert await stored_starts(store) == [result(i).started_at for i in range(3)]
    assert buffer.pending == 0 and buffer.healthy is True
    assert registry.get_sample_value("llm_monitor_buffered_results") == 0
    assert registry.get_sample_value("llm_monitor_last_db_write_timestamp_seconds") > 0


async def test_beyond_capacity_the_oldest_are_dropped_counted_and_logged(metrics, registry, caplog):
    store = InMemoryStore()
    buffer = ResultBuffer(store, metrics, capacity=2)
    store.make_unavailable()
    for i in range(5):
        buffer.put("m", "p", result(i))
    assert buffer.dropped == 3
    assert registry.get_sample_value("llm_monitor_dropped_results_total") == 3
    assert "dropped the oldest unsaved probe" in caplog.text
    store.make_available()
    assert await buffer.flush()
    assert await stored_starts(store) == [result(3).started_at, result(4).started_at]


async def test_writer_task_retries_until_the_database_returns(metrics):
    store = CountingStore()
    buffer = ResultBuffer(store, metrics, capacity=10, retry_s=0.05)
    writer = asyncio.create_task(buffer.run())
    try:
        store.make_unavailable()
        buffer.put("m", "p", result(0))
        await asyncio.sleep(0.2)
        assert len(store.batches) >= 2 and buffer.pending == 1  # retried, still held
        store.make_available()
        for _ in range(50):
            if not buffer.pending:
                break
            await asyncio.sleep(0.02)
        assert buffer.pending == 0 and len(await stored_starts(store)) == 1
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_large_backlog_is_written_in_batches(metrics):
    store = CountingStore()
    buffer = ResultBuffer(store, metrics, capacity=2000, batch_size=500)
    for i in range(1200):
        buffer.put("m", "p", result(i))
    assert await buffer.flush()
    assert store.batches == [500, 500, 200]
    assert len(await stored_starts(store)) == 1200


async def test_rows_the_database_refuses_are_dropped_alone_and_counted(metrics, registry, caplog):
    store = InMemoryStore()
    buffer = ResultBuffer(store, metrics, capacity=10)
    buffer.put("m", "p", result(0))
    buffer.put("m", "refused", refused(1))
    buffer.put("m", "p", result(2))
    assert await buffer.flush() is True
    assert await stored_starts(store) == [result(0).started_at, result(2).started_at]
    assert buffer.dropped == 1 and buffer.pending == 0 and buffer.healthy
    assert registry.get_sample_value("llm_monitor_dropped_results_total") == 1
    assert "database refused the probe of m/refused" in caplog.text


async def test_a_batch_whose_every_row_is_refused_is_not_a_successful_write(metrics, registry):
    store = InMemoryStore()
    buffer = ResultBuffer(store, metrics, capacity=10)
    buffer.put("m", "refused", refused(0))
    buffer.put("m", "refused", refused(1))
    assert await buffer.flush() is True
    assert buffer.dropped == 2 and buffer.pending == 0 and await stored_starts(store) == []
    assert registry.get_sample_value("llm_monitor_last_db_write_timestamp_seconds") == 0


async def test_rows_written_before_the_database_goes_away_are_not_written_again(metrics):
    class GoesAwayAfterOneRow(InMemoryStore):
        gone = False

        async def insert_results(self, rows):
            if len(rows) == 1 and not self.gone and await self.count_results() == 1:
                self.make_unavailable()  # the second row-by-row write meets a dead database
                self.gone = True
            await super().insert_results(rows)

    store = GoesAwayAfterOneRow()
    buffer = ResultBuffer(store, metrics, capacity=10)
    for i, probe in enumerate([result(0), refused(1), result(2)]):
        buffer.put("m", "p", probe)
    # Batch refused -> row by row: row 0 written, then the database is down at row 1.
    assert await buffer.flush() is False
    assert buffer.pending == 2  # rows 1 and 2 wait; row 0 is not queued again
    store.make_available()
    assert await buffer.flush() is True
    assert await stored_starts(store) == [result(0).started_at, result(2).started_at]  # row 0 once
    assert buffer.dropped == 1


class BreaksOnProvider(InMemoryStore):
    """A store whose driver fails in some unforeseen way (not a StoreError) on one endpoint's rows."""

    async def insert_results(self, rows):
        if any(provider == "broken" for _, provider, _ in rows):
            raise RuntimeError("driver bug: cannot bind parameter 7 'stop\udc80'")
        await super().insert_results(rows)


async def test_an_unforeseen_error_on_one_row_drops_that_row_and_the_writer_goes_on(metrics, registry, caplog):
    store = BreaksOnProvider()
    buffer = ResultBuffer(store, metrics, capacity=10, retry_s=0.05)
    writer = asyncio.create_task(buffer.run())
    try:
        buffer.put("m", "p", result(0))
        buffer.put("m", "broken", result(1))
        buffer.put("m", "p", result(2))
        for _ in range(100):
            if not buffer.pending:
                break
            await asyncio.sleep(0.01)
        buffer.put("m", "p", result(3))  # later results are still written
        for _ in range(100):
            if len(await stored_starts(store)) == 3:
                break
            await asyncio.sleep(0.01)
        assert await stored_starts(store) == [result(i).started_at for i in (0, 2, 3)]
        assert not writer.done() and buffer.readiness() == {"database_writes": True, "writer": True}
        assert registry.get_sample_value("llm_monitor_dropped_results_total") == 1
        assert "database refused the probe of m/broken" in caplog.text
        assert "udc80" not in caplog.text and "parameter 7" not in caplog.text  # no row values
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_writer_that_stops_makes_readiness_fail(metrics):
    buffer = ResultBuffer(InMemoryStore(), metrics, capacity=10)
    writer = asyncio.create_task(buffer.run())
    await asyncio.sleep(0)
    assert buffer.readiness()["writer"] is True
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert buffer.readiness()["writer"] is False
