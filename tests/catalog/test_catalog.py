"""Catalog loading: the valid format, defaults, immutability, and every way a file can be wrong.

Each file under bad/ holds exactly ONE mistake and states the message it must produce on its
first line (`# expect: ...`); the table test checks the message and that nothing else is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from monitor.catalog import (
    Catalog,
    CatalogError,
    EndpointConfig,
    load_catalog,
    parse_catalog,
    parse_duration,
)

HERE = Path(__file__).parent
BAD_DIR = HERE / "bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
SEED_CONFIG = HERE.parents[1] / "config" / "endpoints.yaml"
INLINE_SECRET = "INLINESECRETVALUE0123456789"

SEED_YAML = """\
defaults: {interval: 30m, timeout: 60s, max_tokens: 128}
models:
  - id: meta-llama/llama-3.2-1b-instruct
    name: "Meta: Llama 3.2 1B Instruct"
    endpoints:
      - provider: Cloudflare
        protocol: cloudflare
        base_url: https://api.cloudflare.com/client/v4/accounts/${CLOUDFLARE_ACCOUNT_ID}/ai
        model: "@cf/meta/llama-3.2-1b-instruct"
        api_key_env: CLOUDFLARE_API_TOKEN
"""


def expected_message(path: Path) -> str:
    first_line = path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    match = re.fullmatch(r"# expect: (.+)", first_line)
    assert match, f"{path.name} must start with '# expect: <message>'"
    return match.group(1)


def test_there_is_a_bad_file_per_mistake() -> None:
    assert len(BAD_FILES) >= 30


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_each_bad_file_is_rejected_naming_the_field(path: Path) -> None:
    expected = expected_message(path)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    error = caught.value
    assert len(error.problems) == 1, f"one mistake, one problem; got {error.problems}"
    assert expected in str(error)
    assert error.source == str(path)
    assert INLINE_SECRET not in str(error)


def test_contract_example_message_for_an_unknown_protocol() -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(BAD_DIR / "unknown_protocol.yaml")
    assert str(caught.value).startswith("models[0].endpoints[1].protocol: unknown protocol 'opnai'")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "endpoints.yaml"
    with pytest.raises(CatalogError) as caught:
        load_catalog(missing)
    assert str(caught.value) == f"{missing}: file not found"


def test_directory_instead_of_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: cannot read")


def test_every_mistake_is_reported_one_per_line_in_file_order() -> None:
    text = """\
defaults: {interval: soon}
models:
  - id: a
    endpoints:
      - provider: X
        protocol: opnai
        base_url: ftp://example.com
        model: m
      - provider: X
        protocol: openai
        base_url: http://example.com/v1
        model: m
  - id: a
    endpoints: []
