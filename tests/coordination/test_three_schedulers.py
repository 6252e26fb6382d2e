"""Three `llm-monitor scheduler` processes on one PostgreSQL database: two in location `a`,
one in `b` (LLM_MONITOR_LOCATIONS=a,b staggers b by half an interval), 2-second slots, loopback
providers (one per location, through `${PROVIDER_URL}` in base_url). Over 20+ slots every
(endpoint, location, slot) gets exactly one request at the provider and one stored row, also
across a SIGKILL of one of a's schedulers; and a second probing process on a SQLite file is
refused while an API process is allowed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import asyncpg

from monitor.coordination import SlotGrid, phase_grain_us, to_us
from monitor.scheduler import job_id
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response
from tests.e2e.conftest import wait_until

MODEL = "m/ha"
ENDPOINTS = ("P0", "P1", "P2")
INTERVAL_S = 2.0  # misfire grace 1 s: a late run still starts inside its slot
LOCATIONS = ("a", "b")
CONFIG = f"""
defaults: {{interval: 30m, timeout: 1s, max_tokens: 16}}
models:
  - id: {MODEL}
    name: HA
    endpoints:
""" + "".join(
    f"      - {{provider: {p}, protocol: openai, base_url: '${{PROVIDER_URL}}/v1', model: {p.lower()}}}\n"
    for p in ENDPOINTS
)


def provider_server() -> StreamServer:
    server = StreamServer()
    server.route("GET", "/v1/models", json_response(200, {"data": []}))
    server.route("POST", "/v1/chat/completions",
                 lambda _r: sse_stream_response(openai_stream(ttft_s=0.02, gap_s=0.005, n_tokens=8)))
    return server


def grid(provider: str, location: str) -> SlotGrid:
    return SlotGrid.of(job_id(MODEL, provider), INTERVAL_S, location_index=LOCATIONS.index(location),
                       locations=len(LOCATIONS))


def quiet_kill_moment(now: datetime) -> datetime:
    """A moment after `now` in the widest gap between a's slot starts (at least a third of the
    interval), 0.3 s after the gap opens (the probes started there, ~60 ms long, are stored):
    no probe of `a` is in flight."""
    phases = sorted(grid(p, "a").phase_us for p in ENDPOINTS)
    interval_us = round(INTERVAL_S * 1e6)
    gaps = [(b - a, a) for a, b in zip(phases, phases[1:])] + [(phases[0] + interval_us - phases[-1], phases[-1])]
    width, start = max(gaps)
    assert width >= interval_us / len(ENDPOINTS) - 1
    moment = SlotGrid(interval_us, start).next_start(now + timedelta(seconds=0.5)) + timedelta(seconds=0.3)
    return moment


async def stored_rows(url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        return await connection.fetch("SELECT provider, location, trigger, started_at FROM probe_result")
    finally:
        await connection.close()


async def claimed_slots(url: str) -> list[tuple[str, str, datetime]]:
    connection = await asyncpg.connect(url)
    try:
        return [(r["provider"], r["location"], r["slot_start"])
                for r in await connection.fetch("SELECT provider, location, slot_start FROM probe_slot")]
    finally:
        await connection.close()


async def claim_owners(url: str) -> Counter:
    connection = await asyncpg.connect(url)
    try:
        return Counter(r["claimed_by"].rsplit(":", 1)[1] for r in await connection.fetch(
            "SELECT claimed_by FROM probe_slot WHERE location = 'a'"))
    finally:
        await connection.close()


def test_three_schedulers_probe_each_slot_exactly_once_across_a_sigkill(start_service, ha_database_url):
    with provider_server() as server_a, provider_server() as server_b:
        env = {"LLM_MONITOR_LOCATIONS": ",".join(LOCATIONS), "LLM_MONITOR_LIVE_REFRESH_S": "1"}
        procs = {}
        for name, location, server in (("a1", "a", server_a), ("a2", "a", server_a), ("b", "b", server_b)):
            procs[name] = start_service(
                CONFIG, "--location", location, command="scheduler", db=ha_database_url,
                interval=str(int(INTERVAL_S)), wait_ready=False,
                env={**env, "PROVIDER_URL": server.url},
            )
        for service in procs.values():
            wait_until(lambda: service.get("/healthz").status_code == 200, timeout_s=30, what="a scheduler")
        begin = datetime.now(timezone.utc) + timedelta(seconds=1)
        time.sleep(16)
        kill_at = quiet_kill_moment(datetime.now(timezone.utc))
        time.sleep(max(0.0, (kill_at - datetime.now(timezone.utc)).total_seconds()))
        procs["a1"].proc.send_signal(signal.SIGKILL)
        procs["a1"].proc.wait(timeout=10)
        killed = datetime.now(timezone.utc)
        owners_before = asyncio.run(claim_owners(ha_database_url))
        time.sleep(30)  # with the 16 s before the kill: over 20 whole slots of 2 s, with margin
        end = datetime.now(timezone.utc) - timedelta(seconds=1)
        for name in ("a2", "b"):
            assert procs[name].stop() == 0, procs[name].log()
        wall_offset_ns = time.time_ns() - time.perf_counter_ns()
        hits = {
            location: [
                (r.json["model"].upper(), datetime.fromtimestamp((r.received_ns + wall_offset_ns) / 1e9, timezone.utc))
                for r in server.requests_to("/v1/chat/completions")
            ]
            for location, server in (("a", server_a), ("b", server_b))
        }
    rows = asyncio.run(stored_rows(ha_database_url))

    # Both of a's schedulers won slots before the kill: the survivor really had to cover.
    assert len([pid for pid in owners_before if pid in (str(procs["a1"].proc.pid), str(procs["a2"].proc.pid))]) == 2

    assert all(r["trigger"] == "scheduled" for r in rows)
    for provider in ENDPOINTS:
        for location in LOCATIONS:
            g = grid(provider, location)
            expected = []
            slot = g.next_start(begin)
            while slot + timedelta(seconds=INTERVAL_S) <= end:
                expected.append(slot)
                slot += timedelta(seconds=INTERVAL_S)
            assert len(expected) >= 20 and expected[0] < killed < expected[-1]
            server_hits = Counter(g.slot_of(at) for p, at in hits[location] if p == provider)
            stored = Counter(g.slot_of(r["started_at"]) for r in rows
                             if r["provider"] == provider and r["location"] == location)
            assert [server_hits[s] for s in expected] == [1] * len(expected), (provider, location, server_hits)
            assert [stored[s] for s in expected] == [1] * len(expected), (provider, location, stored)
            assert max(stored.values()) == 1 and max(server_hits.values()) == 1  # never twice, at any time
    # Staggered: b's claims sit half an interval after a's on every endpoint's grid.
    claims = asyncio.run(claimed_slots(ha_database_url))
    interval_us = round(INTERVAL_S * 1e6)
    for provider in ENDPOINTS:
        phases = {location: {to_us(slot) % interval_us for p, loc, slot in claims if p == provider and loc == location}
                  for location in LOCATIONS}
        assert phases == {location: {grid(provider, location).phase_us} for location in LOCATIONS}
        shift = (grid(provider, "b").phase_us - grid(provider, "a").phase_us) % interval_us
        assert abs(shift - interval_us / 2) <= phase_grain_us(INTERVAL_S)


def test_a_second_probing_process_on_one_sqlite_file_is_refused_an_api_process_is_not(start_service, tmp_path):
    with provider_server() as server:
        env = {"PROVIDER_URL": server.url}
        db = f"sqlite:///{tmp_path / 'shared.db'}"
        first = start_service(CONFIG, command="run", db=db, interval="60", env=env)
        second = start_service(CONFIG, command="scheduler", db=db, interval="60", env=env, wait_ready=False)
        api = start_service(CONFIG, command="api", db=db, interval="60", env=env, wait_ready=False)
        assert second.proc.wait(timeout=60) == 1
        log = second.log()
        assert "refusing to start scheduler" in log and "another probing process" in log, log
        assert "SQLite supports ONE probing process" in log and str(tmp_path / "shared.db") in log
        wait_until(lambda: api.get("/v1/models").status_code == 200, timeout_s=60, what="the API process")
        assert first.proc.poll() is None and first.get("/healthz").status_code == 200
