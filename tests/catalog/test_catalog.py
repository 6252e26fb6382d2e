"""Catalog loading: the valid format, defaults, immutability, and every way a file can be wrong.

Each file under bad/ holds exactly ONE mistake; `BAD_FILE_EXPECTATIONS` names the field and the
message it must produce, and the table test checks both and that nothing else is reported.
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
from monitor.probes.registry import PROTOCOLS

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


FILE = "<the file>"  # a problem with the file as a whole: the line starts with its path
E0 = "models[0].endpoints[0]"
OPENAI_OPTIONS = ", ".join(sorted(PROTOCOLS["openai"].options_model.model_fields))

# Each file under bad/ holds exactly ONE mistake: the field path its one problem line names, and
# a fragment of the message. A file without an entry here fails the coverage test.
BAD_FILE_EXPECTATIONS: dict[str, tuple[str, str]] = {
    "api_key_env_is_a_key.yaml": (f"{E0}.api_key_env", "must be the NAME of an environment variable (upper-case letters, digits and _, not starting with a digit), never the key itself (line 9)"),
    "api_key_env_starts_with_digit.yaml": (f"{E0}.api_key_env", "must be the NAME of an environment variable"),
    "duplicate_model_id.yaml": ("models[1].id", "duplicate model id 'm' (first at models[0]) (line 9)"),
    "duplicate_provider.yaml": ("models[0].endpoints[1].provider", "duplicate provider 'groq' in this model (first at endpoints[0]) (line 9)"),
    "duplicate_yaml_key.yaml": (f"{E0}.protocol", "duplicate key (line 8)"),
    "duration_bad_unit.yaml": (f"{E0}.interval", "invalid duration '30 minutes' (expected e.g. 30m, 60s, 1h30m, 500ms, 90d or a number of seconds) (line 9)"),
    "duration_boolean.yaml": ("defaults.interval", "invalid duration bool"),
    "duration_negative.yaml": (f"{E0}.timeout", "invalid duration '-5s'"),
    "duration_zero.yaml": ("defaults.timeout", "duration must be greater than 0 (line 2)"),
    "empty_endpoints.yaml": ("models[0].endpoints", "no endpoints: list at least one (line 5)"),
    "empty_file.yaml": (FILE, "the catalog is empty (expected a 'models' list)"),
    "empty_model_id.yaml": ("models[0].id", "must not be empty (line 3)"),
    "endpoints_not_a_list.yaml": ("models[0].endpoints", "expected a list (line 4)"),
    "inline_api_key.yaml": (f"{E0}.api_key", "keys may not be written in the config file; put the key in an environment variable and name that variable with api_key_env (line 9)"),
    "inline_key_in_options.yaml": (f"{E0}.options.headers.Authorization", "keys may not be written in the config file; put the key in an environment variable and name that variable with api_key_env (line 10)"),
    "inline_token.yaml": (f"{E0}.token", "keys may not be written in the config file"),
    "interval_huge_integer.yaml": (f"{E0}.interval", "duration is too large (line 9)"),
    "interval_infinite.yaml": (f"{E0}.interval", "duration must be a finite number (line 9)"),
    "interval_nan.yaml": (f"{E0}.interval", "duration must be a finite number (line 9)"),
    "interval_too_long.yaml": (f"{E0}.interval", "must be at most 168h (7 days) (line 9)"),
    "interval_too_short.yaml": (f"{E0}.interval", "must be at least 1s (line 9)"),
    "max_tokens_string.yaml": (f"{E0}.max_tokens", "expected a whole number (line 9)"),
    "max_tokens_too_large.yaml": (f"{E0}.max_tokens", "must be at most 65536 (line 9)"),
    "max_tokens_zero.yaml": ("defaults.max_tokens", "must be at least 1 (line 2)"),
    "missing_protocol.yaml": (f"{E0}.protocol", "required field missing (line 5)"),
    "models_missing.yaml": ("models", "required field missing"),
    "no_models.yaml": ("models", "no models: list at least one (line 3)"),
    "number_too_many_digits.yaml": (FILE, "a value cannot be read (a number with too many digits"),
    "options_bad_value.yaml": (f"{E0}.options.max_tokens_field", "Input should be 'max_tokens' or 'max_completion_tokens' (line 9)"),
    "options_not_a_mapping.yaml": (f"{E0}.options", "expected a mapping (line 9)"),
    "options_not_finite.yaml": (f"{E0}.options.extra_body.temperature", "must be a finite number (line 9)"),
    "options_unknown_key.yaml": (f"{E0}.options.max_tokenz", f"unknown option (expected one of {OPENAI_OPTIONS}) (line 9)"),
    "options_wrong_type.yaml": (f"{E0}.options.thinking_budget", "expected a whole number (line 9)"),
    "placeholder_bad_name.yaml": (f"{E0}.base_url", "invalid environment variable name in a ${...} placeholder (use upper-case letters, digits and _, not starting with a digit) (line 7)"),
    "placeholder_bare_dollar.yaml": (f"{E0}.base_url", "a bare $NAME is not expanded; write ${NAME}"),
    "placeholder_unterminated.yaml": (f"{E0}.model", "unterminated '${' placeholder (line 8)"),
    "provider_with_slash.yaml": (f"{E0}.provider", "must not contain '/' or control characters (line 5)"),
    "timeout_too_long.yaml": (f"{E0}.timeout", "must be at most 10m (line 9)"),
    "timeout_too_short.yaml": (f"{E0}.timeout", "must be at least 1s (line 9)"),
    "top_level_list.yaml": (FILE, "expected a mapping with the keys defaults, models at the top level"),
    "unknown_defaults_key.yaml": ("defaults.max_token", "unknown key (expected one of interval, timeout, max_tokens, liveness, confirm, quorum, degraded_ttft, input_tokens, price, checks, answer_ok_min, keep_cold_starts, retention) (line 2)"),
    "unknown_endpoint_key.yaml": (f"{E0}.intervall", "unknown key (expected one of interval, timeout, max_tokens, liveness, confirm, quorum, degraded_ttft, input_tokens, price, checks, answer_ok_min, keep_cold_starts, provider, protocol, base_url, model, api_key_env, options) (line 9)"),
    "unknown_protocol.yaml": ("models[0].endpoints[1].protocol", f"unknown protocol 'opnai' (expected one of {', '.join(PROTOCOLS)}) (line 12)"),
    "unknown_top_key.yaml": ("model", "unknown key (expected one of defaults, models, maintenance, budget_per_month) (line 2)"),
    "url_bad_port.yaml": (f"{E0}.base_url", "malformed URL"),
    "url_bad_scheme.yaml": (f"{E0}.base_url", "URL scheme must be http or https (got 'ftp://${HOST}/v1')"),
    "url_invalid_with_query_not_echoed.yaml": (f"{E0}.base_url", "URL scheme must be http or https (line 7)"),
    "url_key_in_query.yaml": (f"{E0}.base_url", "a key in the URL query is not allowed; keys may not be written in the config file; put the key in an environment variable and name that variable with api_key_env (line 7)"),
    "url_no_host.yaml": (f"{E0}.base_url", "URL has no host (got 'https:///v1')"),
    "url_no_scheme.yaml": (f"{E0}.base_url", "URL scheme must be http or https"),
    "url_with_credentials.yaml": (f"{E0}.base_url", "credentials in the URL are not allowed; keys may not be written in the config file"),
    "yaml_alias.yaml": (FILE, "YAML aliases are not allowed (line 5)"),
    "yaml_syntax.yaml": (FILE, "line 6, column 25: YAML syntax error: mapping values are not allowed here"),
    "yaml_too_deep.yaml": (FILE, "nesting deeper than 32 levels is not allowed (line 9)"),
    "yaml_unclosed_flow.yaml": (FILE, "line 3, column 7: YAML syntax error: while parsing a flow mapping: expected ',' or '}', but got ':'"),
}


def test_every_bad_file_has_an_expectation_and_every_expectation_a_file() -> None:
    assert sorted(p.name for p in BAD_FILES) == sorted(BAD_FILE_EXPECTATIONS)


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_each_bad_file_is_rejected_naming_the_field(path: Path) -> None:
    field, fragment = BAD_FILE_EXPECTATIONS[path.name]
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    error = caught.value
    assert len(error.problems) == 1, f"one mistake, one problem; got {error.problems}"
    (line,) = error.problems
    prefix = f"{path}: " if field == FILE else f"{field}: "
    assert line.startswith(prefix), line
    assert fragment in line[len(prefix):], line
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
        "defaults.interval: invalid duration 'soon' (expected e.g. 30m, 60s, 1h30m, 500ms, 90d or a number of seconds) (line 1)",
        f"models[0].endpoints[0].protocol: unknown protocol 'opnai' (expected one of {', '.join(PROTOCOLS)}) (line 6)",
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
        timeout: 1500ms
        max_tokens: 16
        options: {max_tokens_field: max_completion_tokens}
"""
    )
    first, second = catalog.models[0].endpoints
    assert (first.interval_s, first.timeout_s, first.max_tokens) == (3600.0, 90.0, 64)
    assert (second.interval_s, second.timeout_s, second.max_tokens) == (5400.0, 1.5, 16)
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


