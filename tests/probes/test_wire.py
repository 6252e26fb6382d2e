"""Helpers shared by the protocol modules: key headers, extra_body, JSON objects, coercions."""

from __future__ import annotations

import pytest

from monitor.probes.base import Delta, ProbeTarget, Secret, StreamDataError
from monitor.probes.wire import (
    base_root,
    bearer_headers,
    delta_or_none,
    int_or_none,
    json_object,
    key_headers,
    merge_extra_body,
    optional_text,
)


def target(**kw) -> ProbeTarget:
    return ProbeTarget(**{"protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", **kw})


def test_base_root_drops_trailing_slashes_only():
    assert base_root(target(base_url="https://h.example/v1//")) == "https://h.example/v1"
    assert base_root(target(base_url="https://h.example/v1")) == "https://h.example/v1"


@pytest.mark.parametrize("api_key", [None, Secret("")])
def test_no_key_means_no_header(api_key):
    assert key_headers(target(api_key=api_key), "x-api-key") == {}
    assert bearer_headers(target(api_key=api_key)) == {}


def test_key_headers_use_the_given_name_and_scheme():
    t = target(api_key=Secret("k-123"))
    assert key_headers(t, "x-goog-api-key") == {"x-goog-api-key": "k-123"}
    assert bearer_headers(t) == {"Authorization": "Bearer k-123"}
    assert bearer_headers(t, header="authorization") == {"authorization": "Bearer k-123"}


def test_extra_body_overrides_and_adds_keys():
    body = {"temperature": 0, "stream": True}
    merged = merge_extra_body(body, target(options={"extra_body": {"temperature": 0.6, "seed": 7}}))
    assert merged is body
    assert body == {"temperature": 0.6, "stream": True, "seed": 7}


@pytest.mark.parametrize("options", [{}, {"extra_body": None}, {"extra_body": {}}, {"extra_body": "seed=7"}])
def test_missing_or_non_mapping_extra_body_changes_nothing(options):
    assert merge_extra_body({"stream": True}, target(options=options)) == {"stream": True}


def test_json_object_decodes_an_object():
    assert json_object(' {"a": [1, 2]} ', what="Test stream") == {"a": [1, 2]}


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "invalid JSON in Test stream: '{not json'"),
    ("[1, 2]", "expected a JSON object in Test stream, got list"),
    ("null", "expected a JSON object in Test stream, got NoneType"),
])
def test_json_object_rejects_other_data_naming_the_stream(data, message):
    with pytest.raises(StreamDataError) as info:
        json_object(data, what="Test stream")
    assert str(info.value) == message


def test_json_object_quotes_at_most_80_characters():
    with pytest.raises(StreamDataError) as info:
        json_object("{" + "x" * 500, what="Test stream")
    assert str(info.value) == "invalid JSON in Test stream: " + repr("{" + "x" * 79)


@pytest.mark.parametrize(("value", "expected"), [(7, 7), (0, 0), (True, None), (False, None), (7.0, None),
                                                 ("7", None), (None, None)])
def test_int_or_none_accepts_real_ints_only(value, expected):
    assert int_or_none(value) == expected


def test_optional_text():
    assert optional_text("hi", field="text") == "hi"
    assert optional_text(None, field="text") == ""
    with pytest.raises(StreamDataError, match=r"^`delta.content` is int, expected a string$"):
        optional_text(3, field="delta.content")


def test_delta_or_none_drops_events_that_carry_nothing():
    assert delta_or_none() is None
    assert delta_or_none(content="", reasoning="", tool_call=False, finish_reason="") is None
    assert delta_or_none(usage_output_tokens=0) == Delta(usage_output_tokens=0)
    assert delta_or_none(finish_reason="stop") == Delta(finish_reason="stop")
    assert delta_or_none(tool_call=True) == Delta(tool_call=True)
    assert delta_or_none(content="a", reasoning="b") == Delta(content="a", reasoning="b")
