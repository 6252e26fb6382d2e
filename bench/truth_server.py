"""The benchmarks' ground truth: the loopback OpenAI-style stream server in its own process.

`TruthServer` starts `python -m bench.truth_server` (a `monitor.testing.stream_server`
`StreamServer` on 127.0.0.1) as a child process, so the load on the measuring side cannot move
the server's stamps; `perf_counter_ns` is CLOCK_MONOTONIC, shared by all processes on Linux.

- `GET /v1/models` answers a probe's warm-up.
- `POST /v1/chat/completions` streams an OpenAI-style answer with usage and `[DONE]`. Its shape
  (TTFT, token gap, token count) is the request body's `bench_stream` object (`StreamShape`)
  when present, otherwise the one the server was started with.
- `GET /_bench/truth` returns one record per chat request served since the previous call (and
  forgets them, so a long run does not keep every request in memory): the request body's
  `model` and `user`, the kernel arrival time of its last bytes (`received_ns`), the send time
  of each token frame (`token_ns`), the scheduled TTFT and token count, and from those the true
  TTFT (`ttft_truth_s`) and decode rate (`tokens_per_second_truth`).
"""

from __future__ import annotations

import argparse
import functools
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.processes import Child

CHAT_PATH = "/v1/chat/completions"
TRUTH_PATH = "/_bench/truth"


@dataclass(frozen=True)
class StreamShape:
    """What the server sends for one request: first token after `ttft_s`, then `n_tokens - 1`
    more tokens `gap_s` apart. Sent as the body's `bench_stream` object."""

    ttft_s: float
    gap_s: float
    n_tokens: int


class TruthServer:
    """The stream server as a child process, stopped by its own pid; `fetch()` reads the truth."""

    def __init__(self, *, ttft_s: float = 0.3, gap_s: float = 0.015, tokens: int = 48,
                 log_path: Path | None = None) -> None:
        self.default_shape = StreamShape(ttft_s, gap_s, tokens)
        self._log_path = log_path
        self._child: Child | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL to configure a probe with."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int:
        assert self._child is not None
        return self._child.pid

    def start(self) -> "TruthServer":
        shape = self.default_shape
        child = Child([sys.executable, "-m", "bench.truth_server", f"--ttft={shape.ttft_s}",
                       f"--gap={shape.gap_s}", f"--tokens={shape.n_tokens}"],
                      log_path=self._log_path, stdout=subprocess.PIPE)
        assert child.proc.stdout is not None
        line = child.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            child.stop()
            raise RuntimeError(f"the truth server did not start: {line!r}\n{child.log_tail()}")
        self._child = child
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()

    def __enter__(self) -> "TruthServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fetch(self) -> list[dict[str, Any]]:
        """Records of the chat requests served since the previous fetch, in arrival order."""
        import httpx

        response = httpx.get(f"{self.url}{TRUTH_PATH}", timeout=60.0)
        response.raise_for_status()
        return response.json()


def by_model(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records with a first token, grouped by the request's `model`, each list in arrival order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["received_ns"]):
        if record["model"] is not None and record["ttft_truth_s"] is not None:
            grouped.setdefault(record["model"], []).append(record)
    return grouped


# --------------------------------------------------------------------------- the server process

def serve(default: StreamShape) -> None:
    """Run the server until SIGTERM/SIGINT; print `PORT <n>` once it listens."""
    from monitor.testing.stream_server import (
        ScriptedResponse,
        ServedRequest,
        StreamServer,
        json_response,
        openai_stream,
        sse_stream_response,
    )

    @functools.lru_cache(maxsize=4096)
    def frames_of(shape: StreamShape) -> tuple:
        return tuple(openai_stream(ttft_s=shape.ttft_s, gap_s=shape.gap_s, n_tokens=shape.n_tokens))

    def shape_of(request: ServedRequest) -> StreamShape:
        body = request.json if isinstance(request.json, dict) else {}
        asked = body.get("bench_stream")
        if not isinstance(asked, dict):
            return default
        return StreamShape(float(asked.get("ttft_s", default.ttft_s)), float(asked.get("gap_s", default.gap_s)),
                           int(asked.get("n_tokens", default.n_tokens)))

    def chat(request: ServedRequest) -> ScriptedResponse:
        return sse_stream_response(frames_of(shape_of(request)))

    def record(request: ServedRequest) -> dict[str, Any]:
        body = request.json if isinstance(request.json, dict) else {}
        shape = shape_of(request)
        token_ns = request.token_ns
        return {
            "model": body.get("model"),
            "user": body.get("user"),
            "received_ns": request.received_ns,
            "token_ns": token_ns,
            "scheduled_ttft_s": shape.ttft_s,
            "usage_tokens": shape.n_tokens,
            "ttft_truth_s": request.ttft_truth_s() if token_ns else None,
            "tokens_per_second_truth": request.decode_rate_truth(shape.n_tokens),
        }

    server = StreamServer(backlog=4096)

    def truth(_request: ServedRequest) -> ScriptedResponse:
        # Runs on the server's own loop, which is also what appends to `server.requests`.
        served = server.requests[:]
        del server.requests[:len(served)]
        return json_response(200, [record(r) for r in served if r.method == "POST" and r.path == CHAT_PATH])

    server.route("GET", "/v1/models", json_response(200, {"object": "list", "data": []}))
    server.route("POST", CHAT_PATH, chat)
    server.route("GET", TRUTH_PATH, truth)
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(f"PORT {server.port}", flush=True)
        while not stop:
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.truth_server",
                                     description="loopback OpenAI-style stream server with ground truth")
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--gap", type=float, default=0.015, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=48, help="tokens per answer")
    args = parser.parse_args(argv)
    serve(StreamShape(args.ttft, args.gap, args.tokens))


if __name__ == "__main__":
    main()