"""
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="multi.yaml")
    assert str(caught.value).splitlines() == [
        "defaults.interval: invalid duration 'soon' (expected e.g. 30m, 60s, 1h30m, 500ms or a number of seconds) (line 1)",
        "models[0].endpoints[0].protocol: unknown protocol 'opnai' (expected one of openai, cloudflare, anthropic, gemini, ollama) (line 6)",
        "models[0].endpoints[0].base_url: URL scheme must be http or https (got 'ftp://example.com') (line 7)",
        "models[0].endpoints[1].provider: duplicate provider 'X' in this model (first at endpoints[0]) (line 9)",
        "models[1].id: duplicate model id 'a' (first at models[0]) (line 13)",
        "models[1].endpoints: no endpoints: list at least one (line 14)",
    ]


def test_yaml_syntax_error_does_not_quote_the_offending_line() -> None:
    # PyYAML's own message prints the source line; ours must not (it could hold a key).
    text = f"models:\n  - id: m\n    api_key: {INLINE_SECRET}\n   bad: [\n"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="secret.yaml")
    message = str(caught.value)
    assert message.startswith("secret.yaml: line 4, column 4: YAML syntax error")
    assert INLINE_SECRET not in message


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog("models: !!python/object/apply:os.system ['true']\n", source="evil.yaml")
    assert "evil.yaml: line 1, column 9: YAML syntax error" in str(caught.value)


def test_seed_config_is_exactly_the_contract_seed() -> None:
    catalog = load_catalog(SEED_CONFIG)
    assert catalog == parse_catalog(SEED_YAML)
    assert catalog.defaults.interval_s == 1800.0
    assert catalog.defaults.timeout_s == 60.0
    assert catalog.defaults.max_tokens == 128
    (model,) = catalog.models
    assert model.id == "meta-llama/llama-3.2-1b-instruct"
    assert model.name == "Meta: Llama 3.2 1B Instruct"
    assert model.endpoints == (
        EndpointConfig(
            provider="Cloudflare",
            protocol="cloudflare",
            base_url="https://api.cloudflare.com/client/v4/accounts/${CLOUDFLARE_ACCOUNT_ID}/ai",
            model="@cf/meta/llama-3.2-1b-instruct",
            api_key_env="CLOUDFLARE_API_TOKEN",
            interval_s=1800.0,
            timeout_s=60.0,
            max_tokens=128,
            options={},
        ),
    )


def test_seed_config_commented_examples_are_valid_when_uncommented() -> None:
    text = SEED_CONFIG.read_text(encoding="utf-8")
    head, models_section = text.split("\nmodels:\n", 1)
    # Uncomment only example lines (`# key: ...` or `# - key: ...`); prose comments stay.
    uncommented = re.sub(r"(?m)^(\s*)# (\s*(?:- )?[a-z_]+:.*)$", r"\1\2", models_section)
    catalog = parse_catalog(head + "\nmodels:\n" + uncommented, source="examples")
    assert [(m.id, [e.provider for e in m.endpoints]) for m in catalog.models] == [
        ("meta-llama/llama-3.2-1b-instruct", ["Cloudflare", "OpenRouter"]),
        ("llama3.2:1b", ["Ollama (local)", "llama.cpp (local)"]),
    ]
    openrouter = catalog.models[0].endpoints[1]
    assert (openrouter.protocol, openrouter.api_key_env, openrouter.interval_s) == (
        "openai", "OPENROUTER_API_KEY", 900.0,
    )
    ollama, llama_cpp = catalog.models[1].endpoints
    assert (ollama.protocol, ollama.api_key_env, ollama.timeout_s) == ("ollama", None, 120.0)
    assert (llama_cpp.protocol, llama_cpp.base_url) == ("openai", "http://127.0.0.1:8080/v1")


def test_builtin_defaults_apply_without_a_defaults_section() -> None:
    catalog = parse_catalog(
        "models:\n  - id: m\n    endpoints:\n"
        "      - {provider: A, protocol: ollama, base_url: 'http://127.0.0.1:11434', model: m}\n"
    )
    endpoint = catalog.models[0].endpoints[0]
    assert (endpoint.interval_s, endpoint.timeout_s, endpoint.max_tokens) == (1800.0, 60.0, 128)
    assert (catalog.defaults.interval_s, catalog.defaults.timeout_s, catalog.defaults.max_tokens) == (1800.0, 60.0, 128)
    assert catalog.models[0].name == "m"  # name defaults to the id
    assert endpoint.api_key_env is None
    assert dict(endpoint.options) == {}


def test_per_endpoint_overrides_win_over_file_defaults() -> None:
    catalog = parse_catalog(
        """\
defaults: {interval: 1h, timeout: 90, max_tokens: 64}
models:
  - id: m
    endpoints:
      - {provider: A, protocol: openai, base_url: 'http://h/v1', model: m}
      - provider: B
        protocol: openai
        base_url: http://h/v1
        model: m
        interval: 1h30m
        timeout: 500ms
        max_tokens: 16
        options: {max_tokens_field: max_completion_tokens}
