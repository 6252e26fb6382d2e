"""Odd values from a provider, over a real loopback socket: every result stays store-safe.

Two defect classes: a value the store or JSON cannot take (a count beyond 32 bits, a lone
surrogate or NUL in a text, an infinite Retry-After, a 3 MB finish reason) and a usage count the
stream contradicts (0 tokens for 16 chunks, 10^9 tokens for a 128-token answer).
"""

from __future__ import annotations

import json
import math

import pytest

from monitor.probes.base import ErrorKind, TokenCountSource
from monitor.probes.engine import run_probe
from monitor.probes.sanitize import INT32_MAX, MAX_RETRY_AFTER_S
from monitor.store import open_store
from tests.probes.provider_streams import PROTOCOLS, Raw, stream_route, target
from monitor.testing.stream_server import json_response

WORDS = [f"w{i} " for i in range(16)]


def assert_store_safe(result) -> None:
    """Every field fits its column and strict JSON."""
    json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN / infinity
    for name, value in vars(result).items():
        if isinstance(value, str):
            value.encode("utf-8")  # raises on a lone surrogate
            assert "\x00" not in value, name
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            bound = 2**63 - 1 if name == "stream_bytes" else INT32_MAX
            assert 0 <= value <= bound, (name, value)
        elif isinstance(value, float):
            assert math.isfinite(value) and value >= 0, (name, value)


async def write_and_read_back(tmp_path, result):
    store = await open_store(f"sqlite:///{tmp_path / 'probes.db'}")
    try:
        await store.insert_results([("model/x", "P", result)])
        [stored] = await store.recent_results("model/x", "P", 1)
    finally:
        await store.close()
    return stored


@pytest.mark.parametrize("usage", [10**30, 2**63, -5, 1e30])
async def test_out_of_range_usage_counts_are_stored(server, client, tmp_path, usage):
    path, response = stream_route("openai", words=WORDS, usage=usage)
    server.route("POST", path, response)
    result = await run_probe(client, target("openai", server.url))
    assert result.ok, result.error
    assert_store_safe(result)
    assert result.output_tokens == len(WORDS) and result.token_count_source == TokenCountSource.ESTIMATE
    assert result.tokens_per_second is not None and result.tokens_per_second > 0
    stored = await write_and_read_back(tmp_path, result)
    assert stored.output_tokens == len(WORDS)


@pytest.mark.parametrize("finish", ["\ud800", "stop\x00", Raw(b"\xff\xfe stop"), {"reason": "stop"}, 7,
                                    "x" * (3 * 1024 * 1024)])
async def test_odd_finish_reasons_are_cleaned_and_bounded(server, client, tmp_path, finish):
    path, response = stream_route("openai", words=WORDS, usage=len(WORDS), finish=finish)
    server.route("POST", path, response)
    result = await run_probe(client, target("openai", server.url))
    assert result.ok, result.error
    assert_store_safe(result)
    assert result.finish_reason is None or len(result.finish_reason) <= 64
    stored = await write_and_read_back(tmp_path, result)
    assert stored.finish_reason == result.finish_reason


@pytest.mark.parametrize("message", ["bad \x00 request", "lone \ud83d surrogate", "long " + "y" * 100_000])
async def test_error_texts_are_cleaned_and_bounded(server, client, tmp_path, message):
    server.route("POST", "/v1/chat/completions", json_response(400, {"error": {"message": message}}))
    result = await run_probe(client, target("openai", server.url))
    assert result.error_kind == ErrorKind.HTTP_ERROR
    assert_store_safe(result)
    assert len(result.error) <= 240
    stored = await write_and_read_back(tmp_path, result)
    assert stored.error == result.error


@pytest.mark.parametrize(("header", "expected"), [
    ("inf", None), ("1e400", None), ("1e308", MAX_RETRY_AFTER_S), ("999999999", MAX_RETRY_AFTER_S),
    ("-3", 0.0), ("30", 30.0), ("nan", None), ("NaN", None),
])
async def test_retry_after_is_finite_and_at_most_a_day(server, client, header, expected):
    server.route("POST", "/v1/chat/completions",
                 json_response(429, {"error": {"message": "slow down"}}, headers={"retry-after": header}))
    result = await run_probe(client, target("openai", server.url))
    assert result.error_kind == ErrorKind.RATE_LIMITED
    assert_store_safe(result)
    assert result.retry_after_s == expected


# ---------------------------------------------------------------------------- usage vs stream

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("usage", [0, 3, 10**9, 2 * 128 + 64 + 1])
async def test_usage_contradicting_the_stream_falls_back_to_the_chunk_count(server, client, protocol, usage):
    path, response = stream_route(protocol, words=WORDS, usage=usage)
    server.route("POST", path, response)
    result = await run_probe(client, target(protocol, server.url, max_tokens=128))
    assert result.ok, result.error
    assert result.output_tokens == len(WORDS) and result.token_chunks == len(WORDS)
    assert result.token_count_source == TokenCountSource.ESTIMATE
    assert result.usage_tokens == usage  # the rejected claim stays in the audit record
    assert result.tokens_per_second is not None and result.tokens_per_second > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("usage", [len(WORDS), 40, 2 * 128 + 64])
async def test_plausible_usage_is_trusted(server, client, protocol, usage):
    path, response = stream_route(protocol, words=WORDS, usage=usage)
    server.route("POST", path, response)
    result = await run_probe(client, target(protocol, server.url, max_tokens=128))
    assert result.ok, result.error
    assert result.output_tokens == usage and result.token_count_source == TokenCountSource.USAGE
    assert result.usage_tokens == usage and result.tokens_per_second > 0
