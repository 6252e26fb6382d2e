"""The endpoints catalog: the YAML config file -> validated, immutable models.

Owns the config format of the contract (`config/endpoints.yaml`):

    defaults: {interval: 30m, timeout: 60s, max_tokens: 128}   # optional, these are the built-ins
    models:
      - id: meta-llama/llama-3.2-1b-instruct
        name: "Meta: Llama 3.2 1B Instruct"                   # optional, defaults to the id
        endpoints:
          - provider: Cloudflare
            protocol: cloudflare                               # one of PROTOCOL_NAMES
            base_url: https://api.cloudflare.com/client/v4/accounts/${CLOUDFLARE_ACCOUNT_ID}/ai
            model: "@cf/meta/llama-3.2-1b-instruct"
            api_key_env: CLOUDFLARE_API_TOKEN                  # optional (local servers need none)
            interval: 5m        # optional per-endpoint overrides of the defaults
            timeout: 30s
            max_tokens: 64
            options: {max_tokens_field: max_completion_tokens} # optional protocol knobs

Two stages, kept apart on purpose:
- *Validation* (`parse_catalog`, `load_catalog`) is strict and reports every mistake it finds as
  one line `field.path: message (line N)`, all raised together as one `CatalogError`. Nothing is
  read from the environment here: `${VAR}` placeholders are checked for form only, and a URL is
  checked with each placeholder standing for whatever fits its place (a whole URL, a port, host
  or path text).
- *Resolution* (`EndpointConfig.to_target`) expands `${VAR}` and finds the API key in a given
  environment mapping. It never raises for a missing variable: the target then carries
  `config_error`, and the probe fails with that outcome without touching the network.

Secrets: the file holds only environment variable NAMES. A key-like field (`api_key`, `token`,
`Authorization`, ...) is rejected, and no error message ever repeats a value that could be a key.
"""

from __future__ import annotations

import functools

import copy
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.probes.base import PROTOCOL_NAMES, ProbeTarget, Secret

BUILTIN_INTERVAL_S = 30 * 60.0
BUILTIN_TIMEOUT_S = 60.0
BUILTIN_MAX_TOKENS = 128

# Environment variable names: conventional upper-case shell names. Requiring upper case also
# catches the commonest mistake, pasting the key itself where its variable name belongs.
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PLACEHOLDER = re.compile(r"\$\{(?P<name>[^}]*)\}")
_BARE_DOLLAR_NAME = re.compile(r"\$[A-Za-z_]")
_DURATION_PART = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")
_DURATION_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Field names that would put a credential in the file (compared lower-case without - and _).
_SECRET_FIELD_NAMES = frozenset(
    {"key", "apikey", "token", "apitoken", "accesstoken", "authtoken", "bearer", "bearertoken",
     "secret", "clientsecret", "password", "passwd", "authorization", "auth", "xapikey",
     "xgoogapikey", "credentials"}
)
_SECRET_FIELD_SUFFIXES = ("apikey", "secret", "password", "accesstoken", "apitoken", "authtoken")


