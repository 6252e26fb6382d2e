"""The HTTP server of a service process: uvicorn with limits against slow and greedy clients.

uvicorn's `timeout_keep_alive` only runs between requests, and every received byte resets it,
so a client that opens a connection and sends its request head one byte at a time would hold
the connection (and a slot of `limit_concurrency`) for ever: uvicorn has no option bounding the
time to receive a request head. `head_deadline_protocol` adds that bound to uvicorn's h11
protocol: the head must be complete within `http_header_timeout_s` of the connection opening or
of the previous response ending, else the connection is closed (checked about once a second, so
within the timeout plus at most a second). It runs only while the server waits for a head, so
slow responses and request bodies are not affected.

Limits (settings, environment prefix `LLM_MONITOR_`): `HTTP_HEADER_TIMEOUT_S` (above),
`HTTP_KEEP_ALIVE_S` (idle keep-alive), `HTTP_MAX_CONNECTIONS` (uvicorn's `limit_concurrency`:
beyond it requests get 503), `HTTP_MAX_HEAD_BYTES` (h11's bound on unparsed request data; a
larger head is refused with 400).
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.settings import Settings


class _HeadSweeper:
    """Closes, about once a second, the connections of one event loop whose request head is
    overdue. One timer for all connections keeps the per-request cost to a clock read (a timer
    per request costs a heap push and a cancellation on the API's hot path)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.period_s = min(1.0, timeout_s / 4)
        self.connections: set[HeadDeadlineH11Protocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: HeadDeadlineH11Protocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.period_s, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in list(self.connections):
            since = connection.waiting_since
            if since is not None and now - since >= self.timeout_s:
                connection.head_timed_out()
        if self.connections:
            self._timer = self.loop.call_later(self.period_s, self._sweep)


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head takes too long."""

    head_timeout_s: float = 10.0
    _sweeper: _HeadSweeper | None = None  # per protocol class (one per server) and event loop
    # When the connection began waiting for a request head; None while a request is handled.
    waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        if cls._sweeper is None or cls._sweeper.loop is not self.loop:
            cls._sweeper = _HeadSweeper(self.loop, self.head_timeout_s)
        self.waiting_since = self.loop.time()
        cls._sweeper.add(self)

    def handle_events(self) -> None:
        super().handle_events()
        if self.waiting_since is not None and self.conn.their_state is not h11.IDLE:
            self.waiting_since = None  # a head arrived, or the connection is ending

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request head on this keep-alive connection (unless a pipelined
        # request was already read, or the connection is closing).
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.waiting_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting_since = None
        if self._sweeper is not None:
            self._sweeper.connections.discard(self)
        super().connection_lost(exc)

    def head_timed_out(self) -> None:
        self.waiting_since = None
        if not self.transport.is_closing():
            self.transport.close()


def head_deadline_protocol(timeout_s: float) -> type[HeadDeadlineH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with this process's deadline."""
    return type("HeadDeadlineH11Protocol", (HeadDeadlineH11Protocol,), {"head_timeout_s": timeout_s})


def build_server(app: ASGIApp, settings: Settings) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            http=head_deadline_protocol(settings.http_header_timeout_s),
            timeout_keep_alive=settings.http_keep_alive_s,
            limit_concurrency=settings.http_max_connections,
            h11_max_incomplete_event_size=settings.http_max_head_bytes,
        )
    )
