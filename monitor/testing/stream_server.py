"""Scripted loopback HTTP/1.1 server: exact control of every byte, pause and fault of a response.

Wherever a provider with known timings is needed (tests, benchmarks, a demo or a self-test).

`StreamServer` runs in its OWN thread with its OWN asyncio event loop and speaks raw HTTP/1.1 on
asyncio streams (no framework), so a test decides every byte and every pause: a delay before the
response head, a delay before each body frame (frames go out with chunked transfer encoding, with
TCP_NODELAY so each frame leaves at once), and how the response ends:

- ``end="close"``: a normal end (terminating zero-length chunk); the connection stays open for
  keep-alive, as a real server's would, so a warm-up request and the measured one share it.
- ``end="eof"``: the socket is closed without the terminating chunk (a truncated body).
- ``end="reset"``: the TCP connection is aborted with RST (SO_LINGER 0 + abort) after the frames.
- ``end="hang"``: nothing more is ever sent; the connection is held until the client goes away.

Because the server loop is separate from the probe's loop, the probe's event-loop lag cannot
distort the ground truth: every request records server-side `time.perf_counter_ns()` stamps of its
receipt (the kernel's arrival time of the last request bytes, via SO_TIMESTAMPNS on Linux, so a
busy server thread reading late does not move it), of the response head and of each frame
written (stamped just before the send call). Frames built
with ``token=True`` are the token-bearing ones, so callers compute true TTFT and decode rate from
the server's own clock (`ServedRequest.ttft_truth_s`, `.decode_rate_truth`).

`srv.route(method, path, response_or_callable)`: the callable receives the `ServedRequest`
(method, path, query, headers, json) and returns a `ScriptedResponse`. Unknown routes get 404 JSON.
Helpers build OpenAI-style streams (`openai_stream`), generic SSE frames (`sse_frames`), and
plain JSON or HTML responses.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import platform
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Sequence
from urllib.parse import parse_qsl, urlsplit

from monitor.stats import decode_rate

__all__ = [
    "Frame",
    "ScriptedResponse",
    "ServedRequest",
    "StreamServer",
    "html_response",
    "json_response",
    "openai_chunk",
    "openai_stream",
    "sse_event",
    "sse_frames",
    "sse_stream_response",
    "unused_port",
]

End = Literal["close", "eof", "reset", "hang"]

_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 529: "Overloaded",
}


@dataclass(frozen=True)
class Frame:
    """One body write: wait `delay_s` after the previous write (or the head), then send `data`.

    `token=True` marks a frame carrying an output token, for ground-truth TTFT / decode rate.
    """

    delay_s: float
    data: bytes
    token: bool = False


@dataclass
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    head_delay_s: float = 0.0
    end: End = "close"
    # Sent with Content-Length when there are no frames (error pages, JSON bodies).
    body: bytes = b""


@dataclass
class ServedRequest:
    """A request as the server parsed it, plus the server-side timeline of its response."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # parsed body, or None when it is not JSON
    received_ns: int  # last request byte read
    head_ns: int | None = None  # response head written
    frame_ns: list[int] = field(default_factory=list)  # each frame written, in order
    frames: list[Frame] = field(default_factory=list)  # the frames actually written
    connection_id: int = 0  # requests on one TCP connection share it

    @property
    def token_ns(self) -> list[int]:
        return [ns for ns, frame in zip(self.frame_ns, self.frames) if frame.token]

    def ttft_truth_s(self) -> float:
        """Server-side time from request receipt to the first token frame written."""
        return (self.token_ns[0] - self.received_ns) / 1e9

    def decode_rate_truth(self, output_tokens: int) -> float | None:
        """The contract's decode rate (`monitor.stats.decode_rate`) over the server's own token
        write times; None with fewer than 2 token frames."""
        stamps = self.token_ns
        if not stamps:
            return None
        return decode_rate(output_tokens, len(stamps), 0.0, (stamps[-1] - stamps[0]) / 1e9)


Handler = Callable[[ServedRequest], ScriptedResponse]


class _BadRequest(Exception):
    pass


