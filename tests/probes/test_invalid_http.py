"""A server that accepts the connection and answers with bytes that are no valid HTTP response:
the probe reports `stream_error` (the server answered, unparseably), never `connect_error`; only
a peer that goes away before sending any byte is `connect_error`. Real sockets throughout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import pytest

from monitor.probes.base import ErrorKind, ProbeTarget
from monitor.probes.engine import run_probe

HEAD_OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return True


@contextlib.asynccontextmanager
async def answering(payload: bytes, *, reset: bool = False):
    """A server that answers every request on a connection with `payload`, then closes it
    (resets it with `reset`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await _read_request(reader):
                writer.write(payload)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            if reset:
                sock = writer.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()


def target(base_url: str) -> ProbeTarget:
    return ProbeTarget(protocol="openai", base_url=base_url, model="m", timeout_s=5.0, connect_timeout_s=2.0)


@pytest.mark.parametrize(("payload", "text"), [
    (b"HTTP/1.1 2OO OK\r\ncontent-type: text/event-stream\r\n\r\n", "illegal status line"),
    (b"HTTP/1.1 200 OK\r\nx-huge: " + b"a" * (2 * 1024 * 1024) + b"\r\n\r\n", "Receive buffer too long"),
    (HEAD_OK + b"x-b\x01d: v\r\n\r\ndata: [DONE]\n\n", "illegal header line"),
    (HEAD_OK + b"bad header without a colon\r\n\r\n", "illegal header line"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "closed inside the response head"),
    (b"HTTP/1.1 20", "closed inside the response head"),
], ids=["illegal-status-line", "2MB-header", "control-char-in-header", "header-without-colon",
        "not-http-at-all", "head-cut-short"])
async def test_an_unparseable_answer_is_a_stream_error(client, payload, text):
    async with answering(payload) as url:
        result = await run_probe(client, target(url))
    assert result.error_kind == ErrorKind.STREAM_ERROR, result.error
    assert result.error.startswith("invalid HTTP response: ") and text in result.error
    assert result.http_status is None
    assert result.tcp_s is not None and result.connect_s is not None  # the connection did come up
    assert len(result.error) <= 240


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_peer_gone_before_any_byte_is_a_connect_error(client, reset):
    async with answering(b"", reset=reset) as url:
        result = await run_probe(client, target(url))
    assert result.error_kind == ErrorKind.CONNECT_ERROR, result.error
    assert result.error.startswith("connection lost before a response")


async def test_a_stream_cut_after_a_valid_head_stays_a_stream_error(client):
    async with answering(HEAD_OK + b"transfer-encoding: chunked\r\n\r\n5\r\ndata:") as url:
        result = await run_probe(client, target(url))
    assert result.error_kind == ErrorKind.STREAM_ERROR and "mid-stream" in result.error
    assert result.http_status == 200
