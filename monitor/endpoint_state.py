"""Endpoint state and incident decisions as pure functions: per-location views, quorum, `state`,
impaired locations, and whether an incident opens, stays open or resolves. No I/O, no clock.

Definitions (README "Endpoint state"):
- A location has *probed recently* when its newest probe (any trigger, any outcome) started at
  most ACTIVE_INTERVALS (2) intervals before `now`. Only those locations vote.
- A location is *failing* when its newest `confirm_failures` provider failures (every failed
  probe except `NOT_PROVIDER_FAILURES`: rate_limited, config_error, which are skipped) have no ok
  probe after them. Every trigger counts (scheduled, confirm, manual).
- A location is *impaired* when it probed at least two endpoints of at least two providers
  recently and its newest probe (rate_limited and config_error skipped) failed for every one of
  them: the monitor's own network, not the providers. Impaired locations are left out of the
  quorum (never counted as failing nor as voting). The newest probe, not a confirmed run, so
  that a location whose network just broke is recognised before its first endpoint's failure is
  confirmed (which would otherwise open an incident when it is the only location probing).
- quorum q = `EndpointConfig.quorum_of(n)` over the n recent, non-impaired locations.
- `state`, first match wins:
  `unknown` (no probe at all, no location probed recently, every recent one is impaired, or
  they have only rate_limited probes);
  `misconfigured` (every voting location's newest probe failed with config_error);
  `down` (at least q voting locations failing); `regional` (some location failing, impaired
  ones included, but fewer than q voting ones); `degraded` (the window's TTFT median of scheduled
  ok probes above `degraded_ttft_s`, or `answer_ok_ratio` below `answer_ok_min`); `up`.
- top-level `active` (up by quorum): at least one voting location active (stats.is_active on
  that location's probes) and fewer than q voting locations not active. With one location this
  is exactly `stats.is_active`, today's rule.
- *recovered* (an open incident resolves): at least q voting locations whose newest
  non-rate-limited probe is ok. The incident's `resolved_at` is when the q-th of them began its
  current run of ok probes (its first success).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.probes.base import NOT_PROVIDER_FAILURES, ErrorKind, Trigger
from monitor.stats import (
    ACTIVE_INTERVALS,
    ProbeSample,
    active_until,
    answer_ok_ratio,
    in_window,
    is_active,
    latest_judged,
    median,
    uptime,
)

STATES: tuple[str, ...] = ("up", "degraded", "regional", "down", "misconfigured", "unknown")
_SKIPPED = frozenset(kind.value for kind in NOT_PROVIDER_FAILURES)
# Impairment needs this many distinct endpoints and providers failing at one location, so that a
# single provider's outage (or a one-endpoint catalog) is never mistaken for the monitor's own.
IMPAIRED_MIN_ENDPOINTS = 2
IMPAIRED_MIN_PROVIDERS = 2


@dataclass(frozen=True)
class StateRules:
    """The endpoint settings the state depends on (from `EndpointConfig`, see `rules_of`)."""

    interval_s: float
    confirm_failures: int = 2
    quorum_of: Callable[[int], int] = lambda n: n // 2 + 1
    degraded_ttft_s: float = 5.0
    answer_ok_min: float = 0.8
    keep_cold_starts: bool = False


def rules_of(endpoint: object, interval_s: float) -> StateRules:
    """StateRules from an `EndpointConfig` (typed loosely: this module stays catalog-free)."""
    return StateRules(
        interval_s=interval_s,
        confirm_failures=getattr(endpoint, "confirm_failures"),
        quorum_of=getattr(endpoint, "quorum_of"),
        degraded_ttft_s=getattr(endpoint, "degraded_ttft_s"),
        answer_ok_min=getattr(endpoint, "answer_ok_min"),
        keep_cold_starts=getattr(endpoint, "keep_cold_starts"),
    )


@dataclass(frozen=True)
class LocationView:
    """One location's view of an endpoint (the contract's `locations[]` item, plus `failing`)."""

    location: str
    active: bool
    last_probe_at: datetime | None
    last_error_kind: str | None
    ttft_ms_p50: float | None
    throughput_tps_p50: float | None
    uptime: float | None
    samples: int
    failing: bool = False
    recent: bool = False  # probed within 2 intervals: it votes (unless impaired)


@dataclass(frozen=True)
class IncidentRef:
    """The open incident as live figures show it."""

    id: int
    started_at: datetime
    locations: tuple[str, ...]


@dataclass(frozen=True)
class MaintenanceRef:
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True)
class EndpointState:
    state: str
    state_reason: str | None
    active: bool
    locations: tuple[LocationView, ...]
    voting: tuple[str, ...] = ()  # recent, non-impaired locations
    failing: tuple[str, ...] = ()  # voting locations that are failing
    quorum: int = 1
    started_at: datetime | None = None  # earliest first failure of the failing voting locations
    error_kinds: Mapping[str, int] = field(default_factory=dict)  # of those failure runs
    recovered: bool = False
    recovered_at: datetime | None = None


@dataclass(frozen=True)
class Incident:
    """One stored incident (`incident` table)."""

    id: int
    model: str
    provider: str
    started_at: datetime
    detected_at: datetime
    resolved_at: datetime | None
    error_kinds: Mapping[str, int]
    locations: tuple[str, ...]

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def ref(self) -> IncidentRef:
        return IncidentRef(self.id, self.started_at, self.locations)


# ---------------------------------------------------------------------------------- per location


def _provider_failure(sample: ProbeSample) -> bool:
    return not sample.ok and sample.error_kind not in _SKIPPED


def failure_run(samples: Iterable[ProbeSample]) -> list[ProbeSample]:
    """Provider failures newer than the newest ok probe, newest first (skipped kinds left out)."""
    run: list[ProbeSample] = []
    for sample in sorted(samples, key=lambda s: s.started_at, reverse=True):
        if sample.ok:
            break
        if _provider_failure(sample):
            run.append(sample)
    return run


def latest_failed(samples: Iterable[ProbeSample]) -> bool:
    """The newest probe that was neither rate_limited nor config_error is a failure."""
    newest = next(
        (s for s in sorted(samples, key=lambda s: s.started_at, reverse=True)
         if s.ok or s.error_kind not in _SKIPPED),
        None,
    )
    return newest is not None and not newest.ok


def is_failing(samples: Iterable[ProbeSample], confirm_failures: int) -> bool:
    """The newest `confirm_failures` provider failures have no ok probe after them."""
    return len(failure_run(samples)) >= max(1, confirm_failures)


def ok_run_start(samples: Iterable[ProbeSample]) -> datetime | None:
    """Start of the current run of ok probes (rate_limited and config_error neither break nor
    count); None when the newest judged probe failed or there is none."""
    start: datetime | None = None
    for sample in sorted(samples, key=lambda s: s.started_at, reverse=True):
        if sample.ok:
            start = sample.started_at
        elif _provider_failure(sample):
            break
    return start


def _published(samples: Sequence[ProbeSample], keep_cold_starts: bool) -> list[ProbeSample]:
    """Scheduled probes, without cold starts unless kept: what medians and uptime use."""
    return [
        s for s in samples
        if s.trigger == Trigger.SCHEDULED.value and (keep_cold_starts or not s.cold_start)
    ]


def location_view(
    location: str,
    samples: Sequence[ProbeSample],
    *,
    now: datetime,
    window_s: float,
    rules: StateRules,
    in_maintenance: Callable[[datetime, str], bool] | None = None,
) -> LocationView:
    """Figures of one location's probes (samples must all be of that location)."""
    samples = [s for s in samples if s.started_at <= now]
    window = in_window(samples, now=now, window_s=window_s)
    published = _published(window, rules.keep_cold_starts)
    ok = [s for s in published if s.ok]
    counted = [s for s in published if in_maintenance is None or not in_maintenance(s.started_at, location)]
    newest = max(samples, key=lambda s: s.started_at) if samples else None
    ttft_s = median(s.ttft_s for s in ok if s.ttft_s is not None)
    recent = newest is not None and now - newest.started_at <= timedelta(
        seconds=ACTIVE_INTERVALS * rules.interval_s
    )
    return LocationView(
        location=location,
        active=is_active(samples, now=now, interval_s=rules.interval_s),
        last_probe_at=newest.started_at if newest else None,
        last_error_kind=None if newest is None or newest.ok else newest.error_kind,
        ttft_ms_p50=None if ttft_s is None else ttft_s * 1000.0,
        throughput_tps_p50=median(s.tokens_per_second for s in ok if s.tokens_per_second is not None),
        uptime=uptime(counted),
        samples=len(published),
        failing=is_failing(samples, rules.confirm_failures),
        recent=recent,
    )


