"""The HTTP server of a service process: uvicorn with limits against slow and greedy clients.

uvicorn's `timeout_keep_alive` only runs between requests, and every received byte resets it,
so a client that opens a connection and sends its request head one byte at a time would hold
the connection (and a slot of `limit_concurrency`) for ever: uvicorn has no option bounding the
time to receive a request head. `head_deadline_protocol` adds that bound to uvicorn's h11
protocol: the head must be complete within `http_header_timeout_s` of the connection opening or
of the previous response ending, else the connection is closed. It is armed only while the
server waits for a head, so slow responses and request bodies are not affected.

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


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head takes too long."""

    head_timeout_s: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a head arrived, or the connection is ending
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request head on this keep-alive connection (unless a pipelined
        # request was already read, or the connection is closing).
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
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
