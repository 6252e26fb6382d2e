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

import bisect
import itertools
import math
import operator
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ddsketch.mapping import LogarithmicMapping

from monitor.probes.base import ErrorKind

HOUR = 3600
DAY = 86400
STEPS = {"1h": HOUR, "1d": DAY}
RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
ENCODING_VERSION = 2
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
    return bins_quantiles(bins, (q,))[0]


def bins_quantiles(bins: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    """`bins_quantile` for several q at once (one sort, one pass)."""
    qs = tuple(qs)
    if any(not 0 <= q <= 1 for q in qs):
        raise ValueError("q must be within [0, 1]")
    return _quantiles_of_sorted(*_sorted_bins(bins), qs)


class _Values(dict[int, float]):
    """key -> MAPPING.value(key), remembered (a sketch holds few distinct keys over its lifetime)."""

    def __missing__(self, key: int) -> float:
        value = self[key] = MAPPING.value(key)
        return value


_value_of = _Values().__getitem__


# Array type codes by item width: every number of a sketch is stored in the narrowest that holds
# them all (almost always 2 bytes: key deltas are small and counts rarely pass 32,767).
_WIDTH_CODES = {2: "h", 4: "i", 8: "q"}


def _sorted_bins(bins: Mapping[int, int]) -> tuple[list[int], list[int]]:
    """The keys ascending and their counts, bins with count 0 left out."""
    keys = sorted(bins)
    counts = list(map(bins.__getitem__, keys))
    if counts and min(counts) <= 0:
        if min(counts) < 0:
            raise ValueError("negative bin count")
        kept = [(key, count) for key, count in zip(keys, counts) if count]
        keys, counts = [key for key, _ in kept], [count for _, count in kept]
    return keys, counts


def _encode_sorted(keys: list[int], counts: list[int]) -> bytes:
    if not keys:
        return b""
    flat = [0] * (2 * len(keys))
    flat[0] = keys[0]
    flat[2::2] = list(map(operator.sub, keys[1:], keys[:-1]))
    flat[1::2] = counts
    for width, code in _WIDTH_CODES.items():
        try:
            numbers = array(code, flat)  # OverflowError when a number does not fit the width
        except OverflowError:
            continue
        break
    else:
        raise ValueError("sketch key or count out of range")
    if sys.byteorder == "big":
        numbers.byteswap()
    return bytes((ENCODING_VERSION, width)) + numbers.tobytes()


def encode_bins(bins: Mapping[int, int]) -> bytes:
    """Byte form of a sketch: version, item width w (2, 4 or 8), then per bin (keys ascending) the
    key's delta from the previous key and its count, as little-endian signed w-byte integers.
    Deterministic: equal bins give equal bytes. Empty bins encode to b"" (stored as NULL).
    Fixed-width numbers decode in C (`array`), which is what the roll-up job does most."""
    return _encode_sorted(*_sorted_bins(bins))


def decode_bins(data: bytes | None) -> dict[int, int]:
    if not data:
        return {}
    if data[0] != ENCODING_VERSION:
        raise ValueError(f"unknown sketch encoding version {data[0]}")
    code = _WIDTH_CODES.get(data[1]) if len(data) > 1 else None
    if code is None or (len(data) - 2) % (2 * data[1]) or len(data) == 2:
        raise ValueError("malformed sketch bytes")
    numbers = array(code)
    numbers.frombytes(data[2:])
    if sys.byteorder == "big":
        numbers.byteswap()
    counts = numbers[1::2]
    if min(counts) <= 0:
        raise ValueError("malformed sketch bytes: a bin without a positive count")
    return dict(zip(itertools.accumulate(numbers[0::2]), counts))


def _quantiles_of_sorted(keys: list[int], counts: list[int], qs: tuple[float, ...]) -> list[float | None]:
    """`bins_quantiles` over ascending keys and their positive counts: for each q, the first key
    whose running count exceeds q * (n - 1)."""
    if not keys:
        return [None] * len(qs)
    if len(keys) == 1:
        return [_value_of(keys[0])] * len(qs)
    running = list(itertools.accumulate(counts))
    rank, last, first_above = running[-1] - 1, len(keys) - 1, bisect.bisect_right
    return [_value_of(keys[min(first_above(running, q * rank), last)]) for q in qs]


def _sketch_columns(bins: Mapping[int, int]) -> tuple[int, bytes | None, float | None, float | None, float | None]:
    """A sketch's stored columns: its count, its bytes (None when empty), p5, p50 and p95."""
    keys, counts = _sorted_bins(bins)
    return (sum(counts), _encode_sorted(keys, counts) or None, *_quantiles_of_sorted(keys, counts, _QUANTILE_QS))


# ------------------------------------------------------------------------------ one bucket


class RollupProbe(NamedTuple):
    """The columns of one raw probe a roll-up needs (a tuple: the job builds tens of thousands)."""

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


ROLLUP_PROBE_FIELDS = RollupProbe._fields


# What one probe adds to a bucket: the counts it increments, its TTFT key and throughput key.
Contribution = tuple[tuple[str, ...], int | None, int | None]
_STREAM_ERROR = ErrorKind.STREAM_ERROR.value
_KNOWN_KINDS = frozenset(ERROR_KINDS)


def contribution(probe: RollupProbe, *, in_maintenance: bool, keep_cold_starts: bool) -> Contribution:
    """The rules of the module docstring, for one probe."""
    names: list[str] = []
    if probe.cold_start:
        names.append("cold_starts")
    if probe.suspect:
        names.append("suspect")
    if probe.trigger != "scheduled":
        names.append("unscheduled")
        return tuple(names), None, None
    if in_maintenance:
        names.append("maintenance")
        return tuple(names), None, None
    if not probe.ok:
        # a failure without a known kind is counted as a stream error
        names.append(probe.error_kind if probe.error_kind in _KNOWN_KINDS else _STREAM_ERROR)
        return tuple(names), None, None
    names.append("ok")
    if probe.suspect or (probe.cold_start and not keep_cold_starts):
        return tuple(names), None, None
    ttft = key_of(probe.ttft_s * 1000.0) if probe.ttft_s is not None else None
    tps = key_of(probe.tokens_per_second) if probe.tokens_per_second is not None else None
    return tuple(names), ttft, tps


_ZERO_COUNTS = dict.fromkeys(COUNT_FIELDS, 0)


def _empty_counts() -> dict[str, int]:
    return _ZERO_COUNTS.copy()


class BucketAggregate:
    """Counts and sketches of one bucket (any step). Mutable while being built. A bucket read
    from the database keeps its sketch bytes and stored quantiles and decodes the bins only when
    they are needed (merging, comparing): reading a year of history decodes nothing."""

    __slots__ = ("counts", "_ttft_bins", "_tps_bins", "_ttft_blob", "_tps_blob", "stored_quantiles", "_stored_counts")

    def __init__(
        self,
        counts: dict[str, int] | None = None,
        ttft_bins: dict[int, int] | None = None,
        tps_bins: dict[int, int] | None = None,
    ) -> None:
        self.counts = _empty_counts() if counts is None else counts
        self._ttft_bins: dict[int, int] | None = {} if ttft_bins is None else ttft_bins
        self._tps_bins: dict[int, int] | None = {} if tps_bins is None else tps_bins
        self._ttft_blob: bytes | None = None
        self._tps_blob: bytes | None = None
        # The stored quantile columns ({"ttft_ms_p50": ..., ...}) and counts behind them of a
        # bucket read back unchanged; dropped as soon as the bucket changes.
        self.stored_quantiles: dict[str, float | None] | None = None
        self._stored_counts: tuple[int, int] | None = None

    @property
    def ttft_bins(self) -> dict[int, int]:
        if self._ttft_bins is None:
            self._ttft_bins = decode_bins(self._ttft_blob)
        return self._ttft_bins

    @property
    def tps_bins(self) -> dict[int, int]:
        if self._tps_bins is None:
            self._tps_bins = decode_bins(self._tps_blob)
        return self._tps_bins

    def _changing(self) -> None:
        self.ttft_bins, self.tps_bins  # noqa: B018  (decode before changing)
        self.stored_quantiles = None
        self._stored_counts = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketAggregate):
            return NotImplemented
        return (self.counts, self.ttft_bins, self.tps_bins) == (other.counts, other.ttft_bins, other.tps_bins)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BucketAggregate(counts={self.counts!r}, ttft_bins={self.ttft_bins!r}, tps_bins={self.tps_bins!r})"

    def add(self, probe: RollupProbe, *, in_maintenance: bool, keep_cold_starts: bool) -> None:
        """Count one raw probe under the rules in the module docstring."""
        self.apply(contribution(probe, in_maintenance=in_maintenance, keep_cold_starts=keep_cold_starts))

    def apply(self, change: Contribution) -> None:
        if self.stored_quantiles is not None or self._ttft_bins is None:
            self._changing()
        counts = self.counts
        names, ttft, tps = change
        for name in names:
            counts[name] += 1
        if ttft is not None:
            bins = self._ttft_bins
            bins[ttft] = bins.get(ttft, 0) + 1  # type: ignore[index]  (decoded above)
        if tps is not None:
            bins = self._tps_bins
            bins[tps] = bins.get(tps, 0) + 1  # type: ignore[index]

    def add_stored(self, counts: Iterable[int | None], ttft_sketch: bytes | None, tps_sketch: bytes | None) -> None:
        """Add a stored bucket, given as its count columns (COUNT_FIELDS order) and sketch bytes:
        `merge` without building the stored bucket first (the roll-up job's hot path)."""
        self._changing()
        own = self.counts
        for name, value in zip(COUNT_FIELDS, counts, strict=True):
            own[name] += int(value or 0)
        self._ttft_bins = merge_bins(decode_bins(ttft_sketch), self.ttft_bins)
        self._tps_bins = merge_bins(decode_bins(tps_sketch), self.tps_bins)

    def merge(self, other: BucketAggregate) -> BucketAggregate:
        self._changing()
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
        name = _QUANTILE_NAMES.get(q)
        if self.stored_quantiles is not None and name is not None:
            return self.stored_quantiles[f"ttft_ms_{name}"]
        return bins_quantile(self.ttft_bins, q)

    def throughput_tps(self, q: float) -> float | None:
        name = _QUANTILE_NAMES.get(q)
        if self.stored_quantiles is not None and name is not None:
            return self.stored_quantiles[f"tps_{name}"]
        return bins_quantile(self.tps_bins, q)

    @property
    def ttft_count(self) -> int:
        if self._stored_counts is not None:
            return self._stored_counts[0]
        return sum(self.ttft_bins.values())

    @property
    def tps_count(self) -> int:
        if self._stored_counts is not None:
            return self._stored_counts[1]
        return sum(self.tps_bins.values())

    def row_values(self) -> dict[str, object]:
        """The stored columns (counts, sketches, precomputed quantiles)."""
        values: dict[str, object] = dict(self.counts)
        values.update(zip(_TTFT_COLUMNS, _sketch_columns(self.ttft_bins)))
        values.update(zip(_TPS_COLUMNS, _sketch_columns(self.tps_bins)))
        return values

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BucketAggregate:
        bucket = cls(counts={name: int(row[name] or 0) for name in COUNT_FIELDS})
        bucket._ttft_bins = bucket._tps_bins = None
        bucket._ttft_blob, bucket._tps_blob = row["ttft_sketch"], row["tps_sketch"]
        bucket.stored_quantiles = {name: row[name] for name in _QUANTILE_COLUMNS}
        bucket._stored_counts = (int(row["ttft_count"]), int(row["tps_count"]))
        return bucket


