"""Resolving catalog endpoints against an environment: ${VAR} expansion, keys, config_error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.catalog import EndpointConfig, catalog_warnings, load_catalog, parse_catalog
from monitor.probes.base import ProbeTarget, Secret

SEED_CONFIG = Path(__file__).parents[2] / "config" / "endpoints.yaml"
KEY = "cf-SECRET-token-value-4242"
ACCOUNT = "0123456789abcdef"

CLOUDFLARE = EndpointConfig(
    provider="Cloudflare",
    protocol="cloudflare",
    base_url="https://api.cloudflare.com/client/v4/accounts/${CLOUDFLARE_ACCOUNT_ID}/ai",
    model="@cf/meta/llama-3.2-1b-instruct",
    api_key_env="CLOUDFLARE_API_TOKEN",
    interval_s=1800.0,
    timeout_s=45.0,
    max_tokens=64,
    options={"max_tokens_field": "max_tokens", "extra": {"stop": ["\n"]}},
)


def test_full_environment_gives_a_ready_target() -> None:
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": KEY})
    assert target == ProbeTarget(
        protocol="cloudflare",
        base_url=f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai",
        model="@cf/meta/llama-3.2-1b-instruct",
        api_key=Secret(KEY),
        api_key_env="CLOUDFLARE_API_TOKEN",
        config_error=None,
        max_tokens=64,
        timeout_s=45.0,
        options={"max_tokens_field": "max_tokens", "extra": {"stop": ["\n"]}},
        redact=(Secret(ACCOUNT),),
    )
    assert KEY not in repr(target)


def test_target_options_are_plain_json_and_a_copy() -> None:
    target = CLOUDFLARE.to_target({})
    assert json.loads(json.dumps(target.options)) == {"max_tokens_field": "max_tokens", "extra": {"stop": ["\n"]}}
    target.options["extra"]["stop"].append("x")
    assert CLOUDFLARE.options["extra"]["stop"] == ("\n",)


def test_unset_url_variable_gives_config_error_not_an_exception() -> None:
    target = CLOUDFLARE.to_target({"CLOUDFLARE_API_TOKEN": KEY})
    assert target.config_error == "environment variable CLOUDFLARE_ACCOUNT_ID is not set"
    assert target.api_key == Secret(KEY)


def test_unset_key_variable_gives_config_error() -> None:
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT})
    assert target.config_error == "environment variable CLOUDFLARE_API_TOKEN is not set (nor CLOUDFLARE_API_TOKEN_FILE)"
    assert target.api_key is None
    assert target.base_url.endswith(f"/accounts/{ACCOUNT}/ai")


def test_empty_environment_names_every_missing_variable() -> None:
    target = CLOUDFLARE.to_target({})
    assert target.config_error == (
        "environment variable CLOUDFLARE_ACCOUNT_ID is not set; "
        "environment variable CLOUDFLARE_API_TOKEN is not set (nor CLOUDFLARE_API_TOKEN_FILE)"
    )


def test_blank_variables_count_as_missing() -> None:
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": "  ", "CLOUDFLARE_API_TOKEN": ""})
    assert target.config_error == (
        "environment variable CLOUDFLARE_ACCOUNT_ID is empty; "
        "environment variable CLOUDFLARE_API_TOKEN is empty (nor CLOUDFLARE_API_TOKEN_FILE)"
    )


def test_key_is_stripped_of_surrounding_whitespace() -> None:
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": f" {KEY}\n"})
    assert target.api_key == Secret(KEY)


def test_key_from_file_named_by_the_FILE_variable(tmp_path: Path) -> None:
    key_file = tmp_path / "cf_token"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN_FILE": str(key_file)})
    assert target.config_error is None
    assert target.api_key == Secret(KEY)


def test_key_variable_wins_over_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "cf_token"
    key_file.write_text("from-the-file", encoding="utf-8")
    target = CLOUDFLARE.to_target(
        {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": KEY, "CLOUDFLARE_API_TOKEN_FILE": str(key_file)}
    )
    assert target.api_key == Secret(KEY)


def test_missing_key_file_gives_config_error(tmp_path: Path) -> None:
    target = CLOUDFLARE.to_target(
        {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN_FILE": str(tmp_path / "absent")}
    )
    assert target.config_error == "cannot read the key file named by CLOUDFLARE_API_TOKEN_FILE: No such file or directory"
    assert target.api_key is None


def test_empty_key_file_gives_config_error(tmp_path: Path) -> None:
    key_file = tmp_path / "cf_token"
    key_file.write_text(" \n", encoding="utf-8")
    target = CLOUDFLARE.to_target({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN_FILE": str(key_file)})
    assert target.config_error == "the key file named by CLOUDFLARE_API_TOKEN_FILE is empty"


def test_keyless_endpoint_needs_no_environment() -> None:
    local = EndpointConfig(provider="Ollama", protocol="ollama", base_url="http://127.0.0.1:11434/", model="llama3.2:1b")
    target = local.to_target({})
    assert target.config_error is None
    assert target.api_key is None and target.api_key_env is None
    assert target.base_url == "http://127.0.0.1:11434"  # trailing slash dropped: protocols append paths
    assert (target.max_tokens, target.timeout_s) == (128, 60.0)


def test_model_name_placeholders_expand_too() -> None:
    endpoint = EndpointConfig(
        provider="Azure", protocol="openai", base_url="https://${AZURE_HOST}/openai/v1", model="${AZURE_DEPLOYMENT}"
    )
    target = endpoint.to_target({"AZURE_HOST": "example.openai.azure.com", "AZURE_DEPLOYMENT": "llama-1b"})
    assert (target.base_url, target.model, target.config_error) == (
        "https://example.openai.azure.com/openai/v1", "llama-1b", None,
    )
    assert endpoint.to_target({"AZURE_HOST": "h"}).config_error == "environment variable AZURE_DEPLOYMENT is not set"
    assert endpoint.variables() == ("AZURE_HOST", "AZURE_DEPLOYMENT")
    assert CLOUDFLARE.variables() == ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN")


def test_expanded_url_that_is_not_a_url_gives_config_error_without_the_value() -> None:
    endpoint = EndpointConfig(provider="A", protocol="openai", base_url="${UPSTREAM_URL}/v1", model="m")
    target = endpoint.to_target({"UPSTREAM_URL": "not a url"})
    assert target.config_error == "base_url is not a valid http(s) URL after expanding environment variables"
    assert endpoint.to_target({"UPSTREAM_URL": "https://relay.example"}).base_url == "https://relay.example/v1"


def test_seed_config_on_a_fresh_machine_warns_with_names_only() -> None:
    catalog = load_catalog(SEED_CONFIG)
    assert catalog_warnings(catalog, {}) == [
        "meta-llama/llama-3.2-1b-instruct via Cloudflare: environment variable CLOUDFLARE_ACCOUNT_ID is not set; "
        "environment variable CLOUDFLARE_API_TOKEN is not set (nor CLOUDFLARE_API_TOKEN_FILE) "
        "(probes will fail with config_error)"
    ]
    assert catalog_warnings(catalog, {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": KEY}) == []


def test_warnings_never_contain_environment_values(tmp_path: Path) -> None:
    catalog = parse_catalog(
        """\
