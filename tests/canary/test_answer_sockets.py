"""The answer canary over real sockets on every protocol: a loopback provider that answers right,
wrong, or truncated at max_tokens, and the probe's `answer_ok`."""

from __future__ import annotations

import pytest

from monitor.probes.base import ProbeTarget
from monitor.probes.engine import run_probe
from monitor.probes.prompt import COUNT_MAX, COUNT_MIN
from tests.canary.providers import BASE_PATH, PATHS, PROTOCOL_NAMES, count_words, counting_handler, n_of


def target(server, protocol: str, **kw) -> ProbeTarget:
    return ProbeTarget(protocol=protocol, base_url=server.url + BASE_PATH[protocol], model="m",
                       timeout_s=10.0, stall_timeout_s=10.0, **kw)


async def probe(server, client, protocol, answer, **kw):
    stream_kw = {k: kw.pop(k) for k in ("finish", "prompt_tokens", "timings") if k in kw}
    server.route("POST", PATHS[protocol], counting_handler(protocol, answer, **stream_kw))
    return await run_probe(client, target(server, protocol, **kw))


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_a_right_answer_is_ok(server, client, protocol):
    result = await probe(server, client, protocol, count_words)
    assert result.ok, result.error
    assert result.answer_ok is True
    [request] = server.requests_to(PATHS[protocol])
    assert COUNT_MIN <= n_of(request) <= COUNT_MAX


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
@pytest.mark.parametrize("answer", [
    lambda n: count_words(n - 1),                      # stopped short
    lambda n: count_words(n + 1),                      # went past N
    lambda n: count_words(30) if n != 30 else count_words(29),  # a canned answer to another N
    lambda n: [c for c in count_words(n) if "seven" not in c],  # skipped numbers
    lambda n: ["I cannot count."],
], ids=["short", "past", "canned", "skipped", "refusal"])
async def test_a_wrong_answer_is_not_ok_and_the_probe_stays_ok(server, client, protocol, answer):
    result = await probe(server, client, protocol, answer)
    assert result.ok, result.error  # a wrong answer is no failed probe: uptime is not touched
    assert result.answer_ok is False


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_a_right_answer_cut_at_max_tokens_is_not_judged(server, client, protocol):
    result = await probe(server, client, protocol, lambda n: count_words(n)[: n // 2], finish="length")
    assert result.ok and result.finish_reason is not None
    assert result.answer_ok is None


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_a_wrong_answer_cut_at_max_tokens_is_wrong(server, client, protocol):
    result = await probe(server, client, protocol,
                         lambda n: [c for c in count_words(n) if "three" not in c][:10], finish="length")
    assert result.ok and result.answer_ok is False


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
async def test_the_check_is_off_without_answer_in_checks(server, client, protocol):
    result = await probe(server, client, protocol, lambda n: ["wrong"], checks=())
    assert result.ok and result.answer_ok is None


async def test_a_failed_probe_is_not_judged(server, client):
    server.route("POST", PATHS["openai"], counting_handler("openai", count_words, finish="stop"))
    result = await run_probe(client, target(server, "openai", max_tokens=0))  # config_error before any request
    assert not result.ok and result.answer_ok is None


async def test_reasoning_text_is_not_read_as_the_answer(server, client):
    from monitor.testing.stream_server import Frame, openai_chunk, sse_event, sse_stream_response

    def handler(request):
        n = n_of(request)
        frames = [Frame(0, sse_event(openai_chunk({"reasoning": "".join(count_words(n))})), token=True),
                  Frame(0, sse_event(openai_chunk({"content": "Done."}))),
                  Frame(0, sse_event(openai_chunk({}, finish_reason="stop"))), Frame(0, b"data: [DONE]\n\n")]
        return sse_stream_response(frames)

    server.route("POST", PATHS["openai"], handler)
    result = await run_probe(client, target(server, "openai"))
    assert result.ok and result.answer_ok is False
