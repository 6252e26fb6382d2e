"""The validated catalog as the rest of the monitor sees it: immutable, every default applied.

`Catalog` -> `ModelConfig` -> `EndpointConfig`. `base_url` and `model` stay templates (`${VAR}`
unexpanded) until `EndpointConfig.to_target` resolves them against an environment; `options` is
a read-only mapping holding exactly the keys the file set (absent and null stay distinct).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.catalog.resolve import resolve_target, template_variables
from monitor.probes.base import ProbeTarget

BUILTIN_INTERVAL_S = 30 * 60.0
BUILTIN_TIMEOUT_S = 60.0
BUILTIN_MAX_TOKENS = 128


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Defaults(_Frozen):
    interval_s: float = BUILTIN_INTERVAL_S
    timeout_s: float = BUILTIN_TIMEOUT_S
    max_tokens: int = BUILTIN_MAX_TOKENS


class EndpointConfig(_Frozen):
    """One provider serving one model, with every default already applied."""

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
        return resolve_target(
            protocol=self.protocol,
            base_url=self.base_url,
            model=self.model,
            api_key_env=self.api_key_env,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            options=self.options,
            environ=environ,
        )


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
