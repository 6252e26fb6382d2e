"""The probe-accuracy benchmark runs end to end in a tiny configuration and reports what it should.

Structure and finiteness only: accuracy and speed targets are measured by the benchmark itself
(`python -m bench.probe_accuracy`), never asserted here.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from bench.probe_accuracy import (
    BenchConfig,
    CLIENT_NAMES,
    Level,
    Range,
    _peer_sample,
    evaluate_targets,
    main,
    stream_shapes,
)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_tiny_run_reports_every_client_with_finite_errors(tmp_path):
    output = tmp_path / "probe_accuracy.json"
    code = main(["--levels", "2:2", "--ttft-ms", "20-40", "--tokens", "4-6", "--gap-ms", "2-4",
                 "--settle-s", "0.05", "--output", str(output), "--quiet"])
    assert code == 0

    report = json.loads(output.read_text())
    assert report["benchmark"] == "probe_accuracy"
    assert report["machine"]["cpus"] >= 1
    assert [level["concurrency"] for level in report["levels"]] == [2]
    clients = report["levels"][0]["clients"]
    assert tuple(clients) == CLIENT_NAMES
    for name, summary in clients.items():
        assert summary["samples"] == 4, name  # 2 streams x 2 measured rounds (warm-up dropped)
        assert summary["failed"] == 0, (name, summary["failure_examples"])
        assert summary["unmatched"] == 0, name
        for key in ("ttft_error_ms", "start_side_ms", "end_side_ms", "tokens_per_second_error_pct",
                    "loop_lag_ms", "server_first_token_slip_ms"):
            dist = summary[key]
            assert dist["n"] == 4, (name, key)
            assert all(_finite(dist[stat]) for stat in ("p50", "p99", "abs_p50", "abs_p99", "mean")), (name, key)
        # The two sides of the error add up to the error itself (same samples, same clocks).
        assert math.isclose(summary["start_side_ms"]["mean"] + summary["end_side_ms"]["mean"],
                            summary["ttft_error_ms"]["mean"], abs_tol=0.01)
        assert _finite(summary["process_cpu_ms_per_probe"]) and summary["process_cpu_ms_per_probe"] > 0
    ours = clients["ours"]
    assert ours["probe_cpu_ms"]["n"] == 4 and ours["probe_cpu_ms"]["p50"] > 0
    assert ours["lag_flagged"]["threshold_ms"] == 10.0

    # Levels 1 and 100 were not run, so no target can be judged.
    assert [t["pass"] for t in report["targets"]] == [None] * len(report["targets"])
    assert report["all_targets_pass"] is False

    markdown = output.with_suffix(".md").read_text()
    assert "| 2 | ours | 4 |" in markdown and "| 2 | openai_sdk | 4 |" in markdown
    assert "not measured" in markdown


def test_targets_pass_and_fail_on_given_numbers():
    def client(ttft_abs_p50: float, tps_abs_p50: float = 0.1, tps_abs_p99: float = 0.5) -> dict:
        return {"ttft_error_ms": {"abs_p50": ttft_abs_p50},
                "tokens_per_second_error_pct": {"abs_p50": tps_abs_p50, "abs_p99": tps_abs_p99}}

    levels = [
        {"concurrency": 1, "clients": {"ours": client(1.5)}},
        {"concurrency": 100, "clients": {"ours": client(3.0, 2.5, 9.0), "httpx": client(60.0),
                                         "openai_sdk": client(12.0)}},
    ]
    verdicts = {t["target"]: t["pass"] for t in evaluate_targets(levels)}
    assert verdicts == {
        "single_probe_ttft": True,  # 1.5 <= 2
        "ttft_at_100": True,  # 3 <= 20
        "ttft_at_100_vs_httpx": True,  # 3 <= 60 / 5
        "ttft_at_100_vs_openai_sdk": False,  # 3 > 12 / 5
        "tokens_per_second_at_100": False,  # 2.5 % is not under 2 %
        "tokens_per_second_at_100_p99": False,
    }


def test_peer_decode_rate_drops_the_first_chunk_tokens():
    peer = SimpleNamespace(name="httpx", lag_monitor=SimpleNamespace(worst_lag_s=lambda start, end: 0.0))

    def sample(first_ns, last_ns, chunks, usage):
        return _peer_sample(peer, 1, 0, "r", 0, first_ns, last_ns, chunks, usage)

    # 10 tokens in 5 chunks: the first chunk counts for 2 tokens; 8 tokens over 1 s.
    measured = sample(250_000_000, 1_250_000_000, 5, 10)
    assert measured.ok and measured.ttft_s == 0.25 and measured.tokens_per_second == 8.0
    # Without a usage chunk the chunks are the tokens: 4 after the first, over 0.5 s.
    assert sample(0, 500_000_000, 5, None).tokens_per_second == 8.0
    assert sample(0, 1_000_000_000, 1, 10).tokens_per_second is None
    assert sample(7, 7, 5, 10).tokens_per_second is None
    assert not sample(None, None, 0, None).ok


def test_every_client_gets_the_same_streams_within_the_ranges():
    config = BenchConfig(levels=(Level(10, 1),), ttft_ms=Range(200, 500), gap_ms=Range(10, 20),
                         tokens=Range(40, 64))
    shapes = stream_shapes(config, 10, 3)
    assert shapes == stream_shapes(config, 10, 3)
    assert shapes != stream_shapes(config, 10, 4)
    for shape in shapes:
        assert 0.2 <= shape.ttft_s <= 0.5 and 0.01 <= shape.gap_s <= 0.02 and 40 <= shape.n_tokens <= 64
