"""The validated catalog as the rest of the monitor sees it: immutable, every default applied.

`Catalog` -> `ModelConfig` -> `EndpointConfig`. `base_url` and `model` stay templates (`${VAR}`
unexpanded) until `EndpointConfig.to_target` resolves them against an environment; `options` is
a read-only mapping holding exactly the keys the file set (absent and null stay distinct).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.catalog.resolve import resolve_target, template_variables
from monitor.probes.base import DEFAULT_INPUT_TOKENS, ProbeTarget

BUILTIN_INTERVAL_S = 30 * 60.0
BUILTIN_TIMEOUT_S = 60.0
BUILTIN_MAX_TOKENS = 128
BUILTIN_LIVENESS_S = 60.0
BUILTIN_CONFIRM_S = 60.0
BUILTIN_CONFIRM_FAILURES = 2
BUILTIN_DEGRADED_TTFT_S = 5.0
BUILTIN_INPUT_TOKENS = DEFAULT_INPUT_TOKENS
BUILTIN_CHECKS: tuple[str, ...] = ("answer",)
BUILTIN_ANSWER_OK_MIN = 0.8
BUILTIN_RETENTION_RAW_S = 90 * 86400.0
BUILTIN_RETENTION_HOURLY_S = 400 * 86400.0


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Frozen):
    """USD per 1M tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class Retention(_Frozen):
    raw_s: float = BUILTIN_RETENTION_RAW_S
    hourly_s: float = BUILTIN_RETENTION_HOURLY_S


class EndpointSettings(_Frozen):
    """What `defaults` and each endpoint may set, with every built-in default applied."""

    interval_s: float = BUILTIN_INTERVAL_S
    timeout_s: float = BUILTIN_TIMEOUT_S
    max_tokens: int = BUILTIN_MAX_TOKENS
    # None: no liveness checks for this endpoint.
    liveness_interval_s: float | None = BUILTIN_LIVENESS_S
    confirm_interval_s: float = BUILTIN_CONFIRM_S
    confirm_failures: int = BUILTIN_CONFIRM_FAILURES
    # None: a majority of the locations that probed the endpoint within 2 intervals.
    quorum: int | None = None
    degraded_ttft_s: float = BUILTIN_DEGRADED_TTFT_S
    input_tokens: int = BUILTIN_INPUT_TOKENS
    price: Price | None = None
    checks: tuple[str, ...] = BUILTIN_CHECKS
    answer_ok_min: float = BUILTIN_ANSWER_OK_MIN
    keep_cold_starts: bool = False


class Defaults(EndpointSettings):
    retention: Retention = Field(default_factory=Retention)


class EndpointConfig(EndpointSettings):
    """One provider serving one model, with every default already applied."""

    provider: str
    protocol: str
    base_url: str
    model: str
    api_key_env: str | None = None
    options: Mapping[str, Any] = Field(default_factory=dict)

    def quorum_of(self, locations: int) -> int:
        """How many of `locations` probing locations must see the endpoint failing for `down`:
        the configured number (capped at `locations`), else a strict majority, so that one
        location alone decides for itself, and one of two failing is `regional`, not `down`."""
        if locations <= 0:
            return 1
        if self.quorum is not None:
            return min(self.quorum, locations)
        return locations // 2 + 1

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
        return resolve_target(
            protocol=self.protocol,
            base_url=self.base_url,
            model=self.model,
            api_key_env=self.api_key_env,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            options=self.options,
            environ=environ,
            input_tokens=self.input_tokens,
            checks=self.checks,
        )


class ModelConfig(_Frozen):
    id: str
    name: str
    endpoints: tuple[EndpointConfig, ...]

    def endpoint(self, provider: str) -> EndpointConfig | None:
        return next((e for e in self.endpoints if e.provider == provider), None)


class MaintenanceWindow(_Frozen):
    """A planned window [start, end). None for model/provider/location: all of them."""

    start: datetime
    end: datetime
    model: str | None = None
    provider: str | None = None
    location: str | None = None
    reason: str = ""

    def covers(self, model_id: str, provider: str, at: datetime, location: str | None = None) -> bool:
        return (
            self.start <= at < self.end
            and (self.model is None or self.model == model_id)
            and (self.provider is None or self.provider == provider)
            and (self.location is None or location is None or self.location == location)
        )


class Catalog(_Frozen):
    defaults: Defaults = Field(default_factory=Defaults)
    models: tuple[ModelConfig, ...]
    maintenance: tuple[MaintenanceWindow, ...] = ()
    budget_per_month: float | None = None

    def in_maintenance(
        self, model_id: str, provider: str, at: datetime, location: str | None = None
    ) -> MaintenanceWindow | None:
        """The maintenance window covering this endpoint at `at`, if any."""
        return next((w for w in self.maintenance if w.covers(model_id, provider, at, location)), None)

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