class StreamServer:
    """Loopback HTTP/1.1 server with scripted responses, in its own thread and event loop."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 1024,
                 keep_requests: int | None = None) -> None:
        """`port`: 0 picks a free one; a fixed port lets a test stop a server and start a new
        one where the old one was (an outage that ends). `keep_requests`: remember only the newest
        this many requests (a long-running server); None keeps all (tests count and inspect them)."""
        self.host = host
        self.port = port
        self._keep_requests = keep_requests
        self._backlog = backlog
        self._routes: dict[tuple[str, str], ScriptedResponse | Handler] = {}
        self.requests: list[ServedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self._connections: set[asyncio.Task] = set()
        self._next_connection_id = 0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.connections_opened = 0

    # ------------------------------------------------------------------ public API
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def route(self, method: str, path: str, response: ScriptedResponse | Handler) -> None:
        """Serve `response` (or the callable's result) for METHOD PATH (query string ignored)."""
        self._routes[(method.upper(), path)] = response

    def requests_to(self, path: str, method: str | None = None) -> list[ServedRequest]:
        return [
            r for r in list(self.requests)
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def wait_for_requests(self, count: int, *, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.005)

    def start(self) -> "StreamServer":
        self._thread = threading.Thread(target=self._run, name="stream-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            fut.result(timeout=5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> "StreamServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ server thread
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if _SO_TIMESTAMPNS is not None:
                # Set on the listener so accepted sockets inherit it: a request that arrives
                # before this loop gets round to accept() still carries its kernel stamp.
                listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            listener.bind((self.host, self.port))
            listener.listen(self._backlog)
            listener.setblocking(False)
            self._listener = listener
            self.port = listener.getsockname()[1]
        except BaseException as exc:  # surfaced to the caller of start()
            self._startup_error = exc
            self._ready.set()
            return
        self._accept_task = loop.create_task(self._accept_loop(listener))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _addr = await loop.sock_accept(listener)
            task = loop.create_task(self._on_connection(_Conn(sock)))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _shutdown(self) -> None:
        self._accept_task.cancel()
        self._listener.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _on_connection(self, conn: "_Conn") -> None:
        self._next_connection_id += 1
        self.connections_opened += 1
        connection_id = self._next_connection_id
        try:
            while True:
                try:
                    request = await self._read_request(conn, connection_id)
                except _BadRequest:
                    await conn.write(_simple_response(400, b'{"error":"bad request"}'))
                    break
                if request is None:
                    break
                self.requests.append(request)
                if self._keep_requests is not None and len(self.requests) > self._keep_requests:
                    del self.requests[: len(self.requests) - self._keep_requests]
                response = self._respond_to(request)
                keep_open = await self._send(conn, request, response)
                if not keep_open or request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            conn.close()

    async def _read_request(self, conn: "_Conn", connection_id: int) -> ServedRequest | None:
        first = await conn.peek()
        if first is None:
            return None  # client closed the connection between requests
        if first.startswith(b"\x16\x03"):
            # A TLS ClientHello on this plain-HTTP port: answer in plain HTTP, as real servers do.
            raise _BadRequest()
        head = await conn.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _BadRequest() from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await conn.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await conn.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await conn.readuntil(b"\r\n")
                    break
                parts.append(await conn.readexactly(size))
                await conn.readexactly(2)
            body = b"".join(parts)
        split = urlsplit(target)
        try:
            parsed = jsonlib.loads(body) if body else None
        except ValueError:
            parsed = None
        return ServedRequest(
            method=method.upper(),
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            json=parsed,
            received_ns=conn.rx_ns,
            connection_id=connection_id,
        )

    def _respond_to(self, request: ServedRequest) -> ScriptedResponse:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return json_response(404, {"error": {"message": f"no route for {request.method} {request.path}"}})
        if callable(handler):
            return handler(request)
        return handler

    async def _send(self, conn: "_Conn", request: ServedRequest, response: ScriptedResponse) -> bool:
        """Write the scripted response. Returns whether the connection may serve another request."""
        if response.head_delay_s > 0:
            await asyncio.sleep(response.head_delay_s)
        headers = {k.lower(): v for k, v in response.headers.items()}
        streamed = bool(response.frames) or response.end != "close"
        if streamed:
            headers.setdefault("transfer-encoding", "chunked")
        else:
            headers.setdefault("content-length", str(len(response.body)))
        headers.setdefault("content-type", "application/json")
        reason = _REASONS.get(response.status, "Status")
        head = [f"HTTP/1.1 {response.status} {reason}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if not streamed:
            payload += response.body
        request.head_ns = await conn.write(payload)

        # Absolute schedule from the head: a late wake-up does not push later frames back.
        due_at = time.perf_counter()
        for frame in response.frames:
            due_at += frame.delay_s
            wait = due_at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sent_ns = time.perf_counter_ns()
            if frame.data:
                sent_ns = await conn.write(b"%x\r\n%s\r\n" % (len(frame.data), frame.data))
            request.frame_ns.append(sent_ns)
            request.frames.append(frame)

        if response.end == "close":
            if streamed:
                await conn.write(b"0\r\n\r\n")
            return True
        if response.end == "eof":
            return False
        if response.end == "reset":
            conn.reset()
            return False
        # hang: keep the socket open, reading (and discarding) until the client goes away.
        while await conn.read_some():
            pass
        return False


class _Conn:
    """One accepted connection on raw non-blocking socket calls.

    Reads use `recvmsg` with SO_TIMESTAMPNS (Linux) so `rx_ns` is the kernel's arrival time of the
    latest bytes, on the `perf_counter_ns` timeline: the request's receipt is then independent of
    how busy this server's loop (or the GIL) was. Writes stamp `perf_counter_ns()` just BEFORE
    the send call: on loopback the kernel delivers during the call, which itself needs no GIL,
    whereas a stamp after it could wait for the GIL.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.kernel_stamps = False
        if _SO_TIMESTAMPNS is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:
                pass
        self.buffer = bytearray()
        self.eof = False
        self.rx_ns = 0
        self.loop = asyncio.get_running_loop()

    async def _wait(self, register: Callable, unregister: Callable) -> None:
        fut = self.loop.create_future()
        register(self.sock.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            unregister(self.sock.fileno())

    async def _fill(self) -> None:
        while True:
            try:
                if self.kernel_stamps:
                    data, ancillary, _flags, _addr = self.sock.recvmsg(65536, _ANCILLARY_SPACE)
                else:
                    data, ancillary = self.sock.recv(65536), []
            except (BlockingIOError, InterruptedError):
                await self._wait(self.loop.add_reader, self.loop.remove_reader)
                continue
            self.rx_ns = _stamp_from(ancillary)
            if not data:
                self.eof = True
            else:
                self.buffer += data
            return

    async def peek(self) -> bytes | None:
        while not self.buffer:
            if self.eof:
                return None
            await self._fill()
        return bytes(self.buffer[:8])

    async def readuntil(self, separator: bytes) -> bytes:
        while True:
            index = self.buffer.find(separator)
            if index >= 0:
                end = index + len(separator)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            if self.eof or len(self.buffer) > 1 << 20:
                raise _BadRequest()
            await self._fill()

    async def readexactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if self.eof:
                raise asyncio.IncompleteReadError(bytes(self.buffer), count)
            await self._fill()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def read_some(self) -> bytes:
        if not self.buffer and not self.eof:
            await self._fill()
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def write(self, data: bytes) -> int:
        """Send everything; returns the stamp taken just before the first send call."""
        stamp = time.perf_counter_ns()
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._wait(self.loop.add_writer, self.loop.remove_writer)
                continue
            view = view[sent:]
        return stamp

    def reset(self) -> None:
        """Abort with RST: SO_LINGER with a zero timeout makes close() discard and reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()


# Python does not export SO_TIMESTAMPNS; 35 is its value (== SCM_TIMESTAMPNS) in the generic
# Linux ABI used by x86, ARM and RISC-V (MIPS, SPARC, PA-RISC and Alpha number it differently).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", None) or (
    35 if sys.platform.startswith("linux")
    and platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "aarch64", "arm64", "armv7l", "riscv64")
    else None
)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def _stamp_from(ancillary: list[tuple[int, int, bytes]]) -> int:
    """Kernel receive time (CLOCK_REALTIME) moved onto the perf_counter_ns timeline."""
    now = time.perf_counter_ns()
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(payload)
            return min(now, now - (time.time_ns() - (seconds * 1_000_000_000 + nanos)))
    return now


def _simple_response(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\ncontent-type: application/json\r\n\r\n"
    ).encode() + body


# ---------------------------------------------------------------------- response builders

def json_response(status: int, obj: Any, *, headers: dict[str, str] | None = None, head_delay_s: float = 0.0) -> ScriptedResponse:
    return ScriptedResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=jsonlib.dumps(obj).encode(),
        head_delay_s=head_delay_s,
    )


def html_response(status: int, html: str = "<html><body><h1>502 Bad Gateway</h1></body></html>", *, headers: dict[str, str] | None = None) -> ScriptedResponse:
    return ScriptedResponse(
        status=status, headers={"content-type": "text/html", **(headers or {})}, body=html.encode()
    )


def sse_event(data: Any, *, event: str | None = None) -> bytes:
    """One SSE event; `data` is JSON-encoded unless it is already str/bytes."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = jsonlib.dumps(data, separators=(",", ":")).encode()
    prefix = b"event: " + event.encode() + b"\n" if event else b""
    return prefix + b"data: " + payload + b"\n\n"


def sse_frames(events: Iterable[tuple[float, Any] | tuple[float, Any, bool]]) -> list[Frame]:
    """[(delay_s, payload[, token])...] -> Frames, each payload one SSE `data:` event."""
    frames = []
    for item in events:
        delay, payload, *rest = item
        frames.append(Frame(delay, sse_event(payload), token=bool(rest and rest[0])))
    return frames


def openai_chunk(delta: dict[str, Any] | None = None, *, finish_reason: str | None = None,
                 usage: dict[str, Any] | None = None, choices: Any = ..., model: str = "test-model") -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": model,
    }
    if choices is ...:
        choices = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
    chunk["choices"] = choices
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def openai_stream(
    *,
    ttft_s: float,
    gap_s: float,
    n_tokens: int,
    role_only_first_chunk: bool = True,
    include_usage: bool = True,
    usage_tokens: int | None = None,
    finish_reason: str | None = "stop",
    done: bool = True,
    token_text: Callable[[int], str] = lambda i: f"tok{i} ",
    field_name: str = "content",
) -> list[Frame]:
    """Frames of an OpenAI chat-completions stream, timed from the response head.

    With the head sent at once (head_delay_s=0), the first token frame goes out `ttft_s` after
    the request was read and each further token `gap_s` after the previous one. A role-only first
    chunk (as OpenAI sends) goes out immediately and is NOT a token. `usage_tokens` (default
    n_tokens) is what the final usage chunk reports.
    """
    frames: list[Frame] = []
    elapsed = 0.0
    if role_only_first_chunk:
        frames.append(Frame(0.0, sse_event(openai_chunk({"role": "assistant", "content": "", "refusal": None}))))
    for i in range(n_tokens):
        delay = ttft_s - elapsed if i == 0 else gap_s
        elapsed += delay
        delta: dict[str, Any] = {field_name: token_text(i)}
        if i == 0 and not role_only_first_chunk:
            delta["role"] = "assistant"
        frames.append(Frame(delay, sse_event(openai_chunk(delta)), token=True))
    if finish_reason is not None:
        frames.append(Frame(0.0, sse_event(openai_chunk({}, finish_reason=finish_reason))))
    if include_usage:
        tokens = n_tokens if usage_tokens is None else usage_tokens
        usage = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
        frames.append(Frame(0.0, sse_event(openai_chunk(choices=[], usage=usage))))
    if done:
        frames.append(Frame(0.0, b"data: [DONE]\n\n"))
    return frames


def unused_port() -> int:
    """A loopback port nobody listens on (bound then released; connecting gets RST)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sse_stream_response(frames: Sequence[Frame], **kw: Any) -> ScriptedResponse:
    return ScriptedResponse(status=200, headers={"content-type": "text/event-stream"}, frames=list(frames), **kw)
