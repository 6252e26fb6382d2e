"""The pure sanitising step: each field class on its own (the socket tests cover the wiring)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from monitor.probes.base import ProbeResult, TokenCountSource
from monitor.probes.sanitize import INT32_MAX, MAX_TOKENS_PER_SECOND, sanitize, usage_is_plausible


def result(**kw) -> ProbeResult:
    fields = dict(ok=True, error_kind=None, error=None, http_status=200,
                  started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), ttft_s=0.1, connect_s=0.01,
                  total_s=0.5, output_tokens=20, token_count_source=TokenCountSource.USAGE,
                  tokens_per_second=47.5, token_chunks=20, usage_tokens=20, first_read_tokens=1,
                  last_token_s=0.5, stream_bytes=4000)
    fields.update(kw)
    return ProbeResult(**fields)


def test_a_sane_result_is_unchanged():
    assert sanitize(result(), max_tokens=128) == result()


@pytest.mark.parametrize("name", ["ttft_s", "connect_s", "total_s", "cpu_s", "loop_lag_s", "retry_after_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_become_none(name, value):
    assert getattr(sanitize(result(**{name: value})), name) is None


def test_non_finite_rate_is_recomputed_from_counts_and_times():
    clean = sanitize(result(tokens_per_second=math.nan), max_tokens=128)
    assert clean.tokens_per_second == pytest.approx((20 - 1) / 0.4)


def test_rate_above_the_physical_bound_is_dropped():
    # 20 tokens whose first and last reads are 10 microseconds apart.
    clean = sanitize(result(tokens_per_second=None, ttft_s=0.1, last_token_s=0.10001), max_tokens=128)
    assert (20 - 1) / 0.00001 > MAX_TOKENS_PER_SECOND and clean.tokens_per_second is None


@pytest.mark.parametrize(("status", "expected"), [(200, 200), (99, None), (1000, None), (True, None), (2**40, None)])
def test_http_status_is_a_three_digit_code(status, expected):
    assert sanitize(result(http_status=status)).http_status == expected


def test_required_counts_are_clamped_into_their_columns():
    clean = sanitize(result(token_chunks=-1, first_read_tokens=2**40, stream_bytes=2**70,
                            token_count_source=TokenCountSource.ESTIMATE, output_tokens=None))
    assert (clean.token_chunks, clean.first_read_tokens, clean.stream_bytes) == (0, INT32_MAX, 2**63 - 1)


@pytest.mark.parametrize(("usage", "chunks", "max_tokens", "plausible"), [
    (0, 16, 128, False), (15, 16, 128, False), (16, 16, 128, True), (320, 16, 128, True), (321, 16, 128, False),
    (864, 400, 128, True), (865, 400, 128, False), (10**9, 16, None, True), (2**31, 16, None, False),
])
def test_usage_plausibility(usage, chunks, max_tokens, plausible):
    assert usage_is_plausible(usage, chunks, max_tokens) is plausible


def test_texts_lose_surrogates_and_nul_and_are_cut():
    clean = sanitize(result(finish_reason="a\ud800b\x00c", error="e" * 1000, http_version="HTTP/1.1" * 4,
                            model="m\x00"))
    assert clean.finish_reason == "a\ufffdb\ufffdc"
    assert len(clean.error) == 240 and clean.error.endswith("…")
    assert len(clean.http_version) == 16 and clean.model == "m\ufffd"
