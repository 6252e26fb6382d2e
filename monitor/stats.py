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

Which probes count (the "Figures of a window" section):
- `active` and the latest probe use every probe (any trigger, any workload profile);
- medians, p5/p95, uptime, `samples`, `ok_samples` and the intervals use scheduled probes of the
  figure's workload profile only; TTFT figures leave cold starts out unless the endpoint keeps
  them; uptime leaves out probes inside maintenance windows (and rate_limited ones, as before).

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
from collections.abc import Callable, Iterable, Sequence
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
    # Error bars and spread (figures; see "Figures of a window" below). Defaults keep literal
    # constructions short; endpoint_live always sets them.
    ok_samples: int = 0
    ttft_ms_p5: float | None = None
    ttft_ms_p95: float | None = None
    ttft_ms_p50_ci: tuple[float, float] | None = None
    throughput_tps_p50_ci: tuple[float, float] | None = None
    uptime_ci: tuple[float, float] | None = None
    answer_ok_ratio: float | None = None
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
    ok, failed = uptime_counts(samples)
    return ok / (ok + failed) if ok + failed else None


def endpoint_live(
    provider: str,
    samples: Iterable[ProbeSample],
    *,
    now: datetime,
    interval_s: float,
    window_s: float,
    input_tokens: int | None = None,
    keep_cold_starts: bool = False,
    in_maintenance: Callable[[ProbeSample], bool] | None = None,
) -> EndpointLive:
    """One endpoint's live figures from its probes. `active` looks at every probe up to `now`
    (any trigger, any profile), so with an interval longer than half the window the caller passes
    2 intervals of history; the latest probe is the newest of any kind in [now - window_s, now];
    everything else is `window_figures` of the window (scheduled probes of the profile only)."""
    samples = [s for s in samples if s.started_at <= now]
    window = in_window(samples, now=now, window_s=window_s)
    return EndpointLive(
        provider=provider,
        active=is_active(samples, now=now, interval_s=interval_s),
        **window_figures(
            window, input_tokens=input_tokens, keep_cold_starts=keep_cold_starts, in_maintenance=in_maintenance
        ),
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
    best_ttft_ms, best_throughput_tps = best_figures(endpoints)
    probe_times = [e.last_probe_at for e in endpoints if e.last_probe_at is not None]
    return ModelLive(
        model=model_id,
        best_ttft_ms=best_ttft_ms,
        best_throughput_tps=best_throughput_tps,
        active_endpoints=len(active),
        total_endpoints=len(providers),
        available_via=tuple(providers),
        updated_at=max(probe_times) if probe_times else None,
        window_s=window_s,
        endpoints=endpoints,
    )


def best_figures(endpoints: Sequence[EndpointLive]) -> tuple[float | None, float | None]:
    """(best TTFT median, best throughput median): over the active endpoints when at least one
    is active, otherwise over every endpoint with data; None where no endpoint has that figure."""
    pool = [e for e in endpoints if e.active] or list(endpoints)
    ttfts = [e.ttft_ms_p50 for e in pool if e.ttft_ms_p50 is not None]
    rates = [e.throughput_tps_p50 for e in pool if e.throughput_tps_p50 is not None]
    return (min(ttfts) if ttfts else None), (max(rates) if rates else None)


# ------------------------------------------------------------------------ Figures of a window

# The EndpointLive fields that depend on the window (and on the workload profile); the rest
# (`active`, and what other modules add, such as `state`) are judged on every probe.
WINDOW_FIELDS: tuple[str, ...] = (
    "last_probe_at", "last_error_kind", "ttft_ms_p50", "throughput_tps_p50", "uptime", "samples",
    "ok_samples", "ttft_ms_p5", "ttft_ms_p95", "ttft_ms_p50_ci", "throughput_tps_p50_ci", "uptime_ci",
    "answer_ok_ratio",
)


def published(samples: Iterable[ProbeSample], *, input_tokens: int | None = None) -> list[ProbeSample]:
    """The probes behind published figures: scheduled ones (a confirmation re-probe after a
    failure, or a manual "probe now", would weigh failures and one moment twice), of the
    workload profile `input_tokens` (None: any profile). Input order is kept."""
    return [
        s for s in samples
        if s.trigger == "scheduled" and (input_tokens is None or s.input_tokens == input_tokens)
    ]


def uptime_counts(
    samples: Iterable[ProbeSample], *, in_maintenance: Callable[[ProbeSample], bool] | None = None
) -> tuple[int, int]:
    """(ok, failed) behind `uptime`: rate_limited probes in neither, nor probes for which
    `in_maintenance` is true (planned downtime is not unavailability)."""
    ok = failed = 0
    for sample in samples:
        if in_maintenance is not None and in_maintenance(sample):
            continue
        if sample.ok:
            ok += 1
        elif not _is_rate_limited(sample):
            failed += 1
    return ok, failed


def _scaled(pair: tuple[float, float] | None, factor: float) -> tuple[float, float] | None:
    return None if pair is None else (pair[0] * factor, pair[1] * factor)


@dataclass
class FigureInputs:
    """What a window's published figures are computed from: counts and the values behind the
    medians. Built from ProbeSamples (`figure_inputs`) or from the store's figure rows
    (`inputs_from_rows`), so the in-memory and the database paths share `figures_of`."""

    samples: int = 0
    ok_samples: int = 0
    up: int = 0  # ok, outside maintenance
    down: int = 0  # failed (not rate_limited), outside maintenance
    ttfts_s: list[float] = dataclasses.field(default_factory=list)
    rates: list[float] = dataclasses.field(default_factory=list)
    answers_checked: int = 0
    answers_passed: int = 0

    def add(
        self, ok: bool, error_kind: str | None, ttft_s: float | None, tokens_per_second: float | None,
        cold_start: bool, answer_ok: bool | None, in_maintenance: bool, *, keep_cold_starts: bool,
    ) -> None:
        """Account one published probe (scheduled, of the profile)."""
        self.samples += 1
        if ok:
            self.ok_samples += 1
            if not in_maintenance:
                self.up += 1
            if ttft_s is not None and (keep_cold_starts or not cold_start):
                self.ttfts_s.append(ttft_s)
            if tokens_per_second is not None:
                self.rates.append(tokens_per_second)
            if answer_ok is not None:
                self.answers_checked += 1
                self.answers_passed += bool(answer_ok)
        elif error_kind != ErrorKind.RATE_LIMITED and not in_maintenance:
            self.down += 1


def figure_inputs(
    counted: Iterable[ProbeSample],
    *,
    keep_cold_starts: bool = False,
    in_maintenance: Callable[[ProbeSample], bool] | None = None,
) -> FigureInputs:
    """FigureInputs of already `published` probes."""
    inputs = FigureInputs()
    for s in counted:
        inputs.add(
            s.ok, s.error_kind, s.ttft_s, s.tokens_per_second, s.cold_start, s.answer_ok,
            in_maintenance is not None and in_maintenance(s), keep_cold_starts=keep_cold_starts,
        )
    return inputs


def inputs_from_rows(rows: Iterable[Sequence[object]], *, keep_cold_starts: bool = False) -> FigureInputs:
    """FigureInputs from figure rows `(ok, error_kind, ttft_s, tokens_per_second, cold_start,
    answer_ok, in_maintenance)` of published probes, as `Store.window_figure_rows` returns them."""
    inputs = FigureInputs()
    add = inputs.add
    for ok, error_kind, ttft_s, rate, cold_start, answer_ok, maintenance in rows:
        add(bool(ok), error_kind, ttft_s, rate, bool(cold_start), answer_ok, bool(maintenance),  # type: ignore[arg-type]
            keep_cold_starts=keep_cold_starts)
    return inputs


def figures_of(inputs: FigureInputs) -> dict[str, object]:
    """The WINDOW_FIELDS other than the latest probe's, from FigureInputs."""
    ttft_s = median(inputs.ttfts_s)
    ttft_p5, ttft_p95 = quantile(inputs.ttfts_s, 0.05), quantile(inputs.ttfts_s, 0.95)
    up, down = inputs.up, inputs.down
    return {
        "ttft_ms_p50": None if ttft_s is None else ttft_s * 1000.0,
        "throughput_tps_p50": median(inputs.rates),
        "uptime": up / (up + down) if up + down else None,
        "samples": inputs.samples,
        "ok_samples": inputs.ok_samples,
        "ttft_ms_p5": None if ttft_p5 is None else ttft_p5 * 1000.0,
        "ttft_ms_p95": None if ttft_p95 is None else ttft_p95 * 1000.0,
        "ttft_ms_p50_ci": _scaled(median_ci(inputs.ttfts_s), 1000.0),
        "throughput_tps_p50_ci": median_ci(inputs.rates),
        "uptime_ci": wilson_interval(up, up + down),
        "answer_ok_ratio": inputs.answers_passed / inputs.answers_checked if inputs.answers_checked else None,
    }


def window_figures(
    window: Sequence[ProbeSample],
    *,
    input_tokens: int | None = None,
    keep_cold_starts: bool = False,
    in_maintenance: Callable[[ProbeSample], bool] | None = None,
) -> dict[str, object]:
    """The WINDOW_FIELDS of one endpoint from the probes of its window (oldest first).

    - `last_probe_at` / `last_error_kind`: the newest probe of any trigger and profile;
    - everything else counts only `published` probes (scheduled, of the profile): `samples` is
      their number (rate_limited included), `ok_samples` the ok ones among them;
    - TTFT median, p5, p95 and the median's CI over the ok ones with a TTFT, leaving out cold
      starts (a model load, not the endpoint's warm latency) unless `keep_cold_starts`;
    - throughput median and CI over the ok ones with a decode rate (a cold start loads the model
      before the first token, so it does not change the decode rate: cold starts stay in);
    - `uptime` and its Wilson interval from `uptime_counts` (maintenance and rate_limited out);
    - `answer_ok_ratio` over the ok ones whose answer was checked (`answer_ok_ratio`).
    """
    newest = window[-1] if window else None
    inputs = figure_inputs(
        published(window, input_tokens=input_tokens), keep_cold_starts=keep_cold_starts,
        in_maintenance=in_maintenance,
    )
    return {
        "last_probe_at": newest.started_at if newest else None,
        "last_error_kind": None if newest is None or newest.ok else newest.error_kind,
        **figures_of(inputs),
    }


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
