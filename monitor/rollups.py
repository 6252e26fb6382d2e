"""Roll-ups as pure functions: UTC bucket math, what each probe adds to a bucket, mergeable
quantile sketches and their byte form, and the SLO accounting. No I/O, no clocks.

A roll-up bucket is (model_id, provider, location, input_tokens, bucket_start) for one step
(`HOUR` or `DAY`, boundaries in UTC). What a probe adds (`BucketAggregate.add`, the one place the
rules live):

- only scheduled probes (trigger == scheduled) enter the outcome counts and the quantiles; confirm
  and manual probes are counted in `unscheduled` alone (they are triggered by failures, so they
  would bias uptime and medians);
- a scheduled probe inside a maintenance window is counted in `maintenance` alone;
- every other scheduled probe is counted once by outcome: `ok` or its error kind
  (`rate_limited` among them);
- the TTFT (in ms) and throughput sketches take the ok probes above that are neither cold starts
  (unless the endpoint keeps them, `keep_cold_starts`) nor `suspect` (the monitor's own timing was
  off); `cold_starts` and `suspect` count those probes, whatever their outcome.

Quantiles are kept in a DDSketch-compatible sketch: the `ddsketch` package's logarithmic mapping
(relative accuracy `RELATIVE_ACCURACY`, 1 %) maps a value to an integer key, and a bucket keeps
{key: count}. Merging adds counts, so it is exact and order-free: a day merged from its hours, or
all locations merged from each one, holds exactly the bins a direct computation over the raw
probes would, and a quantile read from it is the same number. The quantile rule is DDSketch's
own (`DDSketch.get_quantile_value`: rank q * (n - 1), lower key), so any value is within 1 % of
the raw value at that rank. The byte form (`encode_bins`) is ours, compact and protobuf-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ddsketch.mapping import LogarithmicMapping

from monitor.probes.base import ErrorKind

HOUR = 3600
DAY = 86400
STEPS = {"1h": HOUR, "1d": DAY}
RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
ENCODING_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ERROR_KINDS: tuple[str, ...] = tuple(kind.value for kind in ErrorKind)
# The count columns of a roll-up row, in a fixed order.
COUNT_FIELDS: tuple[str, ...] = ("ok", *ERROR_KINDS, "maintenance", "unscheduled", "cold_starts", "suspect")
# Outcomes that are neither ok nor failed: excluded from uptime and SLOs (see `slo_report`).
RATE_LIMITED = ErrorKind.RATE_LIMITED.value
CONFIG_ERROR = ErrorKind.CONFIG_ERROR.value


# ------------------------------------------------------------------------------ bucket math


def bucket_start(moment: datetime, step_s: int) -> datetime:
    """Start of the UTC bucket of length `step_s` (HOUR or DAY) holding `moment`."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware (UTC)")
    seconds = math.floor((moment - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=seconds - seconds % step_s)


def bucket_starts(start: datetime, end: datetime, step_s: int) -> list[datetime]:
    """Every bucket start t with bucket_start(start) <= t < end, oldest first."""
    first = bucket_start(start, step_s)
    count = max(0, math.ceil((end - first).total_seconds() / step_s))
    return [first + timedelta(seconds=step_s * index) for index in range(count)]


# ------------------------------------------------------------------------------ sketches


def key_of(value: float) -> int | None:
    """The sketch key of a positive value; None for values the sketch does not take (<= 0,
    NaN, infinite or beyond the mapping's range)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        return None
    if value < MAPPING.min_possible or value > MAPPING.max_possible:
        return None
    return MAPPING.key(value)


def merge_bins(into: dict[int, int], other: Mapping[int, int]) -> dict[int, int]:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count
    return into


def bins_quantile(bins: Mapping[int, int], q: float) -> float | None:
    """DDSketch's quantile over {key: count}: the value of the key at rank q * (n - 1), taking
    the first key whose running count exceeds the rank. None when empty."""
    if not 0 <= q <= 1:
        raise ValueError("q must be within [0, 1]")
    total = sum(bins.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    running = 0
    ordered = sorted(bins)
    for key in ordered:
        running += bins[key]
        if running > rank:
            return MAPPING.value(key)
    return MAPPING.value(ordered[-1])


def _varint(value: int, out: bytearray) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated or oversized varint in sketch")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def encode_bins(bins: Mapping[int, int]) -> bytes:
    """Byte form of a sketch: version, bin count, then per bin (keys ascending) the key's delta
    from the previous key (zigzag varint) and its count (varint). Deterministic: equal bins give
    equal bytes. Empty bins encode to b"" (stored as NULL)."""
    items = sorted((key, count) for key, count in bins.items() if count)
    if not items:
        return b""
    out = bytearray([ENCODING_VERSION])
    _varint(len(items), out)
    previous = 0
    for key, count in items:
        if count < 0:
            raise ValueError("negative bin count")
        _varint(_zigzag(key - previous), out)
        _varint(count, out)
        previous = key
    return bytes(out)


def decode_bins(data: bytes | None) -> dict[int, int]:
    if not data:
        return {}
    if data[0] != ENCODING_VERSION:
        raise ValueError(f"unknown sketch encoding version {data[0]}")
    length, position = _read_varint(data, 1)
    bins: dict[int, int] = {}
    key = 0
    for _ in range(length):
        delta, position = _read_varint(data, position)
        count, position = _read_varint(data, position)
        key += _unzigzag(delta)
        bins[key] = count
    if position != len(data):
        raise ValueError("trailing bytes after sketch")
    return bins


# ------------------------------------------------------------------------------ one bucket


@dataclass(frozen=True)
class RollupProbe:
    """The columns of one raw probe a roll-up needs."""

    id: int
    model_id: str
    provider: str
    location: str
    input_tokens: int
    started_at: datetime
    ok: bool
    error_kind: str | None
    ttft_s: float | None
    tokens_per_second: float | None
    trigger: str = "scheduled"
    cold_start: bool = False
    suspect: bool = False

    @property
    def series(self) -> tuple[str, str, str, int]:
        return (self.model_id, self.provider, self.location, self.input_tokens)


ROLLUP_PROBE_FIELDS = tuple(f.name for f in dataclasses.fields(RollupProbe))


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_FIELDS, 0)


@dataclass
class BucketAggregate:
    """Counts and sketches of one bucket (any step). Mutable while being built."""

    counts: dict[str, int] = field(default_factory=_empty_counts)
    ttft_bins: dict[int, int] = field(default_factory=dict)
    tps_bins: dict[int, int] = field(default_factory=dict)

    def add(self, probe: RollupProbe, *, in_maintenance: bool, keep_cold_starts: bool) -> None:
        """Count one raw probe under the rules in the module docstring."""
        counts = self.counts
        if probe.cold_start:
            counts["cold_starts"] += 1
        if probe.suspect:
            counts["suspect"] += 1
        if probe.trigger != "scheduled":
            counts["unscheduled"] += 1
            return
        if in_maintenance:
            counts["maintenance"] += 1
            return
        if probe.ok:
            counts["ok"] += 1
        else:
            kind = probe.error_kind if probe.error_kind in counts else ErrorKind.STREAM_ERROR.value
            counts[kind] += 1  # a failure without a known kind is counted as a stream error
            return
        if probe.suspect or (probe.cold_start and not keep_cold_starts):
            return
        if probe.ttft_s is not None:
            key = key_of(probe.ttft_s * 1000.0)
            if key is not None:
                self.ttft_bins[key] = self.ttft_bins.get(key, 0) + 1
        if probe.tokens_per_second is not None:
            key = key_of(probe.tokens_per_second)
            if key is not None:
                self.tps_bins[key] = self.tps_bins.get(key, 0) + 1

    def merge(self, other: BucketAggregate) -> BucketAggregate:
        for name, value in other.counts.items():
            self.counts[name] += value
        merge_bins(self.ttft_bins, other.ttft_bins)
        merge_bins(self.tps_bins, other.tps_bins)
        return self

    # --- published figures ---
    @property
    def failed(self) -> int:
        return sum(self.counts[kind] for kind in ERROR_KINDS if kind != RATE_LIMITED)

    @property
    def samples(self) -> int:
        """Scheduled probes of the bucket, whatever their outcome (maintenance included)."""
        return self.counts["ok"] + sum(self.counts[kind] for kind in ERROR_KINDS) + self.counts["maintenance"]

    @property
    def uptime(self) -> float | None:
        judged = self.counts["ok"] + self.failed
        return self.counts["ok"] / judged if judged else None

    def ttft_ms(self, q: float) -> float | None:
        return bins_quantile(self.ttft_bins, q)

    def throughput_tps(self, q: float) -> float | None:
        return bins_quantile(self.tps_bins, q)

    def row_values(self) -> dict[str, object]:
        """The stored columns (counts, sketches, precomputed quantiles)."""
        values: dict[str, object] = dict(self.counts)
        values["ttft_count"] = sum(self.ttft_bins.values())
        values["tps_count"] = sum(self.tps_bins.values())
        values["ttft_sketch"] = encode_bins(self.ttft_bins) or None
        values["tps_sketch"] = encode_bins(self.tps_bins) or None
        for name, q in QUANTILES.items():
            values[f"ttft_ms_{name}"] = self.ttft_ms(q)
            values[f"tps_{name}"] = self.throughput_tps(q)
        return values

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> BucketAggregate:
        return cls(
            counts={name: int(row[name] or 0) for name in COUNT_FIELDS},  # type: ignore[call-overload]
            ttft_bins=decode_bins(row["ttft_sketch"]),  # type: ignore[arg-type]
            tps_bins=decode_bins(row["tps_sketch"]),  # type: ignore[arg-type]
        )


QUANTILES = {"p5": 0.05, "p50": 0.5, "p95": 0.95}


def _never(*_: object) -> bool:
    return False


@dataclass(frozen=True)
class RollupRules:
    """What a roll-up needs from the catalog: maintenance windows and each endpoint's
    `keep_cold_starts`. Judged when a probe is absorbed (a rebuild judges again, with the catalog
    then in force)."""

    in_maintenance: Callable[[str, str, datetime, str], bool] = _never
    keep_cold_starts: Callable[[str, str], bool] = _never

    @classmethod
    def of(cls, catalog: Any) -> RollupRules:
        """From a `monitor.catalog.Catalog`. Endpoints no longer configured keep the defaults."""

        def in_maintenance(model_id: str, provider: str, at: datetime, location: str) -> bool:
            return catalog.in_maintenance(model_id, provider, at, location) is not None

        def keep_cold_starts(model_id: str, provider: str) -> bool:
            model = catalog.find(model_id)
            endpoint = model.endpoint(provider) if model is not None else None
            return bool(endpoint.keep_cold_starts) if endpoint is not None else bool(catalog.defaults.keep_cold_starts)

        return cls(in_maintenance, keep_cold_starts)


def aggregate(
    probes: Iterable[RollupProbe],
    step_s: int,
    *,
    in_maintenance: Callable[[str, str, datetime, str], bool],
    keep_cold_starts: Callable[[str, str], bool],
) -> dict[tuple[tuple[str, str, str, int], datetime], BucketAggregate]:
    """Bucket probes by (series, bucket start), with the catalog's answers as callables."""
    buckets: dict[tuple[tuple[str, str, str, int], datetime], BucketAggregate] = {}
    for probe in probes:
        key = (probe.series, bucket_start(probe.started_at, step_s))
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = BucketAggregate()
        bucket.add(
            probe,
            in_maintenance=bool(in_maintenance(probe.model_id, probe.provider, probe.started_at, probe.location)),
            keep_cold_starts=bool(keep_cold_starts(probe.model_id, probe.provider)),
        )
    return buckets


# ------------------------------------------------------------------------------ SLO


@dataclass(frozen=True)
class SLOReport:
    objective: float
    period_s: float
    availability: float | None
    good: int
    bad: int
    excluded: dict[str, int]
    error_budget_remaining: float | None


def slo_report(counts: Mapping[str, int], *, objective: float, period_s: float) -> SLOReport:
    """SLO accounting over summed roll-up counts (scheduled probes only; see module docstring).

    good = ok probes; bad = failed probes except `config_error` (the operator's fault, not the
    provider's); excluded: `rate_limited` (throttling says nothing about availability),
    `maintenance` (planned), `config_error`. availability = good / (good + bad), None without
    any. error budget: the failures the objective allows, (1 - objective) * (good + bad);
    remaining = 1 - bad / allowed (1.0 = untouched, 0 = spent, negative = overspent), None
    without any judged probe."""
    if not 0 < objective < 1:
        raise ValueError("objective must be in (0, 1)")
    good = int(counts.get("ok", 0))
    bad = sum(int(counts.get(kind, 0)) for kind in ERROR_KINDS if kind not in (RATE_LIMITED, CONFIG_ERROR))
    excluded = {
        "rate_limited": int(counts.get(RATE_LIMITED, 0)),
        "maintenance": int(counts.get("maintenance", 0)),
        "config_error": int(counts.get(CONFIG_ERROR, 0)),
    }
    judged = good + bad
    availability = good / judged if judged else None
    remaining = None if judged == 0 else 1 - bad / ((1 - objective) * judged)
    return SLOReport(objective, period_s, availability, good, bad, excluded, remaining)
