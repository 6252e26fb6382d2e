"""A protocol added through the registry's public `registered` needs nothing else: the catalog
(what `check-config` runs) accepts it by name and lists it among the known protocols, and the
conformance suite, probes over a real loopback socket included, runs on it unchanged."""

from __future__ import annotations

import pytest

from monitor.catalog import CatalogError, load_catalog
from monitor.probes import wire
from monitor.probes.base import Delta, Framing, ProbeTarget, ProtocolOptions, RequestSpec, WireProtocol
from monitor.probes.registry import PROTOCOL_NAMES, registered
from tests.probes.conformance import Kit, ProtocolConformance


class EchoOptions(ProtocolOptions):
    shout: bool = False


def build_request(target: ProbeTarget, prompt: str) -> RequestSpec:
    shout = EchoOptions(**target.options).shout
    return RequestSpec(
        url=f"{wire.base_root(target)}/echo",
        headers={"accept": "application/x-ndjson", **wire.bearer_headers(target)},
        json={"input": prompt.upper() if shout else prompt, "limit": target.max_tokens, "stream": True},
    )


def parse_event(line: str) -> Delta | None:
    obj = wire.json_object(line, what="echo stream")
    if obj.get("error"):
        return Delta(error=str(obj["error"]))
    if obj.get("end") is True:
        return Delta(done=True, usage_output_tokens=wire.int_or_none(obj.get("tokens")),
                     finish_reason=wire.optional_text(obj.get("reason"), field="reason") or None)
    return wire.delta_or_none(content=wire.optional_text(obj.get("text"), field="text"))


ECHO = WireProtocol(name="echo", framing=Framing.NDJSON, build_request=build_request, parse_event=parse_event,
                    warmup_url=lambda target: None, options_model=EchoOptions)

CLEAN = b'{"text": "one"}\n{"text": ", two"}\n{"end": true, "tokens": 3, "reason": "stop"}\n'
ERROR = b'{"text": "one"}\n{"error": "echo chamber flooded"}\n'


@pytest.fixture
def name():
    with registered(ECHO):
        yield "echo"


@pytest.fixture
def kit() -> Kit:
    return Kit(clean=CLEAN, error=ERROR, error_text="echo chamber flooded")


class TestEchoConformance(ProtocolConformance):
    pass


CATALOG = """\
models:
  - id: echo-model
    endpoints:
      - provider: Echo
        protocol: {protocol}
        base_url: http://127.0.0.1:9/base
        model: echo-1
"""


def test_the_catalog_knows_it_exactly_while_it_is_registered(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text(CATALOG.format(protocol="echo"))
    with pytest.raises(CatalogError, match="unknown protocol 'echo'"):
        load_catalog(path)
    with registered(ECHO):
        assert "echo" in PROTOCOL_NAMES
        [model] = load_catalog(path).models
        assert model.endpoints[0].protocol == "echo"
        path.write_text(CATALOG.format(protocol="ecko"))
        with pytest.raises(CatalogError) as caught:
            load_catalog(path)
        assert "unknown protocol 'ecko'" in str(caught.value) and ", echo)" in str(caught.value)
    assert "echo" not in PROTOCOL_NAMES


def test_a_name_is_registered_once():
    with registered(ECHO):
        with pytest.raises(ValueError, match="already registered"):
            with registered(ECHO):
                pass
    assert "echo" not in PROTOCOL_NAMES
