"""The conformance suite every registered protocol must pass, whatever its wire format.

`ProtocolConformance` is a test class without a `Test` prefix (so it is not collected here): a
test module subclasses it and supplies two fixtures, `name` (a protocol registered in
`monitor.probes.registry`) and `kit` (a `Kit`: a clean stream and one carrying an error event).
`tests/probes/test_conformance.py` runs it over every registered protocol with `KITS`;
`tests/probes/test_extending.py` runs it over a protocol registered by the test itself.

What it checks: the declaration (name, framing, options model, warm-up URL, a streaming request
that carries the prompt and max_tokens), the transcripts decoding identically at every read
boundary, and, over a real loopback socket, a clean stream, an error event, a garbled event, a
stream cut inside an event and a stream that ends (EOF) before its end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pydantic
import pytest

from monitor.probes.base import ErrorKind, Framing, ProbeTarget, ProtocolOptions, TokenCountSource, WireProtocol
from monitor.probes.engine import run_probe
from monitor.probes.registry import PROTOCOLS
from tests.probes.support import event_ends, read_fixture, replay_bytes
from monitor.testing.stream_server import Frame, ScriptedResponse

PROMPT = "PROMPT-conformance-7f3a"
MAX_TOKENS = 137


@dataclass(frozen=True)
class Kit:
    """What the suite feeds a protocol: a complete clean stream, and a stream that carries an
    in-band error event saying `error_text`."""

    clean: bytes
    error: bytes
    error_text: str


KITS = {
    "openai": Kit(read_fixture("openai_chat_stream_len1.sse"), read_fixture("openrouter_midstream_error.sse"),
                  "Provider disconnected unexpectedly"),
    "cloudflare": Kit(read_fixture("cloudflare_workers_ai_native.sse"),
                      read_fixture("synthetic_cloudflare_error_envelope.sse"),
                      "3040: Capacity temporarily exceeded, please try again."),
    "anthropic": Kit(read_fixture("anthropic_basic_stream.sse"), read_fixture("synthetic_anthropic_midstream_error.sse"),
                     "overloaded_error: Overloaded"),
    "gemini": Kit(read_fixture("gemini_basic_stream.sse"), read_fixture("synthetic_gemini_midstream_error.sse"),
                  "503 UNAVAILABLE: The model is overloaded"),
    "ollama": Kit(read_fixture("ollama_chat_stream.ndjson"), read_fixture("ollama_generate_midstream_error.ndjson"),
                  "an error was encountered while running the model"),
}

_GARBLED = {Framing.SSE: b'data: {"garbled": \n\n', Framing.NDJSON: b'{"garbled": \n'}
_CONTENT_TYPES = {Framing.SSE: "text/event-stream", Framing.NDJSON: "application/x-ndjson"}
_ACCEPT = {Framing.SSE: "event-stream", Framing.NDJSON: "ndjson"}


def _numbers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]


class ProtocolConformance:
    """Subclass it and provide the `name` and `kit` fixtures."""

    @pytest.fixture
    def protocol(self, name: str) -> WireProtocol:
        return PROTOCOLS[name]

    def target(self, name: str, base_url: str = "https://provider.example/base") -> ProbeTarget:
        return ProbeTarget(protocol=name, base_url=base_url, model="conformance-model", max_tokens=MAX_TOKENS,
                           timeout_s=5.0, stall_timeout_s=5.0)

    # ------------------------------------------------------------------------ the declaration

    def test_declaration(self, name, protocol):
        assert protocol.name == name
        assert isinstance(protocol.framing, Framing)
        assert issubclass(protocol.options_model, ProtocolOptions)
        protocol.options_model()  # every option has a default
        with pytest.raises(pydantic.ValidationError):
            protocol.options_model(no_such_knob=1)
        t = self.target(name)
        warmup = protocol.warmup_url(t)
        assert warmup is None or urlsplit(warmup).netloc == "provider.example"
        if protocol.warmup_headers is not None:
            assert all(isinstance(v, str) for v in protocol.warmup_headers(t).values())

    def test_build_request_asks_for_a_stream_with_the_prompt_and_max_tokens(self, name, protocol):
        spec = protocol.build_request(self.target(name), PROMPT)
        assert urlsplit(spec.url).netloc == "provider.example"
        assert PROMPT in json.dumps(spec.json)
        assert MAX_TOKENS in _numbers(dict(spec.json))
        accept = {k.lower(): v for k, v in spec.headers.items()}.get("accept", "")
        assert _ACCEPT[protocol.framing] in accept

    def test_a_tool_call_request_when_declared_forces_the_tool_with_its_schema(self, name, protocol):
        # canary: protocols with a ToolCallWire build one non-streaming forced call; others have none
        if not protocol.supports_tool_call:
            assert protocol.tool_call is None
            return
        from monitor.probes.base import StreamDataError, ToolSpec

        tool = ToolSpec("conformance_tool", "a tool", {"type": "object", "properties": {"x": {"type": "string"}}})
        spec = protocol.tool_call.build_request(self.target(name), PROMPT, tool)
        assert urlsplit(spec.url).netloc == "provider.example"
        text = json.dumps(spec.json)
        assert PROMPT in text and "conformance_tool" in text and '"x"' in text
        assert MAX_TOKENS in _numbers(dict(spec.json))
        assert spec.json.get("stream") in (None, False)
        with pytest.raises(StreamDataError):
            protocol.tool_call.parse_response("not an object")

    # ------------------------------------------------------------------------ pure decoding

    def test_transcripts_decode_alike_at_every_read_boundary(self, protocol, kit):
        clean = replay_bytes(protocol, kit.clean)
        assert clean.token_events > 0 and clean.errors == []
        errored = replay_bytes(protocol, kit.error)
        assert any(kit.error_text in e for e in errored.errors)

    # ------------------------------------------------------------------------ over a real socket

    async def probe(self, server, client, name, protocol, body: bytes):
        base = f"{server.url}/base"
        path = urlsplit(protocol.build_request(self.target(name, base), PROMPT).url).path
        server.route("POST", path, ScriptedResponse(
            status=200, headers={"content-type": _CONTENT_TYPES[protocol.framing]}, frames=[Frame(0.0, body)]))
        return await run_probe(client, self.target(name, base))

    async def test_clean_stream(self, server, client, name, protocol, kit):
        expected = replay_bytes(protocol, kit.clean)
        result = await self.probe(server, client, name, protocol, kit.clean)
        assert result.ok, result.error
        assert result.token_chunks == expected.token_events and result.ttft_s is not None
        if expected.usage is not None:
            assert (result.output_tokens, result.token_count_source) == (expected.usage, TokenCountSource.USAGE)
        assert result.finish_reason == expected.finish_reason

    async def test_error_event(self, server, client, name, protocol, kit):
        result = await self.probe(server, client, name, protocol, kit.error)
        assert result.error_kind == ErrorKind.STREAM_ERROR and kit.error_text in result.error
        assert result.http_status == 200

    async def test_garbled_event(self, server, client, name, protocol, kit):
        first_end = event_ends(protocol, kit.clean)[0][0]
        body = kit.clean[:first_end] + _GARBLED[protocol.framing] + kit.clean[first_end:]
        result = await self.probe(server, client, name, protocol, body)
        assert result.error_kind == ErrorKind.STREAM_ERROR and "malformed stream event" in result.error

    def _terminal(self, protocol, kit) -> int:
        """Index of the event that completes the clean stream (end marker or finish reason)."""
        for index, (_end, event) in enumerate(event_ends(protocol, kit.clean)):
            delta = protocol.parse_event(event)  # type: ignore[arg-type]
            if delta is not None and (delta.done if protocol.requires_end_marker else delta.finish_reason):
                return index
        raise AssertionError("the clean stream has no end")

    async def test_stream_cut_inside_an_event(self, server, client, name, protocol, kit):
        ends = event_ends(protocol, kit.clean)
        for index in range(self._terminal(protocol, kit) + 1):
            start = ends[index - 1][0] if index else 0
            chunk = kit.clean[start:ends[index][0]]
            opening = min(i for i in (chunk.find(b"{"), chunk.find(b"[")) if i >= 0)
            body = kit.clean[:start + opening + 2]
            result = await self.probe(server, client, name, protocol, body)
            assert result.error_kind == ErrorKind.STREAM_ERROR, (index, body[-60:], result.error)

    async def test_eof_before_the_end(self, server, client, name, protocol, kit):
        ends = event_ends(protocol, kit.clean)
        for index in range(self._terminal(protocol, kit)):
            body = kit.clean[:ends[index][0]]
            result = await self.probe(server, client, name, protocol, body)
            assert result.error_kind == ErrorKind.STREAM_ERROR, (index, result.error)
            assert "truncated" in result.error
