"""The answer-check ratio as a metric: `llm_endpoint_answer_ok_ratio` follows the live figures'
`answer_ok_ratio` (`stats.answer_ok_ratio` over the window), absent while nothing was checked."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry

from monitor.live import sample_of
from monitor.metrics import build_metrics
from monitor.probes.base import ProbeResult, TokenCountSource
from monitor.stats import EndpointLive, answer_ok_ratio, model_live

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class LiveWithRatio(EndpointLive):
    """EndpointLive as the figures code extends it (the field `answer_ok_ratio`)."""

    answer_ok_ratio: float | None = None


def probe(i: int, answer_ok: bool | None) -> ProbeResult:
    return ProbeResult(ok=True, error_kind=None, error=None, http_status=200, started_at=T0 + timedelta(minutes=i),
                       ttft_s=0.2, connect_s=0.01, total_s=1.0, output_tokens=50,
                       token_count_source=TokenCountSource.USAGE, tokens_per_second=40.0, answer_ok=answer_ok)


def live(ratio: float | None):
    endpoint = LiveWithRatio(provider="P", active=True, last_probe_at=T0, last_error_kind=None, ttft_ms_p50=200.0,
                             throughput_tps_p50=40.0, uptime=1.0, samples=10, answer_ok_ratio=ratio)
    return model_live("m", ["P"], [endpoint], window_s=86400)


def test_the_ratio_of_stored_verdicts():
    samples = [sample_of(probe(i, ok)) for i, ok in enumerate([True, True, False, None, True])]
    assert answer_ok_ratio(samples) == 0.75  # the truncated (None) probe counts neither way


def test_the_gauge_follows_the_live_ratio_and_disappears_without_one():
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    labels = {"model": "m", "provider": "P"}
    metrics.set_model_live(live(0.7))
    assert registry.get_sample_value("llm_endpoint_answer_ok_ratio", labels) == 0.7
    metrics.set_model_live(live(None))
    assert registry.get_sample_value("llm_endpoint_answer_ok_ratio", labels) is None
    metrics.set_model_live(replace(live(1.0)))
    metrics.remove_endpoint("m", "P")
    assert registry.get_sample_value("llm_endpoint_answer_ok_ratio", labels) is None
