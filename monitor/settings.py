"""The one settings object. The only module that reads process configuration from the environment.

Every value can come from an environment variable (prefix `LLM_MONITOR_`, except the contract's
plain `DATABASE_URL`) and most from a CLI flag, which wins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from monitor.catalog.schema import INTERVAL_MAX_S, INTERVAL_MIN_S

DEFAULT_DATABASE_URL = "sqlite:///./data/monitor.db"
DEFAULT_CONFIG_PATH = Path("config/endpoints.yaml")
_LOCATION = re.compile(r"^[a-z0-9-]{1,32}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_MONITOR_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "LLM_MONITOR_DATABASE_URL"),
    )
    config_path: Path = DEFAULT_CONFIG_PATH
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Overrides every endpoint's interval (seconds), within the config's bounds. Tests use 1-5 s.
    interval_override_s: float | None = Field(None, ge=INTERVAL_MIN_S, le=INTERVAL_MAX_S, allow_inf_nan=False)
    # Trailing window for medians and uptime.
    window_s: float = Field(24 * 3600, gt=0)
    # At most this many probes run at once, across all endpoints.
    max_concurrent_probes: int = Field(64, ge=1)
    # Probes whose results could not be written yet (database down) are kept up to this many.
    buffer_size: int = Field(10_000, ge=1)
    # SIGTERM: how long in-flight probes may take to finish before they are abandoned.
    shutdown_grace_s: float = Field(30.0, ge=0)
    # API-only processes re-read live figures from the database this often.
    live_refresh_s: float = Field(15.0, gt=0)
    # SIGHUP / POST /admin/reload: a config file that takes longer to read is rejected.
    reload_timeout_s: float = Field(30.0, gt=0)
    # Comma-separated in the environment: LLM_MONITOR_CORS_ORIGINS=https://a.example,https://b.example
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cache_max_age_s: int = Field(60, ge=0)
    # Admin routes (probe now, reload) are off unless this is set.
    admin_token: SecretStr | None = None
    # /metrics: a rendering is reused by every scrape for this long (seconds; 0: render per scrape).
    metrics_cache_s: float = Field(5.0, ge=0)
    # When set, /metrics requires `Authorization: Bearer <token>` (Prometheus: `authorization:`).
    metrics_token: SecretStr | None = None
    log_level: str = "INFO"
    # Where this process probes from: stamped on every probe it stores and on per-location series.
    location: str = Field("local", pattern=r"^[a-z0-9-]{1,32}$")
    # HA scheduling: every location probing this catalog, in one agreed order, comma-separated
    # (LLM_MONITOR_LOCATIONS=eu,us,ap). This location's phases are shifted by index/L of an
    # interval, so with L locations some location probes each endpoint every interval / L.
    # Empty: this location alone. Must contain `location`.
    locations: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A slot claim's lease is the probe's timeout plus this margin; after it expires unfinished
    # (its prober died), another scheduler of the location takes the slot over.
    claim_lease_margin_s: float = Field(10.0, gt=0, le=3600)
    # Self-test: a loopback reference endpoint with known timings, probed this often; while the
    # monitor's own TTFT error on it exceeds the threshold, finished probes are flagged `suspect`.
    selftest_interval_s: float = Field(300.0, gt=0)
    selftest_max_error_s: float = Field(0.05, gt=0)
    # Incidents and endpoint state: every endpoint is re-evaluated from the database this often
    # (besides right after this process's own probes are stored).
    incident_sweep_s: float = Field(15.0, gt=0)
    # Figures over longer windows (?window=7d|30d|90d, read from the database): reused for at
    # most this long; the long-range metrics (llm_endpoint_uptime_ratio{window}, ...) are
    # refreshed this often.
    window_cache_s: float = Field(60.0, gt=0)
    window_metrics_s: float = Field(900.0, gt=0)
    # Retention (`db prune`) runs this often in the service; the roll-up job this often.
    prune_interval_s: float = Field(3600.0, gt=0)
    rollup_interval_s: float = Field(60.0, gt=0)
    # HTTP server limits (api.server): a request head must arrive within this many seconds of
    # the connection opening or the previous response; idle keep-alive connections close after
    # HTTP_KEEP_ALIVE_S; beyond HTTP_MAX_CONNECTIONS requests get 503; a request head larger
    # than HTTP_MAX_HEAD_BYTES gets 400.
    http_header_timeout_s: float = Field(10.0, gt=0)
    http_keep_alive_s: int = Field(5, ge=1)
    http_max_connections: int = Field(1000, ge=1)
    http_max_head_bytes: int = Field(16 * 1024, ge=1024)

    @field_validator("locations", mode="before")
    @classmethod
    def _split_locations(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("locations")
    @classmethod
    def _valid_locations(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for name in value:
            if not _LOCATION.fullmatch(name):
                raise ValueError(f"location {name!r} must match {_LOCATION.pattern}")
        if len(set(value)) != len(value):
            raise ValueError("a location is listed twice")
        own = info.data.get("location")
        if value and own is not None and own not in value:
            raise ValueError(f"must list this process's location {own!r} (--location), got {','.join(value)}")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
