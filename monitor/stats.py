"""Live figures as pure functions: medians, uptime, active, best-of. No I/O, no clocks.

Definitions (the contract's, README "Figures" section):
- an endpoint is *active* when its latest probe that was not `rate_limited` is ok and no older
  than 2 intervals;
- `uptime` = ok / (ok + failed) over the window, `rate_limited` probes counted in neither;
  `samples` = number of probes in the window;
- an endpoint's figures are medians over its ok probes in the trailing window;
- `best_*` are the best endpoint medians over the active endpoints; when none is active, over all
  endpoints with data in the window; null with no data at all.

Decisions the contract leaves open (tests pin each one):
- "no older than 2 intervals" is inclusive: exactly 2 intervals old is still active;
- the window is [now - window_s, now], both ends inclusive; samples after `now` are ignored;
- `active` is judged on every probe up to `now`, not only the window's, as the contract words
  it (it differs only for an interval longer than half the window);
- TTFT medians are reported in milliseconds, unrounded; ok probes without a TTFT or a
  tokens_per_second are left out of that figure's median only;
- with at least one active endpoint, `best_*` use active endpoints only, even when that
  leaves a figure null (an active endpoint whose replies are all one chunk has no throughput).

Spread and error bars (the "Quantiles and intervals" section at the end):
- `quantile` is the linear interpolation between order statistics (Hyndman-Fan type 7, numpy's
  and R's default, `statistics.quantiles(method="inclusive")`), so p50 is exactly `median`;
- `median_ci` is the distribution-free interval [X_(l), X_(n+1-l)] from order statistics, with the
  narrowest symmetric ranks whose exact binomial(n, 1/2) coverage reaches the confidence; when no
  such ranks exist (n <= 5 at 95 %) it is None, never an interval that covers less than it says;
- `wilson_interval` is the Wilson score interval for a proportion such as `uptime`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from statistics import NormalDist

from typing import TYPE_CHECKING

from monitor.probes.base import ErrorKind

if TYPE_CHECKING:  # annotations only: endpoint_state builds on this module
    from monitor.endpoint_state import IncidentRef, LocationView, MaintenanceRef


@dataclass(frozen=True)
class ProbeSample:
    """The columns of one stored probe that live figures need."""

    started_at: datetime
    ok: bool
    error_kind: str | None
    ttft_s: float | None
    tokens_per_second: float | None
    location: str = "local"
    trigger: str = "scheduled"  # Trigger value: only scheduled probes enter medians and uptime
    answer_ok: bool | None = None
    cold_start: bool = False
    input_tokens: int = 100
    suspect: bool = False
    cost_usd: float | None = None


SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(ProbeSample))


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
    # Cost (monitor/cost.py, set by LiveFigures): mean cost_usd of the window's priced probes, and
    # the monthly projection; None without a price.
    cost_usd_per_probe: float | None = None
    cost_usd_per_month: float | None = None
    # Set by monitor.endpoint_state (via the live figures' annotator); these defaults mean "no state
    # computed" (a figure built without one).
    state: str = "unknown"
    state_reason: str | None = None
    locations: tuple[LocationView, ...] = ()
    open_incident: IncidentRef | None = None
    maintenance: MaintenanceRef | None = None


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


def decode_rate(output_tokens: int, token_chunks: int, first_token_s: float, last_token_s: float) -> float | None:
    """Tokens per second after the first chunk (the Artificial Analysis formula):
    (output_tokens - first_chunk_tokens) / (t_last_token - t_first_token), with
    first_chunk_tokens = output_tokens / token_chunks. None with fewer than 2 token chunks or
    no time between the first and the last token."""
    if token_chunks < 2 or last_token_s <= first_token_s:
        return None
    first_chunk_tokens = output_tokens / token_chunks
    return (output_tokens - first_chunk_tokens) / (last_token_s - first_token_s)


# An endpoint stays active up to and INCLUDING this many intervals after its latest usable ok
# probe: one late or missed probe (scheduler jitter, a slow previous probe) must not flap it.
ACTIVE_INTERVALS = 2


def median(values: Iterable[float]) -> float | None:
    """Middle value; the mean of the two middle values for an even count; None when empty."""
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        return None
    middle = count // 2
    if count % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def in_window(samples: Iterable[ProbeSample], *, now: datetime, window_s: float) -> list[ProbeSample]:
    """Samples started within [now - window_s, now], both ends included, oldest first.

    A sample stamped after `now` (clock skew between processes) is left out, like an old one.
    """
    start = now - timedelta(seconds=window_s)
    return sorted((s for s in samples if start <= s.started_at <= now), key=lambda s: s.started_at)


def _is_rate_limited(sample: ProbeSample) -> bool:
    # Rate-limited probes say nothing about whether the endpoint works: they are skipped when
    # deciding `active` and counted in neither side of `uptime` (but they are `samples`).
    return not sample.ok and sample.error_kind == ErrorKind.RATE_LIMITED


def latest_judged(samples: Iterable[ProbeSample]) -> ProbeSample | None:
    """The latest probe that was not rate_limited (the one `active` is judged on); any input
    order; with equal timestamps the later one in the input wins."""
    latest: ProbeSample | None = None
    for sample in samples:
        if _is_rate_limited(sample):
            continue
        if latest is None or sample.started_at >= latest.started_at:
            latest = sample
    return latest


def active_until(samples: Iterable[ProbeSample], *, interval_s: float) -> datetime | None:
    """The last moment the endpoint counts as active if no new probe lands; None when its
    latest judged probe failed or there is none (it is not active at all)."""
    latest = latest_judged(samples)
    if latest is None or not latest.ok:
        return None
    return latest.started_at + timedelta(seconds=ACTIVE_INTERVALS * interval_s)


def is_active(samples: Iterable[ProbeSample], *, now: datetime, interval_s: float) -> bool:
    """Latest probe that was not rate_limited is ok and at most ACTIVE_INTERVALS intervals old."""
    until = active_until(samples, interval_s=interval_s)
    return until is not None and now <= until


def uptime(samples: Iterable[ProbeSample]) -> float | None:
    """ok / (ok + failed); rate_limited in neither; None when there is neither."""
    ok = failed = 0
    for sample in samples:
        if sample.ok:
            ok += 1
        elif not _is_rate_limited(sample):
            failed += 1
    return ok / (ok + failed) if ok + failed else None


def endpoint_live(
    provider: str,
    samples: Iterable[ProbeSample],
    *,
    now: datetime,
    interval_s: float,
    window_s: float,
) -> EndpointLive:
    """One endpoint's live figures from its probes. Medians, uptime, samples and the latest
    probe count only those in [now - window_s, now]; `active` looks at every probe up to `now`,
    so with an interval longer than half the window the caller passes 2 intervals of history."""
    samples = [s for s in samples if s.started_at <= now]
    window = in_window(samples, now=now, window_s=window_s)
    ok = [s for s in window if s.ok]
    ttft_s = median(s.ttft_s for s in ok if s.ttft_s is not None)
    newest = window[-1] if window else None
    return EndpointLive(
        provider=provider,
        active=is_active(samples, now=now, interval_s=interval_s),
        last_probe_at=newest.started_at if newest else None,
        last_error_kind=None if newest is None or newest.ok else newest.error_kind,
        ttft_ms_p50=None if ttft_s is None else ttft_s * 1000.0,
        throughput_tps_p50=median(s.tokens_per_second for s in ok if s.tokens_per_second is not None),
        uptime=uptime(window),
        samples=len(window),
    )


def _no_data(provider: str) -> EndpointLive:
    return EndpointLive(
        provider=provider, active=False, last_probe_at=None, last_error_kind=None,
        ttft_ms_p50=None, throughput_tps_p50=None, uptime=None, samples=0,
    )


def model_live(
    model_id: str,
    providers: Sequence[str],
    endpoint_lives: Iterable[EndpointLive],
    *,
    window_s: float,
) -> ModelLive:
    """A model's figures from its endpoints', reported in the configured provider order.

    A configured provider without an EndpointLive shows as inactive with no data; an
    EndpointLive for a provider that is not configured is ignored. `best_*` come from the
    active endpoints when at least one is active (even if an inactive one has better numbers,
    or if no active one has that figure), otherwise from every endpoint with data.
    """
    by_provider = {live.provider: live for live in endpoint_lives}
    endpoints = tuple(by_provider.get(p) or _no_data(p) for p in providers)
    active = [e for e in endpoints if e.active]
    pool = active or list(endpoints)
    ttfts = [e.ttft_ms_p50 for e in pool if e.ttft_ms_p50 is not None]
    rates = [e.throughput_tps_p50 for e in pool if e.throughput_tps_p50 is not None]
    probe_times = [e.last_probe_at for e in endpoints if e.last_probe_at is not None]
    return ModelLive(
        model=model_id,
        best_ttft_ms=min(ttfts) if ttfts else None,
        best_throughput_tps=max(rates) if rates else None,
        active_endpoints=len(active),
        total_endpoints=len(providers),
        available_via=tuple(providers),
        updated_at=max(probe_times) if probe_times else None,
        window_s=window_s,
        endpoints=endpoints,
    )


# ------------------------------------------------------------------- Quantiles and intervals


def quantile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between order statistics (Hyndman-Fan type 7).

    With the values sorted as x[0] <= ... <= x[n-1], h = (n - 1) * q and i = floor(h), the result
    is x[i] + (h - i) * (x[i+1] - x[i]); q = 0 is the minimum and q = 1 the maximum. This is the
    default of numpy and R and `statistics.quantiles(method="inclusive")`. It interpolates rather
    than picking a nearest rank so that p50 equals `median` exactly: at a fraction of exactly one
    half the result is the midpoint (a + b) / 2, the same float `median` returns.

    None for no values; one value is every quantile of itself. ValueError when q is outside [0, 1].
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q: must be within [0, 1], got {q!r}")
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        return None
    position = (count - 1) * q
    index = math.floor(position)
    fraction = position - index
    low = float(ordered[index])
    if fraction == 0.0:
        return low
    high = float(ordered[index + 1])
    if fraction == 0.5:
        return (low + high) / 2
    return low + fraction * (high - low)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be strictly between 0 and 1, got {confidence!r}")


@lru_cache(maxsize=256)
def median_ci_ranks(count: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (l, u = count + 1 - l) of the order statistics bounding `median_ci`.

    The number B of values below the true median of a continuous distribution is
    binomial(count, 1/2), so P(X_(l) <= median <= X_(u)) = P(l <= B <= u - 1)
    = 1 - 2 * P(B <= l - 1). The ranks are the largest l (the narrowest symmetric interval) whose
    coverage is at least `confidence`, summed exactly with integer binomial coefficients and
    compared with the exact value of the `confidence` float. None when even l = 1 (minimum to
    maximum, coverage 1 - 2^(1 - count)) falls short: count <= 5 at 95 %. Cached per
    (count, confidence); the exact sum costs about a millisecond at count = 2,000.
    """
    if count < 0:
        raise ValueError(f"count: must be >= 0, got {count!r}")
    _check_confidence(confidence)
    target = Fraction(confidence)
    total = 2**count
    # coverage(l) = (total - 2 * below) / total with below = sum of C(count, k) for k < l.
    below = 0
    term = 1  # C(count, k)
    lower: int | None = None
    for k in range(count):
        below += term
        if (total - 2 * below) * target.denominator < target.numerator * total:
            break
        lower = k + 1
        term = term * (count - k) // (k + 1)
    if lower is None:
        return None
    return lower, count + 1 - lower


