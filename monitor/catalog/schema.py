"""The shape of the YAML file: strict pydantic specs (no coercion: `max_tokens: "128"` is an
error), their field validators, durations and the bounds of every number.

Bounds (also applied to the probe CLI's flags):
- `interval`: 1 s to 7 days. Below a second a provider is flooded; above a week an endpoint is
  not being monitored.
- `timeout`: 1 s to 10 minutes (the whole measured request).
- `max_tokens`: 1 to 65536.
- Every number in `options` must be finite (NaN and infinities are not JSON).
- `liveness.interval` and `confirm.interval`: 1 s to 1 hour; `confirm.failures`: 1 to 10.
- `degraded_ttft`: 1 ms to 10 minutes. `input_tokens`: one of 100, 1000, 10000.
- `retention.raw` and `retention.hourly`: 1 day to 10 years, hourly at least as long as raw.
- `price`: USD per 1M tokens, 0 to 10,000. `budget_per_month`: USD, above 0.
- `answer_ok_min`: a ratio in [0, 1].

`options` is validated with the protocol's own model (`WireProtocol.options_model`): an unknown
or misspelt option, or a value of the wrong kind, is reported with its path inside `options`.
Nothing here reads the environment: `${VAR}` placeholders are checked for form only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from monitor.catalog.credentials import INLINE_SECRET_MESSAGE, find_secret_field, url_credential_problem
from monitor.catalog.resolve import ENV_NAME, opaque_url, template_variables
from monitor.probes.registry import PROTOCOLS
from monitor.probes.urls import http_url_problem

INTERVAL_MIN_S = 1.0
INTERVAL_MAX_S = 7 * 24 * 3600.0
TIMEOUT_MIN_S = 1.0
TIMEOUT_MAX_S = 600.0
MAX_TOKENS_MIN = 1
MAX_TOKENS_MAX = 65536

_DURATION_PART = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|d|h|m|s)")
_DURATION_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# How a bound is shown (in the file's own duration syntax).
LIVENESS_MAX_S = 3600.0
CONFIRM_FAILURES_MAX = 10
DEGRADED_TTFT_MIN_S = 0.001
RETENTION_MIN_S = 24 * 3600.0
RETENTION_MAX_S = 3650 * 24 * 3600.0
INPUT_TOKEN_PROFILES = (100, 1000, 10000)
CHECKS = ("answer", "tool_call")
PRICE_MAX_PER_MTOK = 10_000.0
_SHOWN = {INTERVAL_MIN_S: "1s", INTERVAL_MAX_S: "168h (7 days)", TIMEOUT_MAX_S: "10m",
          LIVENESS_MAX_S: "1h", DEGRADED_TTFT_MIN_S: "1ms", RETENTION_MIN_S: "1d",
          RETENTION_MAX_S: "3650d (10 years)"}

# Messages for pydantic error types, shared by the catalog and the probe CLI.
PLAIN_MESSAGES = {
    "missing": "required field missing",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def show(value: object, limit: int = 40) -> str:
    """A short quoted rendering of a config value for messages (only for non-secret fields)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def parse_duration(value: object) -> float:
    """`"30m"`, `"60s"`, `"1h30m"`, `"500ms"`, `"90d"`, or a plain number of seconds -> seconds (> 0)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(_duration_hint(value))
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            raise ValueError("duration is too large") from None
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
    if not math.isfinite(seconds):
        raise ValueError("duration must be a finite number")
    if seconds <= 0:
        raise ValueError("duration must be greater than 0")
    return seconds


def bounded_duration(value: object, low: float, high: float) -> float:
    seconds = parse_duration(value)
    if seconds < low:
        raise ValueError(f"must be at least {_SHOWN.get(low, f'{low:g}s')}")
    if seconds > high:
        raise ValueError(f"must be at most {_SHOWN.get(high, f'{high:g}s')}")
    return seconds


def _duration_hint(value: object) -> str:
    is_plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    shown = show(value) if is_plain else type(value).__name__
    return f"invalid duration {shown} (expected e.g. 30m, 60s, 1h30m, 500ms, 90d or a number of seconds)"


# --------------------------------------------------------------------------- options


class OptionProblems(ValueError):
    """Raised by the options validator: each item is (location inside `options`, message)."""

    def __init__(self, items: list[tuple[tuple[Any, ...], str]]) -> None:
        self.items = items
        super().__init__("; ".join(message for _, message in items))


def option_problems(protocol: str | None, options: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """What is wrong with `options` for `protocol`: (location inside options, message) pairs.

    A key-like field name is reported alone. The protocol's model is only consulted when the
    protocol is known. Messages never contain a value.
    """
    secret = find_secret_field(options)
    if secret:
        return [(secret, INLINE_SECRET_MESSAGE)]
    problems: list[tuple[tuple[Any, ...], str]] = []
    non_finite = _find_non_finite(options)
    if non_finite:
        problems.append((non_finite, "must be a finite number"))
    wire = PROTOCOLS.get(protocol) if protocol is not None else None
    if wire is None:
        return problems
    model = wire.options_model
    try:
        model.model_validate(options, strict=True)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                message = f"unknown option (expected one of {', '.join(sorted(model.model_fields))})"
            else:
                message = PLAIN_MESSAGES.get(error["type"], error["msg"])
            problems.append((loc, message))
    return problems


def _find_non_finite(value: object, loc: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return loc
    items: Any = value.items() if isinstance(value, Mapping) else (
        enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        found = _find_non_finite(item, (*loc, key))
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- file specs
# Kept private to the package: callers only ever see the resolved models (models.py).


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _interval(value: object) -> float:
    return bounded_duration(value, INTERVAL_MIN_S, INTERVAL_MAX_S)


def _timeout(value: object) -> float:
    return bounded_duration(value, TIMEOUT_MIN_S, TIMEOUT_MAX_S)


_MaxTokens = Annotated[int, Field(ge=MAX_TOKENS_MIN, le=MAX_TOKENS_MAX)]
_Ratio = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_Price = Annotated[float, Field(ge=0.0, le=PRICE_MAX_PER_MTOK, allow_inf_nan=False)]


def _short_interval(value: object) -> float:
    return bounded_duration(value, INTERVAL_MIN_S, LIVENESS_MAX_S)


def _number(value: object) -> object:
    # Strict mode refuses an int for a float field; a price of `1` is a number all the same.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class LivenessSpec(Spec):
    interval: float | None = None
    # false: no liveness checks for this endpoint (the provider has no cheap request, or
    # rate-limits it).
    enabled: bool = True

    _check_interval = field_validator("interval", mode="before")(_short_interval)


class ConfirmSpec(Spec):
    interval: float | None = None
    failures: Annotated[int, Field(ge=1, le=CONFIRM_FAILURES_MAX)] | None = None

    _check_interval = field_validator("interval", mode="before")(_short_interval)


class PriceSpec(Spec):
    input_per_mtok: _Price
    output_per_mtok: _Price

    _numbers = field_validator("input_per_mtok", "output_per_mtok", mode="before")(_number)


class RetentionSpec(Spec):
    raw: float | None = None
    hourly: float | None = None

    @field_validator("raw", "hourly", mode="before")
    @classmethod
    def _retention(cls, value: object) -> float:
        return bounded_duration(value, RETENTION_MIN_S, RETENTION_MAX_S)

    @field_validator("hourly")
    @classmethod
    def _not_shorter_than_raw(cls, value: float | None, info: ValidationInfo) -> float | None:
        raw = info.data.get("raw")
        if value is not None and raw is not None and value < raw:
            raise ValueError("must be at least as long as retention.raw (roll-ups outlive raw probes)")
        return value


def _quorum(value: object) -> object:
    if value == "majority" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"expected 'majority' or a whole number of locations >= 1 (got {show(value)})")


def _input_tokens(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and value in INPUT_TOKEN_PROFILES:
        return value
    raise ValueError(f"expected one of {', '.join(map(str, INPUT_TOKEN_PROFILES))} (got {show(value)})")


def _checks(value: object) -> object:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    for item in value:
        if item not in CHECKS:
            raise ValueError(f"unknown check {show(item)} (expected any of {', '.join(CHECKS)})")
    if len(set(value)) != len(value):
        raise ValueError("lists a check twice")
    return value


def tool_call_problem(protocol: str) -> str | None:
    """Why `protocol` cannot run the tool-call canary, or None when it can (or is unknown: that
    has its own message)."""
    wire = PROTOCOLS.get(protocol)
    if wire is None or wire.supports_tool_call:
        return None
    supported = ", ".join(name for name, p in PROTOCOLS.items() if p.supports_tool_call)
    return f"is not available for protocol {protocol!r} (only {supported})"


def _degraded_ttft(value: object) -> float:
    return bounded_duration(value, DEGRADED_TTFT_MIN_S, TIMEOUT_MAX_S)


class EndpointSettingsSpec(Spec):
    """Settings allowed both in `defaults` and on each endpoint."""

    interval: float | None = None
    timeout: float | None = None
    max_tokens: _MaxTokens | None = None
    liveness: LivenessSpec | None = None
    confirm: ConfirmSpec | None = None
    quorum: str | int | None = None
    degraded_ttft: float | None = None
    input_tokens: int | None = None
    price: PriceSpec | None = None
    checks: list[str] | None = None
    # Below this share of ok probes whose answer checked out, the endpoint is `degraded`.
    answer_ok_min: _Ratio | None = None
    # Keep probes that paid a model load (`cold_start`) in the TTFT medians.
    keep_cold_starts: bool | None = None

    _check_interval = field_validator("interval", mode="before")(_interval)
    _check_timeout = field_validator("timeout", mode="before")(_timeout)
    _check_quorum = field_validator("quorum", mode="before")(_quorum)
    _check_input_tokens = field_validator("input_tokens", mode="before")(_input_tokens)
    _check_checks = field_validator("checks", mode="before")(_checks)
    _check_degraded = field_validator("degraded_ttft", mode="before")(_degraded_ttft)
    _check_ratio = field_validator("answer_ok_min", mode="before")(_number)


class DefaultsSpec(EndpointSettingsSpec):
    retention: RetentionSpec | None = None


class EndpointSpec(EndpointSettingsSpec):
    provider: str
    protocol: str
    base_url: str
    model: str
    api_key_env: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

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
        if value not in PROTOCOLS:
            raise ValueError(f"unknown protocol {show(value)} (expected one of {', '.join(PROTOCOLS)})")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        template_variables(value)
        opaque = opaque_url(value)
        problem = http_url_problem(opaque)
        # A query string or user-info may carry a credential: such a URL is never echoed.
        shown = "" if ("?" in value or "@" in value) else f" (got {show(value, 80)})"
        if problem:
            raise ValueError(problem + shown)
        problem = url_credential_problem(opaque)
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
        if not ENV_NAME.fullmatch(value):
            # Not echoed: a value here that is not a variable name is most likely the key itself.
            raise ValueError(
                "must be the NAME of an environment variable (upper-case letters, digits and _, "
                "not starting with a digit), never the key itself"
            )
        return value

    @model_validator(mode="after")
    def _tool_call_supported(self) -> "EndpointSpec":
        if self.checks and "tool_call" in self.checks and (problem := tool_call_problem(self.protocol)):
            raise ValueError(f"checks: tool_call {problem}")
        return self

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # `protocol` is absent from info.data when it failed: then only the checks that need
        # no protocol run.
        problems = option_problems(info.data.get("protocol"), value)
        if problems:
            raise OptionProblems(problems)
        return value


class ModelSpec(Spec):
    id: str
    name: str | None = None
    endpoints: list[EndpointSpec]

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
    def _some_endpoints(cls, value: list[EndpointSpec]) -> list[EndpointSpec]:
        if not value:
            raise ValueError("no endpoints: list at least one")
        return value


def _moment(value: object) -> datetime:
    """A timezone-aware moment: a YAML timestamp or an ISO 8601 string with an offset or Z."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"invalid time {show(value)} (expected ISO 8601, e.g. 2026-12-24T00:00:00Z)") from None
    if not isinstance(value, datetime):
        raise ValueError("expected a time (ISO 8601, e.g. 2026-12-24T00:00:00Z)")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a time zone (end it with Z for UTC)")
    return value.astimezone(timezone.utc)


