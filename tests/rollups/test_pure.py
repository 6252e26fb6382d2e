"""The pure roll-up functions on literal values: UTC buckets, the sketch's bytes and quantiles
(against the ddsketch package itself), what each probe adds to a bucket, merging, SLO accounting."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ddsketch import DDSketch

from monitor.rollups import (
    COUNT_FIELDS,
    DAY,
    HOUR,
    RELATIVE_ACCURACY,
    BucketAggregate,
    RollupProbe,
    aggregate_steps,
    bins_quantile,
    bucket_start,
    bucket_starts,
    decode_bins,
    encode_bins,
    key_of,
    slo_report,
    window_aggregates,
)


def test_buckets_are_utc_whatever_the_offset() -> None:
    moment = datetime(2026, 12, 1, 1, 30, tzinfo=timezone(timedelta(hours=5)))  # 2026-11-30 20:30 UTC
    assert bucket_start(moment, HOUR) == datetime(2026, 11, 30, 20, tzinfo=UTC)
    assert bucket_start(moment, DAY) == datetime(2026, 11, 30, tzinfo=UTC)
    assert bucket_start(datetime(2026, 11, 30, tzinfo=UTC), DAY) == datetime(2026, 11, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        bucket_start(datetime(2026, 11, 30), HOUR)


def test_bucket_starts_cover_from_the_floor_to_before_the_end() -> None:
    start = datetime(2026, 11, 30, 10, 59, tzinfo=UTC)
    assert bucket_starts(start, datetime(2026, 11, 30, 12, 0, tzinfo=UTC), HOUR) == [
        datetime(2026, 11, 30, 10, tzinfo=UTC), datetime(2026, 11, 30, 11, tzinfo=UTC)]
    assert bucket_starts(start, datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC), HOUR)[-1] == datetime(
        2026, 11, 30, 12, tzinfo=UTC)
    assert bucket_starts(start, start, HOUR) == [datetime(2026, 11, 30, 10, tzinfo=UTC)]
    assert bucket_starts(start, datetime(2026, 11, 30, 10, tzinfo=UTC), HOUR) == []


def test_sketch_bytes_round_trip_and_are_deterministic() -> None:
    bins = {key_of(v): c for v, c in ((0.5, 3), (244.0, 1), (1e6, 7), (3e-5, 2))}
    data = encode_bins(bins)
    assert decode_bins(data) == bins
    assert encode_bins(dict(reversed(list(bins.items())))) == data
    assert encode_bins({}) == b"" and decode_bins(None) == {} and decode_bins(b"") == {}
    with pytest.raises(ValueError):
        decode_bins(data + b"\x00")
    with pytest.raises(ValueError):
        decode_bins(b"\x09" + data[1:])
    with pytest.raises(ValueError):
        decode_bins(data[:-1])


def test_sketch_bytes_widen_for_large_keys_and_counts_and_refuse_garbage() -> None:
    small = encode_bins({10: 3})
    wide = encode_bins({10: 3, 40_000: 70_000})
    huge = encode_bins({-(2**40): 1})
    assert (small[1], wide[1], huge[1]) == (2, 4, 8)  # the item width in bytes
    assert decode_bins(wide) == {10: 3, 40_000: 70_000} and decode_bins(huge) == {-(2**40): 1}
    assert len(small) == 2 + 2 * 2
    with pytest.raises(ValueError):
        decode_bins(small[:1] + b"\x03" + small[2:])  # an unknown width
    with pytest.raises(ValueError):
        decode_bins(small[:2] + b"\x0a\x00\x00\x00")  # a bin with count 0
    with pytest.raises(ValueError):
        encode_bins({1: -1})


def test_window_aggregates_merge_the_days_ending_today() -> None:
    now = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)
    today = datetime(2026, 12, 10, tzinfo=UTC)

    def day(ok: int, failed: int, ttft_ms: float) -> BucketAggregate:
        bucket = BucketAggregate()
        bucket.counts["ok"], bucket.counts["timeout"] = ok, failed
        bucket.ttft_bins[key_of(ttft_ms)] = ok
        return bucket

    daily = {
        today: day(4, 0, 100.0),
        today - timedelta(days=6): day(2, 2, 300.0),  # inside 7 days (the 7th day back, today being the 1st)
        today - timedelta(days=7): day(0, 8, 900.0),  # only inside 30 days
        today - timedelta(days=40): day(5, 0, 500.0),  # outside both
        today + timedelta(days=1): day(9, 0, 1.0),  # in the future: never counted
    }
    out = window_aggregates(daily, now, {"7d": 7, "30d": 30})
    assert (out["7d"].counts["ok"], out["7d"].failed) == (6, 2)
    assert out["7d"].uptime == pytest.approx(6 / 8)
    assert out["30d"].uptime == pytest.approx(6 / 16)
    assert out["7d"].ttft_ms(0.5) == pytest.approx(100.0, rel=RELATIVE_ACCURACY)
    assert window_aggregates({}, now, {"7d": 7})["7d"].uptime is None
    assert daily[today].counts["ok"] == 4  # the inputs are left as they were


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101])
def test_quantiles_equal_the_ddsketch_package_and_hold_its_accuracy(n: int) -> None:
    rng = random.Random(n)
    values = [rng.lognormvariate(5, 1) for _ in range(n)]
    reference = DDSketch(RELATIVE_ACCURACY)
    bins: dict[int, int] = {}
    for value in values:
        reference.add(value)
        key = key_of(value)
        bins[key] = bins.get(key, 0) + 1
    ordered = sorted(values)
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):
        ours = bins_quantile(bins, q)
        assert ours == pytest.approx(reference.get_quantile_value(q), rel=1e-12)
        exact = ordered[int(q * (n - 1))]  # the rank DDSketch targets (lower)
        assert abs(ours - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)
    assert bins_quantile({}, 0.5) is None


def test_values_the_sketch_cannot_take_are_left_out() -> None:
    assert key_of(0.0) is None and key_of(-1.0) is None
    assert key_of(float("nan")) is None and key_of(float("inf")) is None


def _probe(**overrides) -> RollupProbe:
    values = dict(id=1, model_id="m", provider="p", location="local", input_tokens=100,
                  started_at=datetime(2026, 11, 30, tzinfo=UTC), ok=True, error_kind=None,
                  ttft_s=0.25, tokens_per_second=50.0)
    values.update(overrides)
    return RollupProbe(**values)


def test_what_each_probe_adds() -> None:
    bucket = BucketAggregate()
    add = lambda maintenance=False, keep=False, **kw: bucket.add(_probe(**kw), in_maintenance=maintenance, keep_cold_starts=keep)  # noqa: E731
    add()                                                     # ok: counted, in both sketches
    add(ok=False, error_kind="timeout")                       # failed
    add(ok=False, error_kind="rate_limited")                  # neither ok nor failed
    add(trigger="confirm", ok=False, error_kind="timeout")    # unscheduled only
    add(trigger="manual")                                     # unscheduled only
    add(maintenance=True, ok=False, error_kind="timeout")     # maintenance only
    add(cold_start=True, ttft_s=9.0)                          # ok, cold start: not in sketches
    add(cold_start=True, ttft_s=0.5, keep=True)               # kept cold start: in sketches
    add(suspect=True, ttft_s=7.0)                             # ok, suspect: not in sketches
    add(ttft_s=None, tokens_per_second=None)                  # ok without timings
    add(ok=False, error_kind="not_a_kind")                    # unknown kind: a stream error
    counts = bucket.counts
    assert counts["ok"] == 5 and counts["timeout"] == 1 and counts["rate_limited"] == 1
    assert counts["stream_error"] == 1
    assert counts["unscheduled"] == 2 and counts["maintenance"] == 1
    assert counts["cold_starts"] == 2 and counts["suspect"] == 1
    assert bucket.failed == 2 and bucket.samples == 9 and bucket.uptime == pytest.approx(5 / 7)
    assert sum(bucket.ttft_bins.values()) == 2 and sum(bucket.tps_bins.values()) == 2
    assert bucket.ttft_ms(1.0) == pytest.approx(500, rel=RELATIVE_ACCURACY)


def test_merging_equals_adding_everything_to_one_bucket() -> None:
    rng = random.Random(7)
    probes = [_probe(ttft_s=rng.random(), tokens_per_second=rng.uniform(1, 300),
                     ok=rng.random() > 0.2, error_kind="timeout") for _ in range(200)]
    probes = [p if p.ok else _probe(ok=False, error_kind="timeout") for p in probes]
    whole, parts = BucketAggregate(), [BucketAggregate() for _ in range(5)]
    for index, item in enumerate(probes):
        whole.add(item, in_maintenance=False, keep_cold_starts=False)
        parts[index % 5].add(item, in_maintenance=False, keep_cold_starts=False)
    merged = BucketAggregate()
    for part in reversed(parts):
        merged.merge(part)
    assert merged == whole
    assert merged.row_values() == whole.row_values()
    assert BucketAggregate.from_row(whole.row_values()) == whole
    # the roll-up job's merge: a stored bucket given as its count columns and sketch bytes
    stored = parts[0].row_values()
    via_bytes = BucketAggregate()
    for part in parts[1:]:
        via_bytes.merge(part)
    via_bytes.add_stored([stored[name] for name in COUNT_FIELDS], stored["ttft_sketch"], stored["tps_sketch"])
    assert via_bytes == whole and via_bytes.row_values() == whole.row_values()


def test_aggregating_in_slices_equals_one_pass() -> None:
    rng = random.Random(8)
    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    probes = [_probe(id=index, provider=rng.choice("ab"), started_at=t0 + timedelta(minutes=rng.randrange(3000)),
                     ttft_s=rng.random(), cold_start=rng.random() < 0.2) for index in range(300)]
    rules = dict(in_maintenance=lambda m, p, at, loc: at.hour == 3, keep_cold_starts=lambda m, p: p == "a")
    whole = aggregate_steps(probes, (HOUR, DAY), **rules)
    sliced: dict = {HOUR: {}, DAY: {}}
    for start in range(0, len(probes), 64):
        assert aggregate_steps(probes[start : start + 64], (HOUR, DAY), into=sliced, **rules) is sliced
    assert sliced == whole and len(whole[DAY]) == 2 * 3 and len(whole[HOUR]) > 60


def test_slo_accounting_on_literal_counts() -> None:
    counts = {"ok": 990, "timeout": 4, "http_error": 3, "rate_limited": 50, "config_error": 7, "maintenance": 12}
    report = slo_report(counts, objective=0.99, period_s=30 * DAY)
    assert (report.good, report.bad) == (990, 7)
    assert report.excluded == {"rate_limited": 50, "maintenance": 12, "config_error": 7}
    assert report.availability == pytest.approx(990 / 997)
    # 1 % of 997 judged probes may fail: 9.97; 7 did -> 1 - 7 / 9.97 of the budget left.
    assert report.error_budget_remaining == pytest.approx(1 - 7 / 9.97)
    overspent = slo_report({"ok": 90, "timeout": 10}, objective=0.99, period_s=DAY)
    assert overspent.error_budget_remaining == pytest.approx(1 - 10 / 1.0)
    empty = slo_report({"rate_limited": 3}, objective=0.99, period_s=DAY)
    assert empty.availability is None and empty.error_budget_remaining is None and empty.good == empty.bad == 0
    assert slo_report({"ok": 5}, objective=0.9, period_s=DAY).error_budget_remaining == 1.0
    with pytest.raises(ValueError):
        slo_report(counts, objective=1.0, period_s=DAY)
