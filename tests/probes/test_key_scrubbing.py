"""No probe result ever carries a trace of the key or of a `redact` value, whatever the provider
echoes and wherever: an HTTP error body, `finish_reason`, a mid-stream error event; as is, in
part, re-cased, reversed, escaped or encoded. Over a real loopback socket, and in subprocesses
under several hash seeds (the scrubber's result must not depend on iteration order)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from monitor.probes.base import ProbeResult, ProbeTarget, Secret
from monitor.probes.engine import run_probe
from monitor.probes.outcomes import MIN_RUN, PROVIDER_TEXT_FIELDS, scrub
from monitor.testing.stream_server import (
    Frame,
    json_response,
    openai_chunk,
    sse_event,
    sse_stream_response,
)

CHAT = "/v1/chat/completions"
ROOT = Path(__file__).resolve().parents[2]

KEYS = {
    "url-reserved": "sk-proj/AbCdEf+GhIjKl=MnOp?q&r#s%tUvWxYz0123",
    "digits-only": "40417730529184436613",
    "google-like": "AIzaSyD-k3yW1thDash_and_Underscore09",
    "quotes-backslash": 'k"ey\\with\'quotes<and>&amp;-2024',
    "long": "sk-ant-api03-" + "Qx7" * 40 + "-AA",
}
# Header values are ASCII, so a non-ASCII secret is a redact value (what a `${VAR}` in the model
# or base URL expanded to), echoed like the key.
UNICODE_VALUE = "Kontø-Zürich-€-Ωmega-𝔘77"


def echoes(secret: str) -> dict[str, tuple[str, str]]:
    """Ways a provider may echo a secret: {form: (the echo, the part of it that is secret)}."""
    raw = secret.encode()
    basic = base64.b64encode(b"user:" + raw).decode()
    forms = {
        "raw": secret,
        "second-half": secret[len(secret) // 2:],
        "upper": secret.upper(),
        "reversed": secret[::-1],
        "urlsafe-base64": base64.urlsafe_b64encode(raw).decode(),
        "json-escaped": json.dumps(secret)[1:-1],
        "all-u-escaped": "".join(f"\\u{ord(c):04X}" for c in secret if ord(c) < 0x10000),
        "bytes-escaped": raw.decode("ascii", "backslashreplace"),
        "url-encoded": quote(secret, safe=""),
        "url-encoded-path": quote(secret),
        "form-encoded": quote_plus(secret),
    }
    echoed = {form: (echo, echo) for form, echo in forms.items()}
    # Its first 8 characters encode "user:" and the key's first byte; the rest is the key's.
    echoed["base64-in-basic-auth"] = ("Basic " + basic, basic[8:])
    return echoed


def runs(text: str, size: int = MIN_RUN) -> set[str]:
    folded = text.lower()
    return {folded[i:i + size] for i in range(len(folded) - size + 1)}


def assert_no_trace(result: ProbeResult, echoed: str, secret: str) -> None:
    dumped = json.dumps(result.to_dict(), ensure_ascii=False).lower()
    assert secret.lower() not in dumped
    leaked = sorted(run for run in runs(echoed) if run in dumped)
    assert not leaked, f"{leaked[:3]} left in {result.error!r} / {result.finish_reason!r}"


def target(url: str, key: str, **kw) -> ProbeTarget:
    return ProbeTarget(protocol="openai", base_url=f"{url}/v1", model="m", api_key=Secret(key),
                       api_key_env="K", timeout_s=5.0, stall_timeout_s=5.0, **kw)


def token(text: str = "hi") -> Frame:
    return Frame(0.0, sse_event(openai_chunk({"content": text})), token=True)


def responses(echo: str):
    yield "error-body", json_response(401, {"error": {"message": f"Incorrect API key provided: {echo}."}})
    yield "finish-reason", sse_stream_response([
        token(), Frame(0.0, sse_event(openai_chunk({}, finish_reason=echo))), Frame(0.0, b"data: [DONE]\n\n")])
    yield "error-event", sse_stream_response([
        token(), Frame(0.0, sse_event({"error": {"message": f"upstream rejected key {echo}"}}))])


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
async def test_an_echoed_key_leaves_no_trace_in_any_field(server, client, key):
    for form, (echo, secret_part) in echoes(key).items():
        for place, response in responses(echo):
            server.route("POST", CHAT, response)
            result = await run_probe(client, target(server.url, key))
            assert result.ok == (place == "finish-reason"), (form, place, result.error)
            try:
                assert_no_trace(result, secret_part, key)
            except AssertionError as exc:
                raise AssertionError(f"{form} echo in {place}: {exc}") from None


async def test_an_echoed_redact_value_leaves_no_trace(server, client):
    for form, (echo, secret_part) in echoes(UNICODE_VALUE).items():
        for place, response in responses(echo):
            server.route("POST", CHAT, response)
            result = await run_probe(client, target(server.url, "sk-plain-key-0001",
                                                    redact=(Secret(UNICODE_VALUE),)))
            try:
                assert_no_trace(result, secret_part, UNICODE_VALUE)
            except AssertionError as exc:
                raise AssertionError(f"{form} echo in {place}: {exc}") from None


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
async def test_a_key_cut_by_the_error_length_limit_leaves_no_leading_run(server, client, key):
    # The provider's message is cut to 240 characters; each padding lands the cut at another
    # point of the echoed key (leaving 4 up to all but two of its characters).
    for kept in (4, 5, 9, 17, len(key) - 2):
        padding = 239 - kept
        server.route("POST", CHAT, json_response(401, {"error": {"message": "x" * padding + key}}))
        result = await run_probe(client, target(server.url, key))
        assert result.error.endswith("…")
        assert key[:4].lower() not in result.error.lower(), (kept, result.error[-40:])


def test_every_text_field_of_a_result_is_scrubbed_or_comes_from_the_config():
    # A new text field must be added to PROVIDER_TEXT_FIELDS (or here, when the config sets it).
    from dataclasses import fields

    text_fields = {f.name for f in fields(ProbeResult) if "str" in str(f.type)}
    assert text_fields - set(PROVIDER_TEXT_FIELDS) == {"protocol", "model", "methodology", "location"}


def test_short_and_ordinary_text_is_left_alone():
    t = ProbeTarget(protocol="openai", base_url="http://x/v1", model="m", api_key=Secret("sk-abcdefgh12345678"),
                    redact=(Secret("ab"),))
    text = "HTTP 429: slow down, retry after 7 s (abc, 1234567)"
    assert scrub(text, t) == text
    assert scrub("key sk-abcdefgh12345678 and gh12345678!", t) == "key *** and ***!"


# ---------------------------------------------------------------------------- hash-seed independence

SEED_SCRIPT = r"""
import asyncio, json, sys
from monitor.probes.base import ProbeTarget, Secret
from monitor.probes.engine import run_probe
from monitor.probes.transport import build_client
from monitor.testing.stream_server import StreamServer, json_response

key = sys.argv[1]

async def main():
    with StreamServer() as server:
        server.route("POST", "/v1/chat/completions",
                     json_response(401, {"error": {"message": f"Incorrect API key provided: {key}"}}))
        async with build_client() as client:
            result = await run_probe(client, ProbeTarget(
                protocol="openai", base_url=server.url + "/v1", model="m", api_key=Secret(key), api_key_env="K"))
    print(json.dumps(result.to_dict()))

asyncio.run(main())
"""


def test_scrubbing_does_not_depend_on_the_hash_seed():
    key = KEYS["url-reserved"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {seed: subprocess.Popen([sys.executable, "-c", SEED_SCRIPT, key], cwd=ROOT, text=True,
                                    env={**env, "PYTHONHASHSEED": str(seed)},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for seed in range(8)}
    errors = {}
    for seed, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        errors[seed] = json.loads(out)["error"]
    assert set(errors.values()) == {"HTTP 401: Incorrect API key provided: ***"}, errors