models:
  - id: m
    endpoints:
      - {provider: A, protocol: openai, base_url: 'https://${HOST_A}/v1', model: m, api_key_env: KEY_A}
      - {provider: B, protocol: openai, base_url: 'https://b.example/v1', model: m, api_key_env: KEY_B}
      - {provider: C, protocol: ollama, base_url: 'http://127.0.0.1:11434', model: m}
"""
    )
    environ = {"KEY_A": KEY, "KEY_B_FILE": str(tmp_path / "missing-" / KEY)}
    warnings = catalog_warnings(catalog, environ)
    assert warnings == [
        "m via A: environment variable HOST_A is not set (probes will fail with config_error)",
        "m via B: cannot read the key file named by KEY_B_FILE: No such file or directory "
        "(probes will fail with config_error)",
    ]
    assert not any(KEY in line for line in warnings)


@pytest.mark.parametrize("environ", [{}, {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT}])
def test_to_target_never_raises_for_missing_configuration(environ: dict[str, str]) -> None:
    assert CLOUDFLARE.to_target(environ).config_error


@pytest.mark.parametrize(
    ("template", "environ", "expanded"),
    [
        ("${UPSTREAM_URL}", {"UPSTREAM_URL": "http://127.0.0.1:8080/v1"}, "http://127.0.0.1:8080/v1"),
        ("${UPSTREAM_URL}/v1", {"UPSTREAM_URL": "https://relay.example"}, "https://relay.example/v1"),
        ("${SCHEME}://relay.example/v1", {"SCHEME": "https"}, "https://relay.example/v1"),
        ("http://${HOST}:${PORT}/v1", {"HOST": "127.0.0.1", "PORT": "8080"}, "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:${PORT}", {"PORT": "11434"}, "http://127.0.0.1:11434"),
    ],
)
def test_a_placeholder_may_stand_for_the_whole_url_its_scheme_or_its_port(template, environ, expanded) -> None:
    catalog = parse_catalog(f"models:\n  - id: m\n    endpoints:\n      - {{provider: A, protocol: openai, "
                            f"base_url: '{template}', model: m}}\n")
    [(_, endpoint)] = catalog.endpoints()
    assert endpoint.to_target(environ).base_url == expanded
    assert endpoint.to_target(environ).config_error is None
    assert endpoint.to_target({}).config_error is not None  # unset: config_error, never a crash


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not a url", "is not a valid http(s) URL"),
        ("ftp://relay.example", "is not a valid http(s) URL"),
        ("https://user:pw@relay.example", "credentials in the URL are not allowed"),
        ("https://relay.example/v1?api_key=abc", "a key in the URL query is not allowed"),
    ],
)
def test_an_expanded_url_is_checked_like_a_literal_one_without_echoing_it(value, problem) -> None:
    endpoint = EndpointConfig(provider="A", protocol="openai", base_url="${UPSTREAM_URL}", model="m")
    error = endpoint.to_target({"UPSTREAM_URL": value}).config_error
    assert problem in error and value not in error


# --------------------------------------------------------------------------- one resolver


def probe_args(*argv: str):
    import argparse

    from monitor.probes import cli

    parser = argparse.ArgumentParser(prog="probe")
    cli.add_arguments(parser)
    return cli.target_from_args, parser.parse_args(list(argv))


@pytest.mark.parametrize("environ", [
    {"MY_KEY": f" {KEY}\n"},
    {"MY_KEY_FILE": "<file>"},
    {},
    {"MY_KEY": "two\nlines"},
])
def test_the_cli_and_the_catalog_resolve_the_same_settings_to_the_same_target(environ, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    environ = {name: str(key_file) if value == "<file>" else value for name, value in environ.items()}
    to_target, args = probe_args("--protocol", "openai", "--base-url", "http://127.0.0.1:8080/v1/",
                                 "--model", "m", "--api-key-env", "MY_KEY", "--max-tokens", "32",
                                 "--timeout", "5", "--option", "max_tokens_field=max_completion_tokens")
    endpoint = EndpointConfig(provider="P", protocol="openai", base_url="http://127.0.0.1:8080/v1/", model="m",
                              api_key_env="MY_KEY", max_tokens=32, timeout_s=5.0,
                              options={"max_tokens_field": "max_completion_tokens"})
    assert to_target(args, environ) == endpoint.to_target(environ)


def test_connect_and_stall_bounds_never_exceed_the_timeout() -> None:
    short = EndpointConfig(provider="P", protocol="openai", base_url="http://h/v1", model="m", timeout_s=5.0)
    assert (short.to_target({}).connect_timeout_s, short.to_target({}).stall_timeout_s) == (5.0, 5.0)
    long = EndpointConfig(provider="P", protocol="openai", base_url="http://h/v1", model="m", timeout_s=120.0)
    assert (long.to_target({}).connect_timeout_s, long.to_target({}).stall_timeout_s) == (10.0, 30.0)


# --------------------------------------------------------------------------- what a key may be
# One trailing line break is dropped; a second line, a control or a non-ASCII character is a
# config_error naming the variable, never the value.

ENDPOINT = EndpointConfig(provider="P", protocol="openai", base_url="https://h.example/v1", model="m",
                          api_key_env="MY_KEY")


@pytest.mark.parametrize("text", [f"{KEY}\n", f"{KEY}\r\n", f"  {KEY}\t\n", KEY])
def test_one_trailing_line_break_and_surrounding_blanks_are_dropped(text, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(text.encode())
    for environ in ({"MY_KEY": text}, {"MY_KEY_FILE": str(key_file)}):
        target = ENDPOINT.to_target(environ)
        assert (target.api_key, target.config_error) == (Secret(KEY), None)


@pytest.mark.parametrize(("text", "problem"), [
    (f"{KEY}\nsecond-line-of-the-file", "has more than one line"),
    (f"{KEY}\n\n", "has more than one line"),
    (f"{KEY}\rtail", "has more than one line"),
    (f"{KEY}\x00", "contains a space, control or non-ASCII character"),
    (f"{KEY}\x1b[0m", "contains a space, control or non-ASCII character"),
    (f"{KEY}\u00e9", "contains a space, control or non-ASCII character"),
    (f"{KEY}\u2028", "contains a space, control or non-ASCII character"),
    (f"{KEY} {KEY}", "contains a space, control or non-ASCII character"),
])
def test_a_key_that_cannot_be_one_header_line_is_a_config_error_naming_only_the_variable(text, problem, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(text.encode())
    from_env = ENDPOINT.to_target({"MY_KEY": text})
    from_file = ENDPOINT.to_target({"MY_KEY_FILE": str(key_file)})
    assert from_env.config_error.startswith(f"the key in environment variable MY_KEY {problem}")
    assert from_file.config_error.startswith(f"the key in the key file named by MY_KEY_FILE {problem}")
    for target in (from_env, from_file):
        assert target.api_key is None
        assert KEY not in target.config_error and "second-line" not in target.config_error


def test_a_key_file_that_is_a_device_or_too_large_is_refused_unread(tmp_path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"k" * (64 * 1024 + 1))
    zero_link = tmp_path / "zero"
    zero_link.symlink_to("/dev/zero")
    assert ENDPOINT.to_target({"MY_KEY_FILE": str(zero_link)}).config_error == (
        "cannot read the key file named by MY_KEY_FILE: not a regular file")
    assert ENDPOINT.to_target({"MY_KEY_FILE": str(big)}).config_error == (
        "cannot read the key file named by MY_KEY_FILE: larger than the limit of 65,536 bytes")


# --------------------------------------------------------------------------- redact


def test_expanded_placeholder_values_are_to_be_redacted_like_the_key() -> None:
    endpoint = EndpointConfig(provider="A", protocol="openai", model="${DEPLOYMENT}",
                              base_url="https://${HOST}:${PORT}/accounts/${ACCOUNT_ID}/v1/${DEPLOYMENT}")
    target = endpoint.to_target({"HOST": "relay.example", "PORT": "443", "ACCOUNT_ID": f" {ACCOUNT} ",
                                 "DEPLOYMENT": "my-deployment"})
    assert target.config_error is None
    # In order of appearance, each once; a port is too short to be worth scrubbing.
    assert target.redact == (Secret("relay.example"), Secret(ACCOUNT), Secret("my-deployment"))
    assert ENDPOINT.to_target({"MY_KEY": KEY}).redact == ()  # literal URL and model: nothing to redact
