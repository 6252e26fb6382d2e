"""The probes' network layer: how response bytes reach the timing core, and when they arrived.

Owns the shared HTTP client (`build_client`), the httpcore network backend under it and the
per-probe clock that backend writes into. The errors it raises (the DNS error types, httpcore
errors with a human reason) are classified in `outcomes.py`.

Why each piece exists:
- Kernel receive timestamps (`_StampedSocket`). Each socket read also fetches the time the kernel
  received the data (SO_TIMESTAMPNS on Linux), and `_StreamProtocol` stamps every chunk with it
  before any HTTP or SSE decoding, so a busy event loop delays the processing of a token but not
  its timestamp. Without kernel support the stamp is the time of `data_received`, which still
  runs before the probe's task is woken.
- Our own network backend (`_TimedBackend`, `_NetStream`). Only the network backend sees DNS, TCP
  connect and socket reads, and httpx exposes no option to choose one; ours times DNS apart from
  TCP connect and hands httpcore connections whose reads are stamped.
- Pool sharding (`_ShardedPool`). One httpcore pool rescans all its connections each time a request
  starts or ends, a cost that grows steeply with the number of connections (~30 s of CPU at 200
  concurrent probes on one pool); several small pools keep it low.
- `_ProbeTransport` installs those pools by replacing the private `_pool` attribute of
  `httpx.AsyncHTTPTransport`. That is not public API, so pyproject.toml keeps httpx below 0.29 (and
  httpcore, whose public network-backend interface we implement, below 2); re-check this module
  before raising either bound.

Per-probe data travels in a context variable (`CURRENT_CLOCK`) because httpcore connects and reads
inside the probe's own task with no way to pass the probe along: the engine sets a fresh
`ProbeClock` for each probe, and the backend records in it the DNS and TCP times, the pool shard
and the stamp of the latest read.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import platform
import socket
import ssl
import struct
import sys
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from monitor.probes.base import METHODOLOGY_VERSION
from monitor.probes.outcomes import DNSLookupError, DNSLookupTimeout, describe, os_reason

__all__ = [
    "CURRENT_CLOCK",
    "ProbeClock",
    "build_client",
    "decoded_body",
]

USER_AGENT = f"llm-endpoint-monitor/{METHODOLOGY_VERSION}"


# --------------------------------------------------------------------------- clocks

@dataclass
class ProbeClock:
    """Per-probe timestamps written by the network layer (found through a context variable,
    because httpcore connects and reads inside the probe's own task)."""

    last_read_ns: int = 0
    dns_ns: int | None = None
    tcp_ns: int | None = None
    pool_shard: int | None = None  # chosen by _ShardedPool on the probe's first request


CURRENT_CLOCK: contextvars.ContextVar[ProbeClock | None] = contextvars.ContextVar(
    "probe_clock", default=None
)


# Flow control for a connection's receive buffer (the probe reads far faster than providers send).
_READ_HIGH_WATER = 1024 * 1024
_READ_LOW_WATER = 256 * 1024


# Kernel receive timestamps (Linux): the time a packet reached the socket, whatever the event
# loop was busy with. Without them, a loaded loop stamps data when it gets round to reading it.
# Python does not export SO_TIMESTAMPNS; 35 is its value (== SCM_TIMESTAMPNS) in the generic
# Linux ABI used by x86, ARM and RISC-V (MIPS, SPARC, PA-RISC and Alpha number it differently).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", None) or (
    35 if sys.platform.startswith("linux")
    and platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "aarch64", "arm64", "armv7l", "riscv64")
    else None
)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if _SO_TIMESTAMPNS is not None else 0