def by_location(samples: Iterable[ProbeSample]) -> dict[str, list[ProbeSample]]:
    grouped: dict[str, list[ProbeSample]] = {}
    for sample in samples:
        grouped.setdefault(sample.location, []).append(sample)
    return dict(sorted(grouped.items()))


# ------------------------------------------------------------------------------ impaired locations


def impaired_locations(failing_by_endpoint: Mapping[tuple[str, str], Mapping[str, bool]]) -> frozenset[str]:
    """Locations failing for every endpoint they probed recently.

    `failing_by_endpoint[(model, provider)][location]` is whether that location's newest judged
    probe of that endpoint failed (`latest_failed`), for the locations that probed it recently. A location is impaired when it covers at
    least IMPAIRED_MIN_ENDPOINTS endpoints of IMPAIRED_MIN_PROVIDERS providers, all failing."""
    seen: dict[str, list[tuple[tuple[str, str], bool]]] = {}
    for key, locations in failing_by_endpoint.items():
        for location, failing in locations.items():
            seen.setdefault(location, []).append((key, failing))
    impaired = set()
    for location, verdicts in seen.items():
        providers = {key[1] for key, _ in verdicts}
        if (
            len(verdicts) >= IMPAIRED_MIN_ENDPOINTS
            and len(providers) >= IMPAIRED_MIN_PROVIDERS
            and all(failing for _, failing in verdicts)
        ):
            impaired.add(location)
    return frozenset(impaired)


