"""Fault matrix through a real loopback socket: every error_kind, each within its limit, and the
API key never in any result field."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from monitor.probes.base import ErrorKind, ProbeTarget, Secret
from monitor.probes.engine import run_probe
from tests.support.stream_server import (
    Frame,
    ScriptedResponse,
    html_response,
    json_response,
    openai_chunk,
    openai_stream,
    sse_event,
    sse_stream_response,
    unused_port,
)

CHAT = "/v1/chat/completions"
KEY = "sk-fake-DO-NOT-LEAK-0123456789"
SLACK_S = 0.5  # scheduling slack on a shared CI box


def target(base_url: str, **kw) -> ProbeTarget:
    fields = dict(protocol="openai", base_url=base_url, model="test-model", api_key=Secret(KEY),
                  api_key_env="FAKE_KEY", timeout_s=5.0, connect_timeout_s=2.0, stall_timeout_s=5.0)
    fields.update(kw)
    return ProbeTarget(**fields)


async def probe(client, tgt: ProbeTarget, limit_s: float):
    started = time.perf_counter()
    result = await run_probe(client, tgt)
    elapsed = time.perf_counter() - started
    assert elapsed <= limit_s + SLACK_S, f"took {elapsed:.2f} s, limit {limit_s} s"
    dumped = json.dumps(result.to_dict())
    assert KEY not in dumped
    assert not result.ok
    assert result.error and len(result.error) < 300
    return result


def role_then(*frames: Frame) -> list[Frame]:
    return [Frame(0.0, sse_event(openai_chunk({"role": "assistant", "content": ""}))), *frames]


def token(text: str = "hi", delay: float = 0.01) -> Frame:
    return Frame(delay, sse_event(openai_chunk({"content": text})), token=True)


DONE = Frame(0.0, b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("response", "kind", "status"),
    [
        (json_response(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}), ErrorKind.AUTH_ERROR, 401),
        (json_response(403, {"error": {"message": "forbidden"}}), ErrorKind.AUTH_ERROR, 403),
        (json_response(404, {"error": {"message": "model not found"}}), ErrorKind.NOT_FOUND, 404),
        (json_response(400, {"error": {"message": "bad model"}}), ErrorKind.HTTP_ERROR, 400),
        (json_response(500, {"error": {"message": "boom"}}), ErrorKind.HTTP_ERROR, 500),
        (html_response(502), ErrorKind.HTTP_ERROR, 502),
        (html_response(503, "<html><head><title>503 Service Unavailable</title></head></html>"), ErrorKind.HTTP_ERROR, 503),
        (json_response(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
         ErrorKind.RATE_LIMITED, 529),
    ],
)
async def test_http_status_errors(server, client, response, kind, status):
    server.route("POST", CHAT, response)
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == kind
    assert result.http_status == status
    assert result.error.startswith(f"HTTP {status}")
    assert result.ttft_s is None and result.output_tokens is None


async def test_error_text_names_the_provider_message_and_scrubs_the_key(server, client):
    server.route("POST", CHAT, json_response(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error == "HTTP 401: Incorrect API key provided: ***"


@pytest.mark.parametrize("padding", [181, 190, 200, 206])
async def test_a_key_cut_by_the_error_length_limit_is_scrubbed_too(server, client, padding):
    # The provider message is cut to 240 characters; with these paddings the cut leaves 29, 20, 10
    # and 4 characters of the echoed key.
    message = "x" * padding + f" Incorrect API key provided: {KEY}"
    server.route("POST", CHAT, json_response(401, {"error": {"message": message}}))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert KEY[:4] not in result.error


async def test_a_key_cut_inside_a_quoted_stream_event_is_scrubbed(server, client):
    # A garbled event is quoted (first 80 characters) in the error; the cut lands inside the key.
    garbled = Frame(0.0, b"data: {not json " + b"y" * 50 + f" {KEY}".encode() + b"\n\n")
    server.route("POST", CHAT, sse_stream_response(role_then(token(), garbled, DONE)))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR and "malformed" in result.error
    assert KEY[:4] not in result.error


async def test_html_error_page_is_summarised(server, client):
    server.route("POST", CHAT, html_response(503, "<html><head><title>503 Service Unavailable</title></head>"
                                                  "<body>" + "x" * 5000 + "</body></html>"))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error == "HTTP 503: HTML error page (503 Service Unavailable)"


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({}, None),
])
async def test_rate_limited_keeps_retry_after(server, client, headers, expected):
    server.route("POST", CHAT, json_response(429, {"error": {"message": "Rate limit reached"}}, headers=headers))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.RATE_LIMITED and result.http_status == 429
    assert result.retry_after_s == expected


async def test_stall_before_headers_times_out_at_the_total_limit(server, client):
    server.route("POST", CHAT, ScriptedResponse(head_delay_s=30, frames=[token()]))
    result = await probe(client, target(f"{server.url}/v1", timeout_s=0.6), 0.6)
    assert result.error_kind == ErrorKind.TIMEOUT
    assert "no response headers" in result.error
    assert result.total_s == pytest.approx(0.6, abs=0.1)


async def test_first_token_limit(server, client):
    server.route("POST", CHAT, sse_stream_response(role_then(token(delay=30)), end="hang"))
    result = await probe(client, target(f"{server.url}/v1", first_token_timeout_s=0.4), 0.4)
    assert result.error_kind == ErrorKind.TIMEOUT and "first token" in result.error


async def test_stall_mid_stream(server, client):
    server.route("POST", CHAT, sse_stream_response(role_then(token(), token(), token(delay=30))))
    result = await probe(client, target(f"{server.url}/v1", stall_timeout_s=0.4), 0.4 + 0.1)
    assert result.error_kind == ErrorKind.TIMEOUT and "stalled" in result.error
    assert result.ttft_s is not None and result.token_chunks == 2  # partial figures are kept


async def test_never_ending_stream_times_out_at_the_total_limit(server, client):
    # Tokens keep flowing (so neither stall nor first-token limits fire) and never end.
    server.route("POST", CHAT, sse_stream_response([token(delay=0.02) for _ in range(10_000)]))
    result = await probe(client, target(f"{server.url}/v1", timeout_s=0.8), 0.8)
    assert result.error_kind == ErrorKind.TIMEOUT and "not finished" in result.error
    assert result.total_s == pytest.approx(0.8, abs=0.15)


async def test_hanging_after_headers_counts_as_stall(server, client):
    server.route("POST", CHAT, sse_stream_response([], end="hang"))
    result = await probe(client, target(f"{server.url}/v1", stall_timeout_s=0.3), 0.3)
    assert result.error_kind == ErrorKind.TIMEOUT


@pytest.mark.parametrize(("end", "text"), [("reset", "reset"), ("eof", "closed mid-stream")])
async def test_connection_lost_mid_stream(server, client, end, text):
    server.route("POST", CHAT, sse_stream_response(role_then(token(), token()), end=end))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR
    assert text in result.error
    assert result.token_chunks == 2


async def test_invalid_json_event(server, client):
    server.route("POST", CHAT, sse_stream_response(role_then(token(), Frame(0.0, b"data: {not json\n\n"), DONE)))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR and "malformed" in result.error


async def test_in_band_error_event(server, client):
    error = {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
    server.route("POST", CHAT, sse_stream_response(role_then(token(), Frame(0.0, sse_event(error)))))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR
    assert "The server had an error" in result.error
    assert result.http_status == 200


async def test_clean_end_without_content_is_empty_response(server, client):
    frames = role_then(Frame(0.01, sse_event(openai_chunk({"content": ""}))),
                       Frame(0.0, sse_event(openai_chunk({}, finish_reason="length"))), DONE)
    server.route("POST", CHAT, sse_stream_response(frames))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.EMPTY_RESPONSE
    assert result.ttft_s is None and result.output_tokens == 0
    assert result.finish_reason == "length"


async def test_missing_done_marker_is_a_stream_error(server, client):
    server.route("POST", CHAT, sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.005, n_tokens=3, done=False)))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR and "end marker" in result.error


async def test_json_body_instead_of_a_stream(server, client):
    server.route("POST", CHAT, json_response(200, {"error": {"message": "streaming not supported"}}))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR
    assert "non-stream" in result.error and "streaming not supported" in result.error


async def test_plain_text_body_is_not_an_event_stream(server, client):
    server.route("POST", CHAT, ScriptedResponse(headers={"content-type": "text/plain"},
                                                frames=[Frame(0.0, b"hello there\n")]))
    result = await probe(client, target(f"{server.url}/v1"), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR and "not an event stream" in result.error


async def test_stream_over_the_byte_limit(server, client):
    big = [Frame(0.0, b": " + b"x" * 4000 + b"\n\n") for _ in range(50)]
    server.route("POST", CHAT, sse_stream_response(role_then(token(), *big)))
    result = await probe(client, target(f"{server.url}/v1", max_stream_bytes=50_000), 5.0)
    assert result.error_kind == ErrorKind.STREAM_ERROR and "exceeded" in result.error


async def test_unreachable_port_is_a_connect_error(client):
    result = await probe(client, target(f"http://127.0.0.1:{unused_port()}/v1"), 2.0)
    assert result.error_kind == ErrorKind.CONNECT_ERROR
    assert result.http_status is None and result.connect_s is None


async def test_unresolvable_host_is_a_dns_error(client):
    result = await probe(client, target("http://no-such-host.invalid/v1", connect_timeout_s=3.0), 3.0)
    assert result.error_kind == ErrorKind.DNS_ERROR
    assert "no-such-host.invalid" in result.error


async def test_tls_against_a_plain_http_port_is_a_tls_error(server, client):
    result = await probe(client, target(f"https://127.0.0.1:{server.port}/v1"), 2.0)
    assert result.error_kind == ErrorKind.TLS_ERROR
    assert result.tcp_s is not None  # TCP got through; the handshake did not


async def test_silent_tls_peer_is_a_tls_error_within_the_connect_limit(client):
    async def swallow(reader, writer):  # accepts and never answers the ClientHello
        await reader.read()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        result = await probe(client, target(f"https://127.0.0.1:{port}/v1", connect_timeout_s=0.5), 0.5)
    finally:
        silent.close()
    assert result.error_kind == ErrorKind.TLS_ERROR and "timed out" in result.error


async def test_missing_key_is_a_config_error_without_any_request(server, client):
    tgt = target(f"{server.url}/v1", api_key=None)
    result = await probe(client, tgt, 0.1)
    assert result.error_kind == ErrorKind.CONFIG_ERROR and "FAKE_KEY" in result.error
    assert server.requests == [] and server.connections_opened == 0


@pytest.mark.parametrize("tgt", [
    ProbeTarget(protocol="openai", base_url="http://x/v1", model="m", config_error="unset variable ${ACCOUNT_ID}"),
    ProbeTarget(protocol="opnai", base_url="http://x/v1", model="m"),
    ProbeTarget(protocol="openai", base_url="ftp://x/v1", model="m"),
    ProbeTarget(protocol="openai", base_url="http://x/v1", model="m", options={"max_tokens_field": "bogus"}),
])
async def test_config_errors(client, tgt):
    started = time.perf_counter()
    result = await run_probe(client, tgt)
    assert time.perf_counter() - started < 0.1
    assert result.error_kind == ErrorKind.CONFIG_ERROR and result.error