class _StampedSocket(socket.socket):
    """A socket whose reads also fetch the kernel's receive timestamp of the data they return.

    asyncio's transports call `recv`/`recv_into` on the socket they are given; these overrides
    use `recvmsg` with SO_TIMESTAMPNS and keep the stamp, converted from CLOCK_REALTIME to the
    `perf_counter_ns` timeline (offset taken at read time, so only a clock step within the few
    microseconds between arrival and read could skew it), in `rx_ns`.
    """

    __slots__ = ("rx_ns", "kernel_stamps")

    def enable_timestamps(self) -> None:
        self.rx_ns = 0
        self.kernel_stamps = False
        if _SO_TIMESTAMPNS is not None:
            try:
                self.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:
                pass

    def recv(self, bufsize: int, flags: int = 0) -> bytes:  # type: ignore[override]
        if not self.kernel_stamps:
            data = super().recv(bufsize, flags)
            self.rx_ns = time.perf_counter_ns()
            return data
        data, ancillary, _flags, _addr = self.recvmsg(bufsize, _ANCILLARY_SPACE, flags)
        self._stamp(ancillary)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:  # type: ignore[override]
        if not self.kernel_stamps:
            count = super().recv_into(buffer, nbytes, flags)
            self.rx_ns = time.perf_counter_ns()
            return count
        view = memoryview(buffer)
        if nbytes:
            view = view[:nbytes]
        count, ancillary, _flags, _addr = self.recvmsg_into([view], _ANCILLARY_SPACE, flags)
        self._stamp(ancillary)
        return count

    def _stamp(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        now = time.perf_counter_ns()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(payload)
                arrived = now - (time.time_ns() - (seconds * 1_000_000_000 + nanos))
                self.rx_ns = min(now, arrived)
                return
        self.rx_ns = now


class _StreamProtocol(asyncio.Protocol):
    """Receives a connection's bytes and stamps each arrival in `data_received`.

    The stamp is the kernel's receive time when the socket provides it (`_StampedSocket`), else
    the time of `data_received`, which runs in the loop iteration that saw the socket readable,
    before the probe's task is even woken.
    """

    def __init__(self, sock: _StampedSocket | None = None) -> None:
        self._sock = sock
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future | None = None

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # For TLS, decrypted data is delivered inside the callback of the raw read that completed
        # the record, so the socket's stamp is that read's.
        stamp = self._sock.rx_ns if self._sock is not None and self._sock.rx_ns else time.perf_counter_ns()
        self.chunks.append((stamp, data))
        self.buffered += len(data)
        if self.buffered > _READ_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by _NetStream
    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        if not self.chunks and not self.eof:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await waiter
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            except TimeoutError:
                raise httpcore.ReadTimeout("read timed out") from None
            finally:
                self._waiter = None
        if self.chunks:
            stamp, data = self.chunks.popleft()
            if len(data) > max_bytes:
                self.chunks.appendleft((stamp, data[max_bytes:]))
                data = data[:max_bytes]
            self.buffered -= len(data)
            if self._reading_paused and self.buffered < _READ_LOW_WATER and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            clock = CURRENT_CLOCK.get()
            if clock is not None:
                clock.last_read_ns = stamp
            return data
        if self.error is not None:
            raise httpcore.ReadError(describe(self.error))
        return b""

    async def drain(self, timeout: float | None) -> None:
        while self._writing_paused and self.error is None and not self.eof:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise httpcore.WriteTimeout("write timed out") from None
            finally:
                self._drain_waiter = None


class _NetStream(httpcore.AsyncNetworkStream):
    """httpcore's view of one asyncio connection (plain or TLS)."""

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._protocol.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing() or self._protocol.error is not None:
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        await self._protocol.drain(timeout)

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls_transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context,
                    server_hostname=server_hostname, ssl_handshake_timeout=timeout,
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(os_reason(exc)) from None
        if tls_transport is None:  # the peer closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        self._protocol.transport = tls_transport
        return _NetStream(tls_transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # httpcore asks this of an idle pooled connection: anything readable (data or EOF)
            # means the server closed or broke it.
            protocol = self._protocol
            return bool(protocol.chunks) or protocol.eof or self._transport.is_closing()
        return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _TimedBackend(httpcore.AsyncNetworkBackend):
    """asyncio network backend: our own timed DNS lookup (so DNS and TCP connect are told apart)
    and connections whose reads are stamped on arrival (`_StreamProtocol`)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        clock = CURRENT_CLOCK.get()
        loop = asyncio.get_running_loop()
        started = loop.time()
        bare = host.strip("[]")
        if _is_ip_literal(bare):
            family = socket.AF_INET6 if ":" in bare else socket.AF_INET
            candidates: list[tuple[int, Any]] = [(family, (bare, port))]
        else:
            t0 = time.perf_counter_ns()
            try:
                async with asyncio.timeout(timeout):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except TimeoutError:
                raise DNSLookupTimeout(f"DNS lookup of {host} timed out") from None
            except (socket.gaierror, UnicodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise DNSLookupError(f"cannot resolve {host}: {reason}") from None
            if clock is not None:
                clock.dns_ns = time.perf_counter_ns() - t0
            candidates = list({info[4]: (info[0], info[4]) for info in infos}.values())
        t0 = time.perf_counter_ns()
        last_error: BaseException | None = None
        for family, address in candidates:
            remaining = None if timeout is None else timeout - (loop.time() - started)
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout("connect timed out")
            sock = _StampedSocket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.enable_timestamps()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if local_address:
                    sock.bind((local_address, 0))
                async with asyncio.timeout(remaining):
                    await loop.sock_connect(sock, address)
                transport, protocol = await loop.create_connection(lambda: _StreamProtocol(sock), sock=sock)
            except TimeoutError:
                sock.close()
                raise httpcore.ConnectTimeout("connect timed out") from None
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            except BaseException:
                sock.close()
                raise
            if clock is not None:
                clock.tcp_ns = time.perf_counter_ns() - t0
            return _NetStream(transport, protocol)
        raise httpcore.ConnectError(os_reason(last_error) if last_error else "no address to connect to")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_StreamProtocol, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(os_reason(exc)) from None
        return _NetStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _ShardedPool:
    """Several small httpcore connection pools behind one interface.

    httpcore's pool rescans all its connections (and, for each idle one, all of them again) each
    time a request starts or ends; at 200 concurrent probes on one pool that bookkeeping took
    ~30 s of CPU. Probes are spread round-robin over shards and a probe keeps its shard (recorded
    on its clock), so its warm-up and measured request still share a connection.
    """

    def __init__(self, shards: int, **pool_kw: Any) -> None:
        self._pools = [httpcore.AsyncConnectionPool(**pool_kw) for _ in range(shards)]
        self._next = 0

    def _pool(self) -> httpcore.AsyncConnectionPool:
        clock = CURRENT_CLOCK.get()
        if clock is None:
            return self._pools[0]
        if clock.pool_shard is None:
            clock.pool_shard = self._next
            self._next = (self._next + 1) % len(self._pools)
        return self._pools[clock.pool_shard]

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self) -> "_ShardedPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ProbeTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on our network backend (timed DNS, reads stamped on arrival).

    httpx does not take a network backend, so the connection pool it builds is replaced by
    (sharded) pools that have ours. No proxy support: probes measure the direct path.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits, shards: int) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        per_shard = None if limits.max_connections is None else max(1, -(-limits.max_connections // shards))
        self._pool = _ShardedPool(  # type: ignore[assignment]
            shards,
            ssl_context=ssl_context,
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=limits.keepalive_expiry,
            # HTTP/1.1 only: on a multiplexed HTTP/2 connection one probe could read, and so
            # timestamp, another probe's frames.
            http1=True,
            http2=False,
            network_backend=_TimedBackend(),
        )


def build_client(*, max_connections: int | None = 1024, keepalive_expiry_s: float = 30.0,
                 verify: ssl.SSLContext | bool = True, pool_shards: int = 16) -> httpx.AsyncClient:
    """The one long-lived HTTP client every probe shares (create at the entrypoint, close at exit).

    `max_connections` is split evenly over `pool_shards` connection pools (see `_ShardedPool`).
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry_s,
    )
    return httpx.AsyncClient(
        transport=_ProbeTransport(verify=verify, limits=limits, shards=max(1, pool_shards)),
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
        # Per-request timeouts are always set by the engine; this default only guards misuse.
        timeout=httpx.Timeout(60.0),
    )


# --------------------------------------------------------------------------- body decoding

# Most bytes one inflate step may produce. A body is decoded lazily, one step per item the reader
# asks for, so a reader that stops at its byte cap has had at most cap + this many bytes inflated
# (a gzip bomb expands about 1000:1: one 64 KiB read would otherwise become 64 MB at once).
INFLATE_STEP = 64 * 1024


class _Inflater:
    """One gzip or deflate layer, inflated at most `step` bytes at a time."""

    def __init__(self, coding: str, step: int) -> None:
        self._coding = coding
        self._step = step
        self._zlib: Any = zlib.decompressobj(zlib.MAX_WBITS | 16) if coding in ("gzip", "x-gzip") else None
        self._head = b""  # deflate: the first bytes, until two tell which form it is

    def inflate(self, data: bytes) -> Iterator[bytes]:
        if self._zlib is None:  # deflate: zlib-wrapped as the RFC says, or raw as some servers send
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        inflater = self._zlib
        while not inflater.eof:
            try:
                out = inflater.decompress(data, self._step)
            except zlib.error as exc:
                raise httpx.DecodingError(f"invalid {self._coding} body: {exc}") from None
            data = inflater.unconsumed_tail
            if out:
                yield out
            # Output stops at `step` bytes; more may be pending even with no input left.
            if not data and len(out) < self._step:
                return


async def decoded_body(response: httpx.Response, *, step: int = INFLATE_STEP) -> AsyncIterator[bytes]:
    """The response body with its gzip/deflate content-coding removed, inflated lazily and in
    bounded steps (httpx inflates each network read whole). Other codings are passed through as
    they are, as httpx does with codings it does not know."""
    codings = [c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True)]
    layers = [_Inflater(c, step) for c in reversed(codings) if c in ("gzip", "x-gzip", "deflate")]
    async for raw in response.aiter_raw():
        if not layers:
            yield raw
            continue
        for piece in _through(layers, raw):
            yield piece


def _through(layers: list[_Inflater], data: bytes) -> Iterator[bytes]:
    first, rest = layers[0], layers[1:]
    for piece in first.inflate(data):
        if rest:
            yield from _through(rest, piece)
        else:
            yield piece
