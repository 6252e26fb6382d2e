"""Live figures as pure functions: medians, uptime, active, best-of. No I/O, no clocks.

Definitions (the contract's, README "Figures" section):
- an endpoint is *active* when its latest probe that was not `rate_limited` is ok and no older
  than 2 intervals;
- `uptime` = ok / (ok + failed) over the window, `rate_limited` probes counted in neither;
  `samples` = number of probes in the window;
- an endpoint's figures are medians over its ok probes in the trailing window;
- `best_*` are the best endpoint medians over the active endpoints; when none is active, over all
  endpoints with data in the window; null with no data at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ProbeSample:
    """The columns of one stored probe that live figures need."""

    started_at: datetime
    ok: bool
    error_kind: str | None
    ttft_s: float | None
    tokens_per_second: float | None


@dataclass(frozen=True)
class EndpointLive:
    provider: str
    active: bool
    last_probe_at: datetime | None
    last_error_kind: str | None
    ttft_ms_p50: float | None
    throughput_tps_p50: float | None
    uptime: float | None  # None when the window has no ok or failed probe
    samples: int


@dataclass(frozen=True)
class ModelLive:
    model: str
    best_ttft_ms: float | None
    best_throughput_tps: float | None
    active_endpoints: int
    total_endpoints: int
    available_via: tuple[str, ...]
    updated_at: datetime | None  # newest probe of any endpoint of the model
    window_s: float
    endpoints: tuple[EndpointLive, ...]
