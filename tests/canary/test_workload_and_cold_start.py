"""Workload profiles and cold starts over real sockets: the prompt padded to the profile, nonce
first, verified against the provider's reported prompt size on every protocol; Ollama's own
timings recorded and a probe that paid a model load flagged `cold_start`."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import build_metrics
from monitor.probes.base import ProbeTarget
from monitor.probes.canary import is_cold_start, server_decode_rate
from monitor.probes.engine import run_probe
from monitor.probes.prompt import build_prompt, count_to, is_size_mismatch
from tests.canary.providers import BASE_PATH, PATHS, PROTOCOL_NAMES, count_words, n_of, prompt_of, stream_for
from tests.probes.support import read_fixture
from monitor.testing.stream_server import Frame, ScriptedResponse

_PIECES = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def reference_count(prompt: str) -> int:
    """A stand-in tokenizer on the server side: words, single digits and punctuation marks, plus
    a chat template's 12 tokens. Independent of the probe's own estimate only in its details; the
    tests below are about the probe reading and judging what the provider reports."""
    return len(_PIECES.findall(prompt)) + 12


def target(server, protocol: str, **kw) -> ProbeTarget:
    return ProbeTarget(protocol=protocol, base_url=server.url + BASE_PATH[protocol], model="m",
                       timeout_s=10.0, stall_timeout_s=10.0, **kw)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
@pytest.mark.parametrize("profile", [100, 1000, 10000])
async def test_the_prompt_is_padded_to_the_profile_and_checked_against_prompt_tokens(server, client, protocol, profile):
    server.route("POST", PATHS[protocol], lambda request: stream_for(
        protocol, count_words(n_of(request)), prompt_tokens=reference_count(prompt_of(request))))
    first = await run_probe(client, target(server, protocol, input_tokens=profile))
    second = await run_probe(client, target(server, protocol, input_tokens=profile))
    assert first.ok and second.ok and first.answer_ok and second.answer_ok
    a, b = (prompt_of(r) for r in server.requests_to(PATHS[protocol]))
    # a fresh nonce at the very start: no two probes share a prefix a cache could serve
    assert re.match(r"\[probe [0-9a-f]{12}\]", a) and a[:20] != b[:20]
    assert first.input_tokens == profile
    assert first.prompt_tokens == reference_count(a)
    assert abs(first.prompt_tokens - profile) / profile <= 0.2
    assert not is_size_mismatch(first.input_tokens, first.prompt_tokens)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_a_prompt_size_far_off_the_profile_is_flagged(server, client, protocol):
    server.route("POST", PATHS[protocol], lambda request: stream_for(
        protocol, count_words(n_of(request)), prompt_tokens=5 * reference_count(prompt_of(request))))
    result = await run_probe(client, target(server, protocol, input_tokens=1000))
    assert result.ok and result.prompt_tokens > 4000
    assert is_size_mismatch(result.input_tokens, result.prompt_tokens)
    metrics = build_metrics(registry := CollectorRegistry())
    metrics.record_probe("m", "P", result)
    assert registry.get_sample_value("llm_prompt_size_mismatch", {"model": "m", "provider": "P"}) == 1
    result.prompt_tokens = 1000
    metrics.record_probe("m", "P", result)
    assert registry.get_sample_value("llm_prompt_size_mismatch", {"model": "m", "provider": "P"}) == 0


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_no_reported_prompt_size_means_no_verdict(server, client, protocol):
    server.route("POST", PATHS[protocol], lambda request: stream_for(
        protocol, count_words(n_of(request)), prompt_tokens=None))
    result = await run_probe(client, target(server, protocol))
    assert result.ok and result.prompt_tokens is None and result.input_tokens == 100
    assert not is_size_mismatch(result.input_tokens, result.prompt_tokens)


def test_the_default_profile_prompt():
    prompt = build_prompt("0123456789ab")
    n = count_to("0123456789ab")
    assert prompt.text.startswith("[probe 0123456789ab]\n")
    assert prompt.text.endswith(f"Count from 1 to {n} in words, separated by commas (one, two, three, ...). "
                                "Reply with the list only.")
    assert prompt.estimated_tokens == pytest.approx(100, abs=2) and prompt.input_tokens == 100


def test_the_filler_holds_no_number_and_the_size_does_not_depend_on_the_nonce():
    for profile in (100, 1000, 10000):
        a, b = build_prompt("000000000000", profile), build_prompt("fedcba987654", profile)
        filler = a.text.split("<<<")[1].split(">>>")[0]
        assert re.search(r"\d", filler) is None
        assert not set(re.findall(r"[a-z]+", filler.lower())) & {
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty", "thirty"}
        assert len(a.text) == len(b.text) and a.estimated_tokens == b.estimated_tokens == pytest.approx(profile, abs=2)


def test_count_to_covers_its_range():
    values = {count_to(f"{i:012x}") for i in range(200)}
    assert values == set(range(20, 31))


# ------------------------------------------------------------------------------- cold starts

def ollama_timings(load_ns: int) -> dict[str, int]:
    return {"total_duration": load_ns + 900_000_000, "load_duration": load_ns,
            "prompt_eval_duration": 120_000_000, "eval_duration": 780_000_000}


async def test_a_cold_start_ollama_transcript_is_flagged_with_the_server_timings(server, client):
    server.route("POST", "/api/chat", lambda request: stream_for(
        "ollama", count_words(n_of(request)), prompt_tokens=95, timings=ollama_timings(2_534_000_000)))
    result = await run_probe(client, target(server, "ollama"))
    assert result.ok and result.answer_ok
    assert result.cold_start is True
    assert result.server_load_s == pytest.approx(2.534)
    assert result.server_prompt_eval_s == pytest.approx(0.12)
    assert result.server_eval_s == pytest.approx(0.78)
    assert result.server_eval_tokens == result.output_tokens == result.usage_tokens
    assert server_decode_rate(result) == pytest.approx(result.server_eval_tokens / 0.78)
    assert result.prompt_tokens == 95


async def test_the_documented_warm_ollama_transcript_is_no_cold_start(server, client):
    # ollama docs/api.md: load_duration 1334875 ns (1.3 ms), eval 282 tokens in 4.54 s
    body = read_fixture("ollama_chat_stream.ndjson")
    server.route("POST", "/api/chat", ScriptedResponse(
        status=200, headers={"content-type": "application/x-ndjson"}, frames=[Frame(0.0, body)]))
    result = await run_probe(client, target(server, "ollama"))
    assert result.ok and result.cold_start is False
    assert result.server_load_s == pytest.approx(0.001334875)
    assert result.server_eval_tokens == 282 and result.server_eval_s == pytest.approx(4.535599)
    assert result.prompt_tokens == 26
    assert server_decode_rate(result) == pytest.approx(282 / 4.535599)
    assert result.answer_ok is False  # "The" is no count


@pytest.mark.parametrize("protocol", [p for p in PROTOCOL_NAMES if p != "ollama"])
async def test_other_protocols_report_no_server_timings(server, client, protocol):
    server.route("POST", PATHS[protocol], lambda request: stream_for(protocol, count_words(n_of(request))))
    result = await run_probe(client, target(server, protocol))
    assert result.ok and result.cold_start is False
    assert (result.server_load_s, result.server_eval_s, result.server_eval_tokens) == (None, None, None)


@pytest.mark.parametrize("load_s, ttft_s, cold", [
    (None, 0.3, False), (0.0013, 0.3, False), (0.6, 5.0, True), (0.45, 2.0, False),
    (0.3, 0.4, True), (0.09, 0.1, False), (0.2, 0.5, False),
])
def test_the_cold_start_rule(load_s, ttft_s, cold):
    assert is_cold_start(load_s, ttft_s) is cold


@pytest.mark.parametrize("value", [-5, 10**400, 1.5e9, "2000000000", True, None])
def test_hostile_ollama_timings_are_dropped_not_fatal(value):
    from monitor.probes.ollama import parse_event

    import json as jsonlib
    line = '{"done": true, "done_reason": "stop", "eval_count": 3, "load_duration": ' + (
        str(value) if isinstance(value, int) and not isinstance(value, bool) else jsonlib.dumps(value)) + "}"
    delta = parse_event(line)
    assert delta.done and delta.server_timings.load_s is None and delta.server_timings.eval_tokens == 3
