"""CPU and memory a hostile stream can make one probe spend while decoding stay bounded.

One long line fed in small reads must cost time linear in its length (checked as the ratio of
CPU time for a 4x longer line, never as an absolute time), and a compressed body must never be
inflated much beyond the probe's byte cap (checked on the bytes counted and on peak memory).
"""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest

from monitor.probes.base import ErrorKind, ProbeTarget
from monitor.probes.engine import run_probe
from monitor.probes.framing import NDJSONDecoder, SSEDecoder
from monitor.probes.transport import INFLATE_STEP
from monitor.testing.stream_server import Frame, ScriptedResponse, openai_chunk, openai_stream, sse_event

CHAT = "/v1/chat/completions"
READ = 1024
MiB = 1024 * 1024


def target(base_url: str, **kw) -> ProbeTarget:
    fields = dict(protocol="openai", base_url=f"{base_url}/v1", model="test-model", timeout_s=20.0,
                  connect_timeout_s=2.0, stall_timeout_s=10.0)
    fields.update(kw)
    return ProbeTarget(**fields)


def cpu_to_decode(decoder_cls, size: int) -> float:
    """CPU seconds to feed one `size`-byte line in 1 KiB reads (best of three runs)."""
    piece = b"x" * READ
    best = float("inf")
    for _ in range(3):
        decoder = decoder_cls()
        started = time.process_time()
        decoder.feed(b"data: ")
        for _ in range(size // READ):
            decoder.feed(piece)
        out = decoder.feed(b"\n\n")
        best = min(best, time.process_time() - started)
        assert len(out) == 1
    return best


@pytest.mark.parametrize("decoder_cls", [SSEDecoder, NDJSONDecoder])
def test_a_long_line_in_small_reads_costs_linear_time(decoder_cls):
    # Quadratic splitting gives a ratio near 16 for a 4x longer line; linear about 4. A floor on
    # the short run keeps timer resolution from inflating the ratio.
    short = max(cpu_to_decode(decoder_cls, 1 * MiB), 0.002)
    long = cpu_to_decode(decoder_cls, 4 * MiB)
    assert long / short < 8, f"1 MiB: {short:.4f} s, 4 MiB: {long:.4f} s"


def test_line_ends_split_across_reads_still_split_once():
    decoder = SSEDecoder()
    events = []
    for piece in (b"data: a\r", b"\ndata: b\r", b"\r", b"data: c\n", b"\n"):
        events += decoder.feed(piece)
    assert [e.data for e in events] == ["a\nb", "c"]


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return compressor.compress(data) + compressor.flush()


def frames_of(data: bytes, size: int = 16 * 1024) -> list[Frame]:
    return [Frame(0.0, data[i:i + size]) for i in range(0, len(data), size)]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    # 64 MiB of one byte compress to about 64 KiB.
    return gzip_bytes(b"a" * (64 * MiB))


async def test_a_gzip_bomb_stream_is_inflated_no_further_than_the_cap(server, client, bomb):
    cap = 1 * MiB
    server.route("POST", CHAT, ScriptedResponse(
        status=200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
        frames=frames_of(bomb)))
    tracemalloc.start()
    try:
        result = await run_probe(client, target(server.url, max_stream_bytes=cap))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_kind == ErrorKind.STREAM_ERROR and "exceeded" in result.error
    assert cap < result.stream_bytes <= cap + INFLATE_STEP
    assert peak < 8 * cap, f"peak {peak / MiB:.1f} MiB"


async def test_a_gzip_bomb_error_body_is_inflated_no_further_than_its_limit(server, client, bomb):
    server.route("POST", CHAT, ScriptedResponse(
        status=500, headers={"content-type": "application/json", "content-encoding": "gzip"},
        frames=frames_of(bomb)))
    tracemalloc.start()
    try:
        result = await run_probe(client, target(server.url))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_kind == ErrorKind.HTTP_ERROR and result.http_status == 500
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw", "gzip, gzip"])
async def test_a_compressed_stream_still_decodes(server, client, coding):
    body = b"".join(f.data for f in openai_stream(ttft_s=0, gap_s=0, n_tokens=40))
    if coding == "gzip":
        encoded = gzip_bytes(body)
    elif coding == "deflate":
        encoded = zlib.compress(body)
    elif coding == "deflate-raw":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded, coding = compressor.compress(body) + compressor.flush(), "deflate"
    else:
        encoded = gzip_bytes(gzip_bytes(body))
    server.route("POST", CHAT, ScriptedResponse(
        status=200, headers={"content-type": "text/event-stream", "content-encoding": coding},
        frames=frames_of(encoded, 97)))
    result = await run_probe(client, target(server.url))
    assert result.ok, result.error
    assert result.token_chunks == 40 and result.output_tokens == 40


def long_line_stream(size: int) -> ScriptedResponse:
    """One `size`-character content delta written in 1 KiB pieces, then a token and [DONE]."""
    event = sse_event(openai_chunk({"content": "x" * size}))
    frames = [Frame(0.0, event[i:i + READ]) for i in range(0, len(event), READ)]
    frames += [Frame(0.0, sse_event(openai_chunk({"content": "y"}))), Frame(0.0, b"data: [DONE]\n\n")]
    return ScriptedResponse(status=200, headers={"content-type": "text/event-stream"}, frames=frames)


async def test_a_long_line_over_a_socket_costs_the_probe_linear_cpu(server, client):
    async def probe_cpu(size: int) -> float:
        best = float("inf")
        for _ in range(2):
            server.route("POST", CHAT, long_line_stream(size))
            result = await run_probe(client, target(server.url, timeout_s=120.0))
            assert result.ok, result.error
            best = min(best, result.cpu_s)
        return best

    # Quadratic splitting costs ~14x more CPU for the 4x longer line (seconds); linear ~4x at
    # most. The floor keeps a very fast short run from inflating the ratio.
    short = max(await probe_cpu(768 * 1024), 0.03)
    long = await probe_cpu(3 * MiB)
    assert long / short < 8, f"768 KiB: {short:.3f} s, 3 MiB: {long:.3f} s"


async def test_a_deflate_stream_whose_first_read_is_one_byte_still_decodes(server, client):
    body = b"".join(f.data for f in openai_stream(ttft_s=0, gap_s=0, n_tokens=5))
    encoded = zlib.compress(body)
    frames = [Frame(0.0, encoded[:1]), Frame(0.05, encoded[1:])]
    server.route("POST", CHAT, ScriptedResponse(
        status=200, headers={"content-type": "text/event-stream", "content-encoding": "deflate"}, frames=frames))
    result = await run_probe(client, target(server.url))
    assert result.ok, result.error
    assert result.token_chunks == 5