class CatalogError(ValueError):
    """The catalog cannot be used. `str(error)` is one line per problem, each naming its field.

    `problems` holds the same lines; `source` is the file path (or the name given to
    `parse_catalog`). Messages never contain a value that could be a secret.
    """

    def __init__(self, problems: Sequence[str], *, source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- value helpers


def parse_duration(value: object) -> float:
    """`"30m"`, `"60s"`, `"1h30m"`, `"500ms"`, or a plain number of seconds -> seconds (> 0)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(_duration_hint(value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)  # "90" in quotes is still seconds
        except ValueError:
            parts = list(_DURATION_PART.finditer(text))
            if not text or "".join(p.group(0) for p in parts) != text:
                raise ValueError(_duration_hint(value)) from None
            seconds = sum(float(p["number"]) * _DURATION_UNIT_S[p["unit"]] for p in parts)
    else:
        raise ValueError(_duration_hint(value))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("duration must be greater than 0")
    return seconds


def _duration_hint(value: object) -> str:
    is_plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    shown = _show(value) if is_plain else type(value).__name__
    return f"invalid duration {shown} (expected e.g. 30m, 60s, 1h30m, 500ms or a number of seconds)"


def _show(value: object, limit: int = 40) -> str:
    """A short quoted rendering of a config value for messages (only for non-secret fields)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def template_variables(template: str) -> tuple[str, ...]:
    """Names of the `${VAR}` placeholders in a template; ValueError when one is malformed."""
    names = []
    for match in _PLACEHOLDER.finditer(template):
        name = match["name"]
        if not _ENV_NAME.fullmatch(name):
            # The text inside is not echoed: it might be a pasted secret.
            raise ValueError(
                "invalid environment variable name in a ${...} placeholder "
                "(use upper-case letters, digits and _, not starting with a digit)"
            )
        names.append(name)
    rest = _PLACEHOLDER.sub("", template)
    if "${" in rest:
        raise ValueError("unterminated '${' placeholder")
    if _BARE_DOLLAR_NAME.search(rest):
        raise ValueError("a bare $NAME is not expanded; write ${NAME}")
    return tuple(names)


def _opaque_url(template: str) -> str:
    """`template` with each `${VAR}` swapped for a stand-in valid where it stands, so the static
    check judges only the literal text: a whole base URL (or its scheme) at the start, a port
    right after `host:`, plain text anywhere else. The expanded URL is checked again when the
    endpoint is resolved (an invalid value then gives config_error)."""

    def stand_in(match: re.Match[str]) -> str:
        before = template[: match.start()]
        if not before:
            return "http" if template[match.end():].startswith("://") else "http://placeholder"
        _, sep, authority = before.partition("://")
        if sep and before.endswith(":") and "/" not in authority:
            return "1"
        return "placeholder"

    return _PLACEHOLDER.sub(stand_in, template)


def _url_credential_problem(url: str) -> str | None:
    """Why `url` (already a valid http(s) URL) carries a credential, or None."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return f"credentials in the URL are not allowed; {_INLINE_SECRET_MESSAGE}"
    if any(_is_secret_field(name) for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return f"a key in the URL query is not allowed; {_INLINE_SECRET_MESSAGE}"
    return None


def _check_http_url(url: str) -> str | None:
    """Why `url` is not an absolute http(s) URL with a host, or None when it is."""
    if any(ch.isspace() for ch in url):
        return "URL must not contain whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "malformed URL"
    if parts.scheme not in ("http", "https"):
        return "URL scheme must be http or https"
    if not parts.hostname:
        return "URL has no host"
    return None


def _is_secret_field(name: object) -> bool:
    if not isinstance(name, str):
        return False
    folded = name.lower().replace("-", "").replace("_", "")
    return folded in _SECRET_FIELD_NAMES or folded.endswith(_SECRET_FIELD_SUFFIXES)


_INLINE_SECRET_MESSAGE = (
    "keys may not be written in the config file; put the key in an environment variable "
    "and name that variable with api_key_env"
)


def _find_secret_field(value: object, path: str = "") -> str | None:
    """Dotted path of the first key-like field name nested in a mapping, or None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _is_secret_field(key):
                return here
            found = _find_secret_field(item, here)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_secret_field(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    """Plain dicts/lists again (JSON-serialisable) for the probe target."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return copy.deepcopy(value)


# --------------------------------------------------------------------------- public models


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Defaults(_Frozen):
    interval_s: float = BUILTIN_INTERVAL_S
    timeout_s: float = BUILTIN_TIMEOUT_S
    max_tokens: int = BUILTIN_MAX_TOKENS


class EndpointConfig(_Frozen):
    """One provider serving one model, with every default already applied.

    `base_url` and `model` are templates: `${VAR}` stays unexpanded until `to_target`.
    """

    provider: str
    protocol: str
    base_url: str
    model: str
    api_key_env: str | None = None
    interval_s: float = BUILTIN_INTERVAL_S
    timeout_s: float = BUILTIN_TIMEOUT_S
    max_tokens: int = BUILTIN_MAX_TOKENS
    options: Mapping[str, Any] = Field(default_factory=dict)

    @field_validator("options", mode="after")
    @classmethod
    def _freeze_options(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        return _freeze(value)

    def __hash__(self) -> int:  # options (a read-only mapping) is not hashable; equality still compares it
        return hash((self.provider, self.protocol, self.base_url, self.model, self.api_key_env,
                     self.interval_s, self.timeout_s, self.max_tokens))

    def variables(self) -> tuple[str, ...]:
        """Every environment variable this endpoint reads (placeholders, then the key's)."""
        names = [*template_variables(self.base_url), *template_variables(self.model)]
        if self.api_key_env:
            names.append(self.api_key_env)
        return tuple(dict.fromkeys(names))

    def to_target(self, environ: Mapping[str, str]) -> ProbeTarget:
        """Resolve against `environ`. Never raises for missing variables: sets `config_error`."""
        problems: list[str] = []
        base_url = _expand(self.base_url, environ, problems)
        model = _expand(self.model, environ, problems)
        if not problems and self.base_url != base_url:
            # The expanded value is not echoed: environment values are not ours to print.
            if _check_http_url(base_url):
                problems.append("base_url is not a valid http(s) URL after expanding environment variables")
            elif problem := _url_credential_problem(base_url):
                problems.append(f"base_url after expanding environment variables: {problem}")
        api_key = _resolve_key(self.api_key_env, environ, problems) if self.api_key_env else None
        return ProbeTarget(
            protocol=self.protocol,
            base_url=base_url.rstrip("/"),
            model=model,
            api_key=api_key,
            api_key_env=self.api_key_env,
            config_error="; ".join(problems) or None,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            options=_thaw(self.options),
        )


def _expand(template: str, environ: Mapping[str, str], problems: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match["name"]
        value = environ.get(name)
        if value is None:
            problems.append(f"environment variable {name} is not set")
            return match.group(0)
        if not value.strip():
            problems.append(f"environment variable {name} is empty")
            return match.group(0)
        return value.strip()

    return _PLACEHOLDER.sub(substitute, template)


def _resolve_key(name: str, environ: Mapping[str, str], problems: list[str]) -> Secret | None:
    """The key from $NAME, else from the file named by $NAME_FILE (Docker/K8s secrets)."""
    value = environ.get(name, "").strip()
    if value:
        return Secret(value)
    file_var = f"{name}_FILE"
    key_path = environ.get(file_var, "").strip()
    if not key_path:
        state = "is empty" if name in environ else "is not set"
        problems.append(f"environment variable {name} {state} (nor {file_var})")
        return None
    try:
        value = Path(key_path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problems.append(f"cannot read the key file named by {file_var}: {reason}")
        return None
    if not value:
        problems.append(f"the key file named by {file_var} is empty")
        return None
    return Secret(value)


class ModelConfig(_Frozen):
    id: str
    name: str
    endpoints: tuple[EndpointConfig, ...]

    def endpoint(self, provider: str) -> EndpointConfig | None:
        return next((e for e in self.endpoints if e.provider == provider), None)


class Catalog(_Frozen):
    defaults: Defaults = Field(default_factory=Defaults)
    models: tuple[ModelConfig, ...]

    def find(self, model_id: str) -> ModelConfig | None:
        # Called on every API request: a dict built once, not a scan of thousands of models.
        return self._by_id.get(model_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, ModelConfig]:
        return {model.id: model for model in self.models}

    def endpoints(self) -> Iterator[tuple[ModelConfig, EndpointConfig]]:
        """Every (model, endpoint) pair, in file order."""
        for model in self.models:
            for endpoint in model.endpoints:
                yield model, endpoint


def catalog_warnings(catalog: Catalog, environ: Mapping[str, str]) -> list[str]:
    """One line per endpoint whose probes will fail with config_error, and why (names only)."""
    warnings = []
    for model, endpoint in catalog.endpoints():
        error = endpoint.to_target(environ).config_error
        if error:
            warnings.append(f"{model.id} via {endpoint.provider}: {error} (probes will fail with config_error)")
    return warnings


# --------------------------------------------------------------------------- file schema
# The shape of the YAML file, validated strictly (no coercion: `max_tokens: "128"` is an error).
# Kept private: callers only ever see the resolved public models above.


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _duration_field(value: object) -> float:
    return parse_duration(value)


class _DefaultsSpec(_Spec):
    interval: float | None = None
    timeout: float | None = None
    max_tokens: int | None = Field(None, gt=0)

    _durations = field_validator("interval", "timeout", mode="before")(_duration_field)


class _EndpointSpec(_Spec):
    provider: str
    protocol: str
    base_url: str
    model: str
    api_key_env: str | None = None
    interval: float | None = None
    timeout: float | None = None
    max_tokens: int | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)

    _durations = field_validator("interval", "timeout", mode="before")(_duration_field)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        # The provider is a path segment of the API (/endpoints/{provider}/probes).
        if "/" in value or any(not ch.isprintable() for ch in value):
            raise ValueError("must not contain '/' or control characters")
        return value

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in PROTOCOL_NAMES:
            raise ValueError(f"unknown protocol {_show(value)} (expected one of {', '.join(PROTOCOL_NAMES)})")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        template_variables(value)
        opaque = _opaque_url(value)
        problem = _check_http_url(opaque)
        # A query string or user-info may carry a credential: such a URL is never echoed.
        shown = "" if ("?" in value or "@" in value) else f" (got {_show(value, 80)})"
        if problem:
            raise ValueError(problem + shown)
        problem = _url_credential_problem(opaque)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        template_variables(value)
        return value

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            # Not echoed: a value here that is not a variable name is most likely the key itself.
            raise ValueError(
                "must be the NAME of an environment variable (upper-case letters, digits and _, "
                "not starting with a digit), never the key itself"
            )
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        secret_path = _find_secret_field(value)
        if secret_path:
            raise ValueError(f"{secret_path}: {_INLINE_SECRET_MESSAGE}")
        return value


class _ModelSpec(_Spec):
    id: str
    name: str | None = None
    endpoints: list[_EndpointSpec]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("endpoints")
    @classmethod
    def _some_endpoints(cls, value: list[_EndpointSpec]) -> list[_EndpointSpec]:
        if not value:
            raise ValueError("no endpoints: list at least one")
        return value


class _CatalogSpec(_Spec):
    defaults: _DefaultsSpec = Field(default_factory=_DefaultsSpec)
    models: list[_ModelSpec]

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: list[_ModelSpec]) -> list[_ModelSpec]:
        if not value:
            raise ValueError("no models: list at least one")
        return value


def _allowed_keys(spec: type[_Spec]) -> str:
    return ", ".join(spec.model_fields)


def _spec_at(loc: tuple[Any, ...]) -> type[_Spec] | None:
    """Which schema class owns the mapping at `loc` (for 'unknown key' messages)."""
    if loc == ():
        return _CatalogSpec
    if loc == ("defaults",):
        return _DefaultsSpec
    if len(loc) == 2 and loc[0] == "models" and isinstance(loc[1], int):
        return _ModelSpec
    if len(loc) == 4 and loc[0] == "models" and loc[2] == "endpoints" and isinstance(loc[3], int):
        return _EndpointSpec
    return None


# --------------------------------------------------------------------------- loading


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; CatalogError (naming the path) when it cannot be used."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([f"{source}: file not found"], source=source) from None
    except UnicodeDecodeError:
        raise CatalogError([f"{source}: not UTF-8 text"], source=source) from None
    except OSError as exc:
        raise CatalogError([f"{source}: cannot read: {exc.strerror or type(exc).__name__}"], source=source) from None
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<string>") -> Catalog:
    """Validate catalog YAML text. `source` names it in file-level messages."""
    data, lines, problems = _read_yaml(text, source)
    if data is None:
        problems.append(((0, 0), f"{source}: the catalog is empty (expected a 'models' list)"))
    elif not isinstance(data, dict):
        problems.append(((0, 0), f"{source}: expected a mapping with the keys defaults, models at the top level"))
    else:
        spec: _CatalogSpec | None = None
        try:
            spec = _CatalogSpec.model_validate(data)
        except ValidationError as exc:
            problems.extend(_describe(error, lines) for error in exc.errors(include_url=False))
        problems.extend(_duplicates(data, lines))
        if not problems and spec is not None:
            return _resolve(spec)
    ordered = [message for _, message in sorted(problems, key=lambda p: p[0])]
    raise CatalogError(list(dict.fromkeys(ordered)), source=source)


Problem = tuple[tuple[int, int], str]  # ((line, sequence-for-stable-order), message)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no arbitrary objects); composed first so we can see node lines."""


def _read_yaml(text: str, source: str) -> tuple[Any, dict[str, int], list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[str, int] = {}
        problems: list[Problem] = []
        _walk(node, "", lines, problems)
        return loader.construct_document(node), lines, problems
    except yaml.MarkedYAMLError as exc:
        # Built from the parts rather than str(exc): PyYAML's own text quotes the offending
        # source line, which could be one that holds a key.
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ": ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise CatalogError([f"{source}: {where}YAML syntax error: {what}"], source=source) from None
    except yaml.YAMLError as exc:
        raise CatalogError([f"{source}: YAML error: {exc}"], source=source) from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: str, lines: dict[str, int], problems: list[Problem]) -> None:
    """Record the line of every field path, and flag duplicate keys (PyYAML keeps the last)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key != "<<" and key in seen:
                line = key_node.start_mark.line + 1
                problems.append(((line, len(problems)), f"{child}: duplicate key (line {line})"))
            seen.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", lines, problems)


def _format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(path: str, lines: Mapping[str, int]) -> int:
    """Line of `path`, or of its nearest ancestor that is in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("", 0)


_PLAIN_MESSAGES = {
    "missing": "required field missing",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _describe(error: Mapping[str, Any], lines: Mapping[str, int]) -> Problem:
    """One pydantic error -> `path: message (line N)`. The input value is never shown."""
    loc = tuple(error["loc"])
    path = _format_loc(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        if _is_secret_field(loc[-1]):
            message = _INLINE_SECRET_MESSAGE
        else:
            owner = _spec_at(loc[:-1])
            message = f"unknown key (expected one of {_allowed_keys(owner)})" if owner else "unknown key"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "greater_than":
        message = f"must be greater than {error['ctx']['gt']}"
    elif loc and loc[-1] == "[key]":
        message = "keys must be strings"
    else:
        message = _PLAIN_MESSAGES.get(kind, error["msg"])
    line = _line_of(path, lines)
    suffix = f" (line {line})" if line else ""
    return (line, 0), f"{path or '(top level)'}: {message}{suffix}"


def _duplicates(data: Mapping[str, Any], lines: Mapping[str, int]) -> list[Problem]:
    """Duplicate model ids, and duplicate providers within a model (case-insensitively)."""
    problems: list[Problem] = []

    def report(path: str, message: str) -> None:
        line = _line_of(path, lines)
        problems.append(((line, 0), f"{path}: {message}" + (f" (line {line})" if line else "")))

    models = data.get("models")
    if not isinstance(models, list):
        return problems
    first_model: dict[str, int] = {}
    for m_index, model in enumerate(models):
        if not isinstance(model, dict):
            continue
        model_id = model.get("id")
        if isinstance(model_id, str):
            if model_id in first_model:
                report(f"models[{m_index}].id",
                       f"duplicate model id {_show(model_id, 80)} (first at models[{first_model[model_id]}])")
            else:
                first_model[model_id] = m_index
        endpoints = model.get("endpoints")
        if not isinstance(endpoints, list):
            continue
        first_provider: dict[str, int] = {}
        for e_index, endpoint in enumerate(endpoints):
            provider = endpoint.get("provider") if isinstance(endpoint, dict) else None
            if not isinstance(provider, str):
                continue
            folded = provider.strip().casefold()
            if folded in first_provider:
                report(f"models[{m_index}].endpoints[{e_index}].provider",
                       f"duplicate provider {_show(provider)} in this model "
                       f"(first at endpoints[{first_provider[folded]}])")
            else:
                first_provider[folded] = e_index
    return problems


def _resolve(spec: _CatalogSpec) -> Catalog:
    """Apply defaults (file's, then built-in) and build the public immutable models."""
    defaults = Defaults(
        interval_s=spec.defaults.interval or BUILTIN_INTERVAL_S,
        timeout_s=spec.defaults.timeout or BUILTIN_TIMEOUT_S,
        max_tokens=spec.defaults.max_tokens or BUILTIN_MAX_TOKENS,
    )
    models = tuple(
        ModelConfig(
            id=model.id,
            name=model.name if model.name is not None else model.id,
            endpoints=tuple(
                EndpointConfig(
                    provider=endpoint.provider,
                    protocol=endpoint.protocol,
                    base_url=endpoint.base_url,
                    model=endpoint.model,
                    api_key_env=endpoint.api_key_env,
                    interval_s=endpoint.interval or defaults.interval_s,
                    timeout_s=endpoint.timeout or defaults.timeout_s,
                    max_tokens=endpoint.max_tokens or defaults.max_tokens,
                    options=endpoint.options,
                )
                for endpoint in model.endpoints
            ),
        )
        for model in spec.models
    )
    return Catalog(defaults=defaults, models=models)
