"""Failure behaviour end to end: database outages, kills, reloads, bad config.

Each test runs `llm-monitor run` as a real subprocess against loopback provider servers and
checks the README's "Failure behaviour" promises: probing continues during a database outage,
buffered results are written when it returns (nothing lost within the bound), /readyz reports
not ready meanwhile, SIGKILL loses at most the probes in flight, the schedule resumes without a
burst, SIGHUP applies a valid config and keeps the old one on an invalid file.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from monitor.coordination import SlotGrid
from monitor.scheduler import job_id
from tests.e2e.conftest import MODEL, REPO, config_for, wait_until
from tests.e2e.pg import PrivatePostgres
from tests.e2e.test_service import metric_value
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response

def chat_requests(server: StreamServer) -> int:
    return len(server.requests_to("/v1/chat/completions"))


def sqlite_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        table = next(
            name for (name,) in conn.execute("select name from sqlite_master where type='table'")
            if name.startswith("probe")
        )
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def buffered(service) -> float:
    return metric_value(service.get("/metrics").text, "llm_monitor_buffered_results") or 0


def test_sqlite_made_unwritable_buffers_results_and_writes_them_back(start_service, provider, tmp_path):
    db = tmp_path / "monitor.db"
    service = start_service(config_for(("P", provider.url)))
    wait_until(lambda: chat_requests(provider) >= 2 and sqlite_rows(db) >= 2, timeout_s=20, what="first rows")
    locked = [db, Path(f"{db}-wal")]
    subprocess.run(["chattr", "+i", *map(str, locked)], check=True)
    try:
        wait_until(lambda: service.get("/readyz").status_code == 503, timeout_s=15, what="/readyz 503")
        wait_until(lambda: buffered(service) >= 3, timeout_s=15, what="3 buffered results")
        assert service.get("/readyz").json()  # says why, as JSON
    finally:
        subprocess.run(["chattr", "-i", *map(str, locked)], check=True)
    wait_until(lambda: service.get("/readyz").status_code == 200, timeout_s=20, what="/readyz 200 again")
    wait_until(lambda: buffered(service) == 0, timeout_s=10, what="the buffer to drain")
    assert service.stop() == 0
    assert sqlite_rows(db) == chat_requests(provider)  # every finished probe was stored
    assert "database write failed" in service.log()


@pytest.fixture
def private_postgres():
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.destroy()


def pg_rows(url: str) -> int:
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            table = await conn.fetchval(
                "select table_name from information_schema.tables "
                "where table_schema='public' and table_name like 'probe%' order by table_name limit 1"
            )
            return await conn.fetchval(f'select count(*) from "{table}"')
        finally:
            await conn.close()

    return asyncio.run(count())


def test_postgres_stopped_mid_run_loses_nothing(start_service, provider, private_postgres):
    pg = private_postgres
    service = start_service(config_for(("P", provider.url)), db=pg.url)
    wait_until(lambda: pg_rows(pg.url) >= 2, timeout_s=20, what="first rows in PostgreSQL")
    pg.stop()
    wait_until(lambda: service.get("/readyz").status_code == 503, timeout_s=15, what="/readyz 503")
    before = chat_requests(provider)
    wait_until(lambda: buffered(service) >= 3, timeout_s=20, what="3 buffered results")
    assert chat_requests(provider) > before  # probing goes on while the database is down
    pg.start()
    wait_until(lambda: service.get("/readyz").status_code == 200, timeout_s=30, what="/readyz 200 again")
    wait_until(lambda: buffered(service) == 0, timeout_s=15, what="the buffer to drain")
    assert service.stop() == 0
    assert pg_rows(pg.url) == chat_requests(provider)


def test_sigkill_loses_at_most_the_probe_in_flight_and_restart_does_not_burst(start_service, tmp_path):
    db = tmp_path / "monitor.db"
    with StreamServer() as slow:
        slow.route("GET", "/v1/models", json_response(200, {"data": []}))
        # ~0.6 s per probe, probed every second: a kill often lands mid-probe.
        slow.route("POST", "/v1/chat/completions",
                   lambda _r: sse_stream_response(openai_stream(ttft_s=0.1, gap_s=0.05, n_tokens=10)))
        config = config_for(("Slow", slow.url))
        service = start_service(config)
        wait_until(lambda: sqlite_rows(db) >= 3, timeout_s=30, what="3 stored probes")
        time.sleep(0.3)
        service.stop(signal.SIGKILL)
        served = chat_requests(slow)
        stored = sqlite_rows(db)
        assert served - 1 <= stored <= served

        # The restarted endpoint runs on its 30 s slot grid: start it well clear of its next
        # slot, so that any probe in the next seconds would be a start-up burst.
        grid = SlotGrid.of(job_id(MODEL, "Slow"), 30.0)
        until_slot = (grid.next_start(datetime.now(timezone.utc)) - datetime.now(timezone.utc)).total_seconds()
        if until_slot < 10:
            time.sleep(until_slot + 0.5)
        restarted = start_service(config, interval="30")
        live = restarted.get(f"/v1/models/{MODEL}/live").json()
        assert live["endpoints"][0]["samples"] == stored  # restored from the database
        time.sleep(2)
        assert chat_requests(slow) == served  # no probe burst at start-up
        assert restarted.stop() == 0


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_on_an_invalid_file(start_service, provider, tmp_path):
    service = start_service(config_for(("A", provider.url)))
    config = tmp_path / "endpoints.yaml"
    config.write_text(config_for(("A", provider.url), ("B", provider.url)))
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: service.get(f"/v1/models/{MODEL}/live").json()["total_endpoints"] == 2,
               timeout_s=10, what="the reloaded config")
    config.write_text("models: [this is not: valid")
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload rejected" in service.log(), timeout_s=10, what="the rejection in the log")
    assert service.get(f"/v1/models/{MODEL}/live").json()["available_via"] == ["A", "B"]
    assert service.proc.poll() is None
    assert service.stop() == 0


def test_admin_reload_requires_the_bearer_token(start_service, provider, tmp_path):
    import httpx

    service = start_service(config_for(("A", provider.url)), env={"LLM_MONITOR_ADMIN_TOKEN": "t0ken-for-tests"})
    (tmp_path / "endpoints.yaml").write_text(config_for(("A", provider.url), ("B", provider.url)))
    assert httpx.post(service.base_url + "/admin/reload").status_code == 401
    ok = httpx.post(service.base_url + "/admin/reload", headers={"Authorization": "Bearer t0ken-for-tests"})
    assert ok.status_code == 200, ok.text
    assert service.get(f"/v1/models/{MODEL}/live").json()["total_endpoints"] == 2
    now = httpx.post(service.base_url + f"/admin/probe/{MODEL}/B",
                     headers={"Authorization": "Bearer t0ken-for-tests"}, timeout=15)
    assert now.status_code == 200 and now.json()["ok"] is True
    assert service.stop() == 0


@pytest.mark.parametrize(
    "text, field",
    [
        ("models:\n  - id: a\n    name: A\n    endpoints:\n      - {provider: P, protocol: opnai, base_url: 'http://x/v1', model: m}\n",
         "models[0].endpoints[0].protocol"),
        ("models: []\n", "models"),
        ("models: [\n", "line"),
    ],
)
def test_run_with_a_bad_config_exits_non_zero_naming_the_field_and_starts_nothing(tmp_path, text, field):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(config),
         "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert proc.returncode != 0
    assert field in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()  # nothing started, not even the database
