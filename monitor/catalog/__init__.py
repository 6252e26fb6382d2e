"""The endpoints catalog: the YAML config file -> validated, immutable models -> probe targets.

Owns the config format of the contract (`config/endpoints.yaml`):

    defaults: {interval: 30m, timeout: 60s, max_tokens: 128}   # optional, these are the built-ins
    models:
      - id: meta-llama/llama-3.2-1b-instruct
        name: "Meta: Llama 3.2 1B Instruct"                   # optional, defaults to the id
        endpoints:
          - provider: Cloudflare
            protocol: cloudflare                               # a name in monitor.probes.registry
            base_url: https://api.cloudflare.com/client/v4/accounts/${CLOUDFLARE_ACCOUNT_ID}/ai
            model: "@cf/meta/llama-3.2-1b-instruct"
            api_key_env: CLOUDFLARE_API_TOKEN                  # optional (local servers need none)
            interval: 5m        # optional per-endpoint overrides of the defaults
            timeout: 30s
            max_tokens: 64
            options: {max_tokens_field: max_completion_tokens} # validated by the protocol
            price: {input_per_mtok: 0.027, output_per_mtok: 0.201}
            checks: [answer]                                   # [answer, tool_call] adds a tool call
    maintenance:                                               # optional planned windows
      - {start: 2026-12-24T00:00:00Z, end: 2026-12-24T06:00:00Z, provider: Cloudflare, reason: upgrade}
    budget_per_month: 5                                        # optional; check-config warns above it

`defaults` and each endpoint may also set liveness {interval, enabled}, confirm {interval,
failures}, quorum, degraded_ttft, input_tokens, answer_ok_min and keep_cold_starts; `defaults`
alone sets retention {raw, hourly}. Bounds and built-ins: `schema` and `models`.

The package, layer by layer:
- `loader`: reading the file with bounds (size, aliases, depth) and composing YAML with lines.
- `schema`: the strict specs of the file, durations, bounds, options checked per protocol.
- `diagnostics`: `CatalogError` and the one-line, field-naming messages; config warnings.
- `models`: the immutable `Catalog` / `ModelConfig` / `EndpointConfig` the monitor uses.
- `resolve`: `${VAR}` expansion and the API key lookup -> `ProbeTarget` (also used by the CLI).
- `credentials`, `files`: what counts as an inline secret; bounded reading of named files.

Validation never reads the environment; resolution never raises for a missing variable (the
target carries `config_error`). The file holds only environment variable NAMES, and no message
ever repeats a value that could be a key.
"""

from monitor.catalog.diagnostics import CatalogError, catalog_warnings
from monitor.catalog.loader import MAX_CONFIG_BYTES, MAX_DEPTH, load_catalog, parse_catalog
from monitor.catalog.models import (
    BUILTIN_INTERVAL_S,
    BUILTIN_MAX_TOKENS,
    BUILTIN_TIMEOUT_S,
    Catalog,
    Defaults,
    EndpointConfig,
    EndpointSettings,
    MaintenanceWindow,
    ModelConfig,
    Price,
    Retention,
)
from monitor.catalog.resolve import resolve_target, template_variables
from monitor.catalog.schema import parse_duration

__all__ = [
    "BUILTIN_INTERVAL_S", "BUILTIN_MAX_TOKENS", "BUILTIN_TIMEOUT_S", "MAX_CONFIG_BYTES", "MAX_DEPTH",
    "Catalog", "CatalogError", "Defaults", "EndpointConfig", "EndpointSettings", "MaintenanceWindow",
    "ModelConfig", "Price", "Retention", "catalog_warnings",
    "load_catalog", "parse_catalog", "parse_duration", "resolve_target", "template_variables",
]