@pytest.mark.parametrize("text", ["", "m", "30 m", "30min", "1w", "-1s", "0s", "0", 0, -3, True, None, "nan", "inf", "1h-5m"])
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
    catalog = parse_catalog(SEED_YAML.replace("        api_key_env", "        options: {extra_body: {b: [1]}}\n        api_key_env"))
    endpoint = catalog.models[0].endpoints[0]
    with pytest.raises(pydantic.ValidationError):
        endpoint.provider = "Other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        endpoint.options["extra_body"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        endpoint.options["extra_body"]["b"] = 2  # type: ignore[index]
    assert endpoint.options["extra_body"]["b"] == (1,)
    assert isinstance(catalog.models, tuple) and isinstance(catalog.models[0].endpoints, tuple)
    assert {catalog: 1}[parse_catalog(SEED_YAML.replace("        api_key_env", "        options: {extra_body: {b: [1]}}\n        api_key_env"))] == 1
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
        " options: {max_tokens_field: max_completion_tokens, include_usage: true}}\n"
    )
    assert catalog.models[0].endpoints[0].max_tokens == 8


def test_load_catalog_runs_in_worker_threads_while_the_loop_keeps_running() -> None:
    import asyncio

    async def main() -> tuple[list[Catalog], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        loaded = await asyncio.gather(*(asyncio.to_thread(load_catalog, SEED_CONFIG) for _ in range(4)))
        ticker.cancel()
        return list(loaded), ticks

    loaded, ticks = asyncio.run(main())
    assert loaded == [load_catalog(SEED_CONFIG)] * 4
    assert ticks > 0


def test_an_option_set_to_null_stays_distinct_from_one_left_out() -> None:
    catalog = parse_catalog(
        "models:\n  - id: m\n    endpoints:\n"
        "      - {provider: A, protocol: gemini, base_url: 'https://g', model: m, options: {thinking_budget: null}}\n"
        "      - {provider: B, protocol: gemini, base_url: 'https://g', model: m}\n"
    )
    with_null, without = catalog.models[0].endpoints
    assert dict(with_null.options) == {"thinking_budget": None}
    assert dict(without.options) == {}