class MaintenanceSpec(Spec):
    """A planned window: its probes are excluded from uptime and SLOs, open no incident, page nobody.
    Without `model`, it covers every model (of `provider`, when set)."""

    start: datetime
    end: datetime
    model: str | None = None
    provider: str | None = None
    location: str | None = None
    reason: str = ""

    _check_moments = field_validator("start", "end", mode="before")(_moment)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError("must be after start")
        return value


class CatalogSpec(Spec):
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    models: list[ModelSpec]
    maintenance: list[MaintenanceSpec] = Field(default_factory=list)
    # USD: check-config warns when the projected monthly probe cost is above it.
    budget_per_month: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None

    _check_budget = field_validator("budget_per_month", mode="before")(_number)

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        if not value:
            raise ValueError("no models: list at least one")
        return value

    # --- canary: `checks: [tool_call]` inherited from defaults needs the endpoint's protocol to
    # support it too (an endpoint's own `checks` is judged by EndpointSpec)
    @model_validator(mode="after")
    def _inherited_tool_call_supported(self) -> "CatalogSpec":
        if not self.defaults.checks or "tool_call" not in self.defaults.checks:
            return self
        problems = [
            f"defaults.checks: tool_call {tool_call_problem(endpoint.protocol)} "
            f"(models[{m}].endpoints[{e}] inherits it; give that endpoint its own `checks`)"
            for m, model in enumerate(self.models)
            for e, endpoint in enumerate(model.endpoints)
            if endpoint.checks is None and tool_call_problem(endpoint.protocol)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def spec_at(loc: tuple[Any, ...]) -> type[Spec] | None:
    """Which spec owns the mapping at `loc` (for 'unknown key' messages)."""
    if loc == ():
        return CatalogSpec
    if loc == ("defaults",):
        return DefaultsSpec
    nested = {"liveness": LivenessSpec, "confirm": ConfirmSpec, "price": PriceSpec, "retention": RetentionSpec}
    if loc and loc[-1] in nested and (len(loc) == 2 and loc[0] == "defaults" or len(loc) == 5):
        return nested[loc[-1]]
    if len(loc) == 2 and loc[0] == "maintenance" and isinstance(loc[1], int):
        return MaintenanceSpec
    if len(loc) == 2 and loc[0] == "models" and isinstance(loc[1], int):
        return ModelSpec
    if len(loc) == 4 and loc[0] == "models" and loc[2] == "endpoints" and isinstance(loc[3], int):
        return EndpointSpec
    return None