# ---------------------------------------------------------------------------------------- state


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") + " s"


def endpoint_state(
    samples: Iterable[ProbeSample],
    *,
    now: datetime,
    window_s: float,
    rules: StateRules,
    impaired: frozenset[str] = frozenset(),
    in_maintenance: Callable[[datetime, str], bool] | None = None,
) -> EndpointState:
    """The endpoint's state from its probes of every location (definitions: module docstring)."""
    samples = [s for s in samples if s.started_at <= now]
    grouped = by_location(samples)
    views = tuple(
        location_view(name, group, now=now, window_s=window_s, rules=rules, in_maintenance=in_maintenance)
        for name, group in grouped.items()
    )
    if not views:
        return EndpointState("unknown", None, False, views)
    recent = [v for v in views if v.recent]
    voting = [v for v in recent if v.location not in impaired]
    quorum = rules.quorum_of(len(voting)) if voting else 1
    failing = [v for v in voting if v.failing]
    inactive = [v for v in voting if not v.active]
    active = bool(voting) and len(inactive) < quorum and len(voting) > len(inactive)

    runs = {v.location: failure_run(grouped[v.location]) for v in failing}
    starts = [run[-1].started_at for run in runs.values() if run]
    kinds: dict[str, int] = {}
    for run in runs.values():
        for sample in run:
            kind = sample.error_kind or ErrorKind.STREAM_ERROR.value
            kinds[kind] = kinds.get(kind, 0) + 1

    ok_starts = sorted(
        start for v in voting
        if (latest := latest_judged(grouped[v.location])) is not None and latest.ok
        and (start := ok_run_start(grouped[v.location])) is not None
    )
    recovered = bool(voting) and len(ok_starts) >= quorum
    common = dict(
        active=active, locations=views, voting=tuple(v.location for v in voting),
        failing=tuple(v.location for v in failing), quorum=quorum,
        started_at=min(starts) if starts else None, error_kinds=kinds,
        recovered=recovered, recovered_at=ok_starts[quorum - 1] if recovered else None,
    )

    if not recent:
        return EndpointState("unknown", f"no probe within {ACTIVE_INTERVALS} intervals", **common)
    if not voting:
        names = ", ".join(v.location for v in recent)
        return EndpointState("unknown", f"every location that probed it is impaired ({names})", **common)
    judged = [latest_judged(grouped[v.location]) for v in voting]
    if all(latest is None for latest in judged):
        return EndpointState("unknown", "only rate-limited probes", **common)
    latest_kinds = [latest.error_kind for latest in judged if latest is not None]
    if all(kind == ErrorKind.CONFIG_ERROR.value for kind in latest_kinds):
        return EndpointState("misconfigured", "config_error: an API key or URL variable is unset", **common)
    if len(failing) >= quorum:
        names = ", ".join(v.location for v in failing)
        return EndpointState(
            "down", f"failing from {len(failing)} of {len(voting)} locations ({names})", **common
        )
    failing_anywhere = [v for v in recent if v.failing]
    if failing_anywhere:
        parts = [v.location + (" (impaired)" if v.location in impaired else "") for v in failing_anywhere]
        return EndpointState(
            "regional", f"failing from {len(failing_anywhere)} of {len(recent)} locations ({', '.join(parts)})",
            **common,
        )
    window = [s for g in (grouped[v.location] for v in voting) for s in in_window(g, now=now, window_s=window_s)]
    published_ok = [s for s in _published(window, rules.keep_cold_starts) if s.ok and s.ttft_s is not None]
    ttft = median(s.ttft_s for s in published_ok)  # type: ignore[misc]
    if ttft is not None and ttft > rules.degraded_ttft_s:
        return EndpointState(
            "degraded", f"TTFT median {_seconds(ttft)} above {_seconds(rules.degraded_ttft_s)}", **common
        )
    ratio = answer_ok_ratio(window)
    if ratio is not None and ratio < rules.answer_ok_min:
        checked = [s for s in window if s.ok and s.answer_ok is not None]
        passed = sum(1 for s in checked if s.answer_ok)
        return EndpointState("degraded", f"answer check failing: {passed} of {len(checked)} ok", **common)
    return EndpointState("up", None, **common)


