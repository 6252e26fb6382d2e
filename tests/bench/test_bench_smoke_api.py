"""The API-load, history and capacity benchmarks run end to end in tiny configurations.

Structure, finiteness and correctness only (every response valid, every probe matched with the
server's ground truth); speed targets are what the benchmarks measure, never asserted here.
Needs `wrk` on PATH for the API benchmark, and PostgreSQL at 127.0.0.1:5432 for its history
test (under CI=true an unreachable PostgreSQL fails that test instead of skipping it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from bench import api_load, capacity, history
from bench.dataset import HistoryShape, cached_sqlite_history, model_id_of
from bench.results import markdown_table
from bench.stats import all_finite, percentile


@pytest.fixture
def bench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_MONITOR_BENCH_CACHE", str(cache))
    return cache


def _read(results: Path, name: str) -> dict:
    assert (results / f"{name}.md").read_text().startswith("# ")
    return json.loads((results / f"{name}.json").read_text())


# --------------------------------------------------------------------------- pure helpers

def test_percentile_interpolates_between_ranks():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert math.isclose(percentile(list(range(1, 101)), 99), 99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) is None


def test_all_finite_sees_nested_nan():
    assert all_finite({"a": [1.0, {"b": 2}]})
    assert not all_finite({"a": [1.0, {"b": float("nan")}]})


def test_markdown_table_shape():
    table = markdown_table(["a", "b"], [[1, 2.5], ["x", float("nan")]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2.500 |", "| x | n/a |"]


def test_live_body_check_flags_contract_breaks():
    providers = ["Alpha", "Bravo"]
    endpoint = {"provider": "Alpha", "active": True, "last_probe_at": None, "last_error_kind": None,
                "ttft_ms_p50": 200.0, "throughput_tps_p50": 50.0, "uptime": 1.0, "samples": 3,
                "ok_samples": 3, "ttft_ms_p5": 190.0, "ttft_ms_p95": 210.0, "ttft_ms_p50_ci": None,
                "throughput_tps_p50_ci": None, "uptime_ci": [0.44, 1.0], "answer_ok_ratio": None,
                "cost_usd_per_probe": None, "cost_usd_per_month": None,
                "state": "up", "state_reason": None, "locations": [], "open_incident": None, "maintenance": None}
    body = {"model": "m/1", "best_ttft_ms": 200.0, "best_throughput_tps": 50.0, "active_endpoints": 1,
            "total_endpoints": 2, "available_via": providers, "updated_at": None, "window_s": 86400.0,
            "endpoints": [endpoint, {**endpoint, "provider": "Bravo"}]}
    assert api_load.check_live_body(body, "m/1", providers) == []
    assert api_load.check_live_body(body, "m/2", providers)  # wrong model answered
    assert api_load.check_live_body({**body, "active_endpoints": 3}, "m/1", providers)
    broken = {**body, "endpoints": [{**endpoint, "uptime": 1.5}, {**endpoint, "provider": "Bravo"}]}
    assert api_load.check_live_body(broken, "m/1", providers)


def test_profile_summary_keeps_the_loop_thread_apart():
    collapsed = "\n".join([
        "main (a.py:1);serve (b.py:2);handle (c.py:3) 30",
        "main (a.py:1);serve (b.py:2) 10",
        "Thread._bootstrap (threading.py:1);wait (threading.py:2) 60",
    ])
    summary = api_load.summarize_collapsed(collapsed)
    assert summary["loop_thread_samples"] == 40 and summary["worker_thread_samples"] == 60
    assert summary["own_pct"][0] == ("handle (c.py:3)", 75.0)
    assert dict(summary["inclusive_pct"])["serve (b.py:2)"] == 100.0


def test_generated_history_has_the_requested_shape(bench_cache: Path):
    import sqlite3

    shape = HistoryShape(rows=900, models=5, providers=3)
    path, newest, generated_s = cached_sqlite_history(shape, log=lambda _: None)
    assert generated_s is not None and path.parent == bench_cache
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT COUNT(*) FROM probe_result").fetchone()[0] == 900
    per_endpoint = connection.execute(
        "SELECT model_id, provider, COUNT(*) FROM probe_result GROUP BY 1, 2").fetchall()
    assert len(per_endpoint) == 15 and {n for *_, n in per_endpoint} == {60}
    assert {m for m, *_ in per_endpoint} == {model_id_of(i) for i in range(5)}
    assert connection.execute("SELECT COUNT(*) FROM endpoint_latest").fetchone()[0] == 15
    newest_stored = connection.execute("SELECT MAX(started_at) FROM probe_result").fetchone()[0]
    assert newest_stored.startswith(newest.strftime("%Y-%m-%d %H:%M:%S"))
    # A second call reuses the cached file.
    assert cached_sqlite_history(shape, log=lambda _: None)[2] is None


# --------------------------------------------------------------------------- end to end

@pytest.mark.skipif(shutil.which("wrk") is None and os.environ.get("CI", "").lower() != "true",
                    reason="wrk is not installed (apt-get install wrk); CI=true makes this a failure")
def test_api_load_tiny_run(tmp_path: Path, bench_cache: Path):
    results = tmp_path / "results"
    code = api_load.main([
        "--models", "8", "--rows", "2400", "--duration", "1", "--rounds", "1",
        "--busy-duration", "1.5", "--busy-connections", "16", "--busy-interval", "4",
        "--stream-ttft", "0.05", "--stream-gap", "0.005", "--stream-tokens", "5",
        "--sample-checks", "4", "--name", "smoke", "--results-dir", str(results),
    ])
    assert code == 0
    report = _read(results, "smoke")
    part1 = report["throughput"]
    assert [(r["server"], r["round"]) for r in part1["rounds"]] == [("real", 0), ("bare", 0)]
    for side in ("real", "bare"):
        assert part1["summary"][side]["rps_median"] > 0
        assert part1["summary"][side]["errors"] == 0
    assert part1["body_bytes"] > 100 and math.isfinite(part1["throughput_ratio"])
    assert isinstance(part1["pass_ratio"], bool) and isinstance(part1["pass_p99"], bool)
    browser = part1["browser"]  # the catalog origin is allowed and the body goes out gzip-coded
    assert browser["rps"] > 0 and browser["errors"]["status"] + browser["socket_errors"] == 0
    assert browser["sample"]["allow_origin"] == "https://catalog.example"
    assert browser["sample"]["content_encoding"] == "gzip"
    assert 0 < browser["sample"]["wire_bytes"] < part1["body_bytes"]
    part2 = report["concurrency"]
    wrk = part2["wrk"]
    assert wrk["validated"] > 0 and wrk["validated"] == wrk["requests"]  # every response was checked
    assert wrk["bad_status"] == 0 and wrk["bad_body"] == 0 and wrk["socket_errors"] == 0
    assert part2["sample_check"]["checked"] == 4 and part2["sample_check"]["problem_count"] == 0
    assert part2["correct"] is True
    assert all_finite(part1["summary"]) and all_finite(wrk)
    assert report["machine"]["cpus"] >= 1


def test_history_tiny_run_sqlite(tmp_path: Path, bench_cache: Path):
    results = tmp_path / "results"
    code = history.main(["--backends", "sqlite", "--small", "600", "--large", "6000", "--depth", "50",
                         "--repeat", "15", "--warmup", "3", "--name", "smoke", "--results-dir", str(results)])
    assert code == 0
    report = _read(results, "smoke")
    assert [(r["backend"], r["query"]) for r in report["summary"]] == [("sqlite", q) for q in history.QUERIES]
    for row in report["summary"]:
        assert row["small_median_ms"] > 0 and row["large_median_ms"] > 0 and math.isfinite(row["ratio"])
        assert isinstance(row["pass"], bool)
    # Same depth per endpoint: both sizes return the same number of rows per query.
    by_size = report["results"]["sqlite"]
    assert by_size["small"]["rows"] == 600 and by_size["large"]["rows"] == 6000
    for query in history.QUERIES:
        assert by_size["small"][query]["mean_rows"] > 0
    assert by_size["small"]["recent_results(limit=50)"]["mean_rows"] == 50
    assert by_size["large"]["recent_results(limit=50)"]["mean_rows"] == 50


def test_history_tiny_run_postgresql(tmp_path: Path):
    import asyncpg

    from bench.postgres import POSTGRES_ADMIN_URL

    async def reachable() -> None:
        connection = await asyncpg.connect(**POSTGRES_ADMIN_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(reachable())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as error:
        reason = f"PostgreSQL at 127.0.0.1:5432 unreachable ({type(error).__name__})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(f"{reason}; set CI=true to make this a failure")
    results = tmp_path / "results"
    code = history.main(["--backends", "postgresql", "--small", "600", "--large", "6000", "--depth", "50",
                         "--repeat", "10", "--warmup", "3", "--name", "smoke", "--results-dir", str(results)])
    assert code == 0
    report = _read(results, "smoke")
    assert {r["backend"] for r in report["summary"]} == {"postgresql"}
    assert report["finite"] is True
    assert report["results"]["postgresql"]["large"]["rows"] == 6000


def test_capacity_tiny_run(tmp_path: Path):
    results = tmp_path / "results"
    code = capacity.main(["--levels", "2,4", "--level-duration", "1", "--catalog-endpoints", "30",
                          "--ttft", "0.05", "--gap", "0.005", "--tokens", "5",
                          "--name", "smoke", "--results-dir", str(results)])
    assert code == 0
    report = _read(results, "smoke")
    assert [lv["concurrency"] for lv in report["levels"]] == [2, 4]
    for level in report["levels"]:
        assert level["probes"] > 0 and level["ok_share"] == 1.0
        # Every probe found its request in the server's ground truth.
        assert level["matched"] == level["probes"] and level["unmatched"] == 0
        assert math.isfinite(level["abs_error_ms_p99"]) and level["cpu_ms_per_probe"] > 0
    verdict = report["verdict"]
    assert verdict["endpoints_per_30min_cycle"] == int(verdict["sustainable_probes_per_s"] * 1800)
    assert isinstance(verdict["pass"], bool)
    assert report["finite"] is True