"""
    )
    first, second = catalog.models[0].endpoints
    assert (first.interval_s, first.timeout_s, first.max_tokens) == (3600.0, 90.0, 64)
    assert (second.interval_s, second.timeout_s, second.max_tokens) == (5400.0, 0.5, 16)
    assert dict(second.options) == {"max_tokens_field": "max_completion_tokens"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800.0),
        ("60s", 60.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("2m30s", 150.0),
        ("1.5h", 5400.0),
        (" 45s ", 45.0),
        ("90", 90.0),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "30 m", "30min", "1d", "-1s", "0s", "0", 0, -3, True, None, "nan", "inf", "1h-5m"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_find_and_endpoints_iterate_in_file_order() -> None:
    catalog = parse_catalog(
        """\
models:
  - id: first/model
    endpoints:
      - {provider: A, protocol: openai, base_url: 'http://a/v1', model: x}
      - {provider: B, protocol: anthropic, base_url: 'https://b/v1', model: x}
  - id: second
    endpoints:
      - {provider: A, protocol: gemini, base_url: 'https://c', model: y}
"""
    )
    assert catalog.find("second") is catalog.models[1]
    assert catalog.find("first/model").name == "first/model"
    assert catalog.find("missing") is None
    assert [(m.id, e.provider) for m, e in catalog.endpoints()] == [
        ("first/model", "A"),
        ("first/model", "B"),
        ("second", "A"),
    ]
    assert catalog.models[0].endpoint("B").protocol == "anthropic"
    assert catalog.models[0].endpoint("C") is None


def test_models_are_immutable_and_hashable() -> None:
    catalog = parse_catalog(SEED_YAML.replace("        api_key_env", "        options: {a: {b: [1]}}\n        api_key_env"))
    endpoint = catalog.models[0].endpoints[0]
    with pytest.raises(pydantic.ValidationError):
        endpoint.provider = "Other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        endpoint.options["a"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        endpoint.options["a"]["b"] = 2  # type: ignore[index]
    assert endpoint.options["a"]["b"] == (1,)
    assert isinstance(catalog.models, tuple) and isinstance(catalog.models[0].endpoints, tuple)
    assert {catalog: 1}[parse_catalog(SEED_YAML.replace("        api_key_env", "        options: {a: {b: [1]}}\n        api_key_env"))] == 1
    assert isinstance(hash(endpoint), int)


def test_public_models_reject_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError):
        Catalog(models=(), colour="red")  # type: ignore[call-arg]


def test_options_keys_must_be_strings() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(
            "models:\n  - id: m\n    endpoints:\n"
            "      - {provider: A, protocol: openai, base_url: 'http://h', model: m, options: {1: x}}\n"
        )
    assert str(caught.value) == "models[0].endpoints[0].options[1]: keys must be strings (line 4)"


@pytest.mark.parametrize(
    "field",
    ["api_key", "apiKey", "API-KEY", "key", "token", "secret", "password", "authorization", "openai_api_key", "x-api-key"],
)
def test_key_like_fields_are_refused_without_echoing_the_value(field: str) -> None:
    text = (
        "models:\n  - id: m\n    endpoints:\n"
        f"      - {{provider: A, protocol: openai, base_url: 'http://h', model: m, {field}: {INLINE_SECRET}}}\n"
    )
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    message = str(caught.value)
    assert message.startswith(f"models[0].endpoints[0].{field}: keys may not be written in the config file")
    assert INLINE_SECRET not in message


def test_ordinary_fields_that_mention_tokens_are_not_mistaken_for_keys() -> None:
    catalog = parse_catalog(
        "models:\n  - id: m\n    endpoints:\n"
        "      - {provider: A, protocol: openai, base_url: 'http://h', model: m, max_tokens: 8,"
        " options: {max_tokens_field: max_completion_tokens, stream_usage: true}}\n"
    )
    assert catalog.models[0].endpoints[0].max_tokens == 8