QUANTILES = {"p5": 0.05, "p50": 0.5, "p95": 0.95}
_QUANTILE_QS = tuple(QUANTILES.values())
_QUANTILE_NAMES = {q: name for name, q in QUANTILES.items()}
_QUANTILE_COLUMNS = tuple(f"{metric}_{name}" for metric in ("ttft_ms", "tps") for name in QUANTILES)
# Each sketch's stored columns, in `_sketch_columns` order.
_TTFT_COLUMNS = ("ttft_count", "ttft_sketch", *(f"ttft_ms_{name}" for name in QUANTILES))
_TPS_COLUMNS = ("tps_count", "tps_sketch", *(f"tps_{name}" for name in QUANTILES))


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
    return aggregate_steps(probes, (step_s,), in_maintenance=in_maintenance, keep_cold_starts=keep_cold_starts)[step_s]


def aggregate_steps(
    probes: Iterable[RollupProbe],
    steps: Iterable[int],
    *,
    in_maintenance: Callable[[str, str, datetime, str], bool],
    keep_cold_starts: Callable[[str, str], bool],
    into: dict[int, dict[tuple[tuple[str, str, str, int], datetime], BucketAggregate]] | None = None,
) -> dict[int, dict[tuple[tuple[str, str, str, int], datetime], BucketAggregate]]:
    """`aggregate` for several steps at once (each probe judged once). `into`: buckets by step to
    add to (returned), so that probes can be aggregated a slice at a time."""
    steps = tuple(steps)
    result = {s: {} for s in steps} if into is None else into
    starts: dict[int, datetime] = {}
    keeps: dict[tuple[str, str], bool] = {}
    for probe in probes:
        endpoint = (probe.model_id, probe.provider)
        keep = keeps.get(endpoint)
        if keep is None:
            keep = keeps[endpoint] = bool(keep_cold_starts(*endpoint))
        change = contribution(
            probe,
            in_maintenance=bool(in_maintenance(probe.model_id, probe.provider, probe.started_at, probe.location)),
            keep_cold_starts=keep,
        )
        seconds = math.floor(probe.started_at.timestamp())
        series = probe.series
        for step_s in steps:
            first = seconds - seconds % step_s
            start = starts.get(first)
            if start is None:
                start = starts[first] = _EPOCH + timedelta(seconds=first)
            buckets = result[step_s]
            key = (series, start)
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = BucketAggregate()
            bucket.apply(change)
    return result


# ------------------------------------------------------------------------------ long windows


def window_aggregates(
    daily: Mapping[datetime, BucketAggregate], now: datetime, windows_days: Mapping[str, int]
) -> dict[str, BucketAggregate]:
    """Per named window of N days: the daily buckets of the N UTC days ending with `now`'s day
    (today so far and the N - 1 days before it) merged into one aggregate (empty when none)."""
    today = bucket_start(now, DAY)
    out: dict[str, BucketAggregate] = {}
    for name, days in windows_days.items():
        first = today - timedelta(days=days - 1)
        merged = BucketAggregate()
        for start, bucket in daily.items():
            if first <= start <= today:
                merged.merge(bucket)
        out[name] = merged
    return out


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