def median_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval (X_(l), X_(u)) for the median, from order statistics.

    The ranks come from `median_ci_ranks`: the narrowest symmetric pair whose exact coverage is
    at least `confidence` for any continuous distribution; with ties (a discrete distribution)
    the closed interval covers at least as often. The coverage is therefore conservative and
    known exactly per count: 96.9 % at n = 6, 97.9 % at 10, 95.7 % at 30, 96.5 % at 100 (95 %).

    None when no interval reaches the confidence, which at 95 % means n <= 5 (n = 0, 1 and 2
    included): [min, max] would cover only 1 - 2^(1 - n) (93.75 % at n = 5, 0 at n = 1) while
    being shown as a 95 % interval, so a figure from so few probes carries no error bar rather
    than a misleading one. ValueError when confidence is not strictly between 0 and 1.
    """
    ordered = sorted(values)
    ranks = median_ci_ranks(len(ordered), confidence)
    if ranks is None:
        return None
    lower, upper = ranks
    return float(ordered[lower - 1]), float(ordered[upper - 1])


# The two-sided 95 % normal quantile 1.95996398454005424 as scipy's norm.ppf(0.975) returns it,
# so 95 % bounds match scipy and statsmodels to the last digit (NormalDist().inv_cdf(0.975) is two
# units in the last place lower).
Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (e.g. `uptime` = ok out of ok + failed).

    With p = successes / trials and z the two-sided normal quantile of `confidence`
    (`Z_95` at 0.95, `NormalDist().inv_cdf((1 + confidence) / 2)` otherwise):
    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2).
    The bounds are exact at the edges: 0.0 for no successes, 1.0 for all, and always within [0, 1].
    Unlike the normal (Wald) interval it does not collapse to a point at 0 or n successes.

    None for no trials. ValueError for counts out of range or a confidence not strictly between
    0 and 1.
    """
    _check_confidence(confidence)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes, trials: need 0 <= successes <= trials, got {successes!r}, {trials!r}")
    if trials == 0:
        return None
    z = Z_95 if confidence == 0.95 else NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    z2 = z * z
    p = successes / trials
    scale = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / scale
    half = z / scale * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def answer_ok_ratio(samples: Iterable[ProbeSample]) -> float | None:
    """Share of the ok probes whose answer canary was checked and passed; None when none was
    checked (the check is off, or no ok probe in the window)."""
    checked = [s.answer_ok for s in samples if s.ok and s.answer_ok is not None]
    return sum(checked) / len(checked) if checked else None
