"""Seeded fuzzing of provider responses, from a loopback socket into both storage backends.

Each case is one probe against a loopback server answering with random hostile values where
providers put numbers and texts: usage counts (huge, negative, non-finite, wrong types), finish
reasons and answer texts (lone surrogates, NUL, non-UTF-8 bytes, megabytes of text, objects),
error bodies and Retry-After headers. Every result must be written to a SQLite file AND to a real
PostgreSQL database without any error, and read back equal and store-safe: finite floats,
integers within their columns, valid UTF-8 without NUL, bounded texts.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from monitor.probes.base import ProbeResult
from monitor.probes.engine import run_probe
from monitor.probes.sanitize import INT32_MAX
from monitor.store import open_store
from tests.probes.provider_streams import PROTOCOLS, Raw, chat_path, dumps, stream_route, target
from monitor.testing.stream_server import ScriptedResponse
from tests.probes.conftest import client, server  # noqa: F401 (fixtures)
from tests.store.conftest import create_postgres_database, drop_postgres_database, postgres_url

SEED = 20261201
CASES = 300

NUMBERS = [0, 1, -1, 7, 16, 40, 2**31 - 1, 2**31, -2**31 - 1, 2**63, -2**63, 10**30, 1e30, -1e30, 1.5,
           math.nan, math.inf, -math.inf, True, None, "12", "", [], {"n": 3}]
RETRY_AFTER = ["inf", "-inf", "nan", "1e308", "1e400", "-5", "0", "30", "99999999999999999999",
               "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "soon", "\xff\xfe", ""]


def hostile_text(rng: random.Random) -> object:
    pick = rng.randrange(10)
    if pick == 0:
        return "\ud800" + "x" * rng.randrange(5)
    if pick == 1:
        return "stop\x00" + "\x00" * rng.randrange(3)
    if pick == 2:
        return "y" * rng.choice([65, 241, 5_000, 300_000])
    if pick == 3:
        return Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24))))
    if pick == 4:
        return Raw(b"\xff\xfe\xc3\x28 \xed\xa0\x80")  # invalid UTF-8, an encoded surrogate
    if pick == 5:
        return rng.choice([5, 1e300, math.nan, True, ["stop"], {"reason": "stop"}])
    if pick == 6:
        return "\udfff\ud83d" + "\u202e" + "\ufffe"
    if pick == 7:
        return None
    return rng.choice(["stop", "length", "end_turn", "STOP", "tool_calls"])


def hostile_number(rng: random.Random) -> object:
    return rng.choice(NUMBERS) if rng.random() < 0.8 else rng.randrange(-10, 10**12)


def stream_case(rng: random.Random, protocol: str) -> tuple[str, ScriptedResponse]:
    words = []
    for _ in range(rng.randrange(0, 20)):
        word = hostile_text(rng) if rng.random() < 0.15 else f"w{rng.randrange(100)} "
        words.append(word)
    return stream_route(protocol, words=words, usage=hostile_number(rng), finish=hostile_text(rng), gap_s=0.0)


def error_case(rng: random.Random, protocol: str) -> tuple[str, ScriptedResponse]:
    status = rng.choice([400, 401, 403, 404, 429, 500, 503, 529])
    headers = {"content-type": rng.choice(["application/json", "text/html", "text/plain"])}
    if rng.random() < 0.7:
        headers[rng.choice(["retry-after", "retry-after-ms"])] = rng.choice(RETRY_AFTER)
    if rng.random() < 0.6:
        body = dumps({"error": {"message": hostile_text(rng), "code": hostile_number(rng)}})
    else:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    return chat_path(protocol), ScriptedResponse(status=status, headers=headers, body=body)


def assert_store_safe(result: ProbeResult) -> None:
    json.dumps(result.to_dict(), allow_nan=False)
    for name, value in vars(result).items():
        if isinstance(value, str):
            value.encode("utf-8")
            assert "\x00" not in value and len(value) <= 256, name
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            assert 0 <= value <= (2**63 - 1 if name == "stream_bytes" else INT32_MAX), (name, value)
        elif isinstance(value, float):
            assert math.isfinite(value) and value >= 0, (name, value)


@pytest.fixture
def postgres_database_url():
    """A fresh PostgreSQL database (a failure, not a skip, under CI=true when it is missing)."""
    name = create_postgres_database()
    yield postgres_url(name)
    drop_postgres_database(name)


@pytest.mark.timeout(120)
async def test_random_provider_values_are_stored_sanitised_in_both_backends(server, client, tmp_path, postgres_database_url):
    rng = random.Random(SEED)
    results: dict[str, list[ProbeResult]] = {protocol: [] for protocol in PROTOCOLS}
    for _ in range(CASES):
        protocol = rng.choice(PROTOCOLS)
        path, response = (stream_case if rng.random() < 0.7 else error_case)(rng, protocol)
        server.route("POST", path, response)
        result = await run_probe(client, target(protocol, server.url, max_tokens=rng.choice([1, 16, 128])))
        assert_store_safe(result)
        results[protocol].append(result)
    kinds = {r.error_kind for rs in results.values() for r in rs}
    assert None in kinds and len(kinds) >= 4, kinds  # the cases reach ok and several failure kinds

    for url in (f"sqlite:///{tmp_path / 'fuzz.db'}", postgres_database_url):
        store = await open_store(url)
        try:
            for protocol, written in results.items():
                for result in written:  # one row per write: a refusal would name its row
                    await store.insert_results([("fuzz/model", protocol, result)])
            for protocol, written in results.items():
                stored = await store.recent_results("fuzz/model", protocol, 1000)
                assert list(reversed(stored)) == written, f"{url.split(':')[0]} {protocol}"
                for result in stored:
                    assert_store_safe(result)
        finally:
            await store.close()