def state_valid_until(
    samples: Iterable[ProbeSample], *, now: datetime, window_s: float, rules: StateRules
) -> datetime | None:
    """The last moment up to which `endpoint_state` (and each location's `latest_failed` over its
    recent probes) stays what it is at `now` if no probe arrives: the first time a probe leaves
    the window or the recent range (ACTIVE_INTERVALS intervals), a location stops being active,
    or a probe stamped after `now` comes into view. None: nothing will ever change by itself.
    Maintenance windows and impaired locations are the caller's to watch."""
    window = timedelta(seconds=window_s)
    recent = timedelta(seconds=ACTIVE_INTERVALS * rules.interval_s)
    bounds: list[datetime] = []
    visible: list[ProbeSample] = []
    for sample in samples:
        if sample.started_at > now:
            bounds.append(sample.started_at - timedelta(microseconds=1))
            continue
        visible.append(sample)
        for leaves in (sample.started_at + window, sample.started_at + recent):
            if leaves >= now:
                bounds.append(leaves)
    for group in by_location(visible).values():
        until = active_until(group, interval_s=rules.interval_s)
        if until is not None and until >= now:
            bounds.append(until)
    return min(bounds) if bounds else None


# -------------------------------------------------------------------------------------- incidents

OPEN, RESOLVE, UPDATE, NOTHING = "open", "resolve", "update", "nothing"


def incident_action(state: EndpointState, open_incident: Incident | None, *, in_maintenance: bool) -> str:
    """What the incident record of an endpoint needs now.

    `open` when declared down by quorum, none is open and no maintenance window covers it;
    `resolve` an open one at the first success by quorum; `update` an open one otherwise (its
    error kinds and locations grow while the outage lasts); `nothing` else."""
    if open_incident is None:
        if state.state == "down" and not in_maintenance and state.started_at is not None:
            return OPEN
        return NOTHING
    if state.recovered:
        return RESOLVE
    return UPDATE
