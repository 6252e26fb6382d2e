"""Quantiles, the median's order-statistic interval and the Wilson interval.

Table tests pin literal values worked out independently of the code under test (by hand, or for
Wilson by solving the score-test quadratic); the seeded simulations at the end check that the
intervals cover as often as their docstrings say.
"""

from __future__ import annotations

import math
import random
import statistics
from fractions import Fraction
from statistics import NormalDist

import pytest

from monitor.stats import Z_95, median, median_ci, median_ci_ranks, quantile, wilson_interval

# ------------------------------------------------------------------------------------ quantile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([], 0.05, None),
        ([7.0], 0.0, 7.0),
        ([7.0], 0.05, 7.0),
        ([7.0], 0.5, 7.0),
        ([7.0], 0.95, 7.0),
        ([7.0], 1.0, 7.0),
        # n = 2: h = q, so the quantile walks linearly from the smaller to the larger value
        ([3.0, 1.0], 0.0, 1.0),
        ([3.0, 1.0], 0.05, 1.1),
        ([3.0, 1.0], 0.5, 2.0),
        ([3.0, 1.0], 0.95, 2.9),
        ([3.0, 1.0], 1.0, 3.0),
        # n = 5: h = 4q
        ([50, 10, 40, 20, 30], 0.05, 12.0),
        ([50, 10, 40, 20, 30], 0.25, 20.0),
        ([50, 10, 40, 20, 30], 0.5, 30.0),
        ([50, 10, 40, 20, 30], 0.95, 48.0),
        ([15.0, 20.0, 35.0, 40.0, 50.0], 0.4, 29.0),  # h = 1.6: 20 + 0.6 * 15
        # n = 20 (1..20): h = 19q, p5 at h = 0.95, p95 at h = 18.05
        (list(range(1, 21)), 0.05, 1.95),
        (list(range(1, 21)), 0.5, 10.5),
        (list(range(1, 21)), 0.95, 19.05),
        # n = 4: h = 3q
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0.25, 1.75),
        ([4.0, 1.0, 3.0, 2.0], 0.75, 3.25),
        ([-2.0, 2.0], 0.5, 0.0),
    ],
)
def test_quantile_type_7(values, q, expected):
    result = quantile(values, q)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, rel=1e-12)
        assert isinstance(result, float)


def test_quantile_of_equal_values_is_that_value_exactly():
    values = [0.1] * 7
    for q in (0.0, 0.05, 0.3, 0.5, 0.95, 1.0):
        assert quantile(values, q) == 0.1


def test_p50_is_median_bit_for_bit():
    # (0.1 + 0.7) / 2 and 0.1 + 0.5 * (0.7 - 0.1) are different floats: p50 must be median's.
    assert median([0.1, 0.7]) == 0.39999999999999997
    assert quantile([0.1, 0.7], 0.5) == median([0.1, 0.7])
    rng = random.Random(20260115)
    for count in list(range(1, 40)) * 20:
        values = [rng.lognormvariate(0.0, 1.0) for _ in range(count)]
        assert quantile(values, 0.5) == median(values)


def test_quantile_agrees_with_the_standard_library_inclusive_method():
    rng = random.Random(7)
    for count in (2, 3, 5, 10, 31, 100):
        values = [rng.expovariate(1.0) for _ in range(count)]
        vigintiles = statistics.quantiles(values, n=20, method="inclusive")
        for step, expected in enumerate(vigintiles, start=1):
            assert quantile(values, step / 20) == pytest.approx(expected, rel=1e-12)


def test_quantile_is_ordered_p5_p50_p95():
    rng = random.Random(3)
    for count in range(1, 60):
        values = [rng.gauss(0.0, 1.0) for _ in range(count)]
        p5, p50, p95 = (quantile(values, q) for q in (0.05, 0.5, 0.95))
        assert min(values) <= p5 <= p50 <= p95 <= max(values)


@pytest.mark.parametrize("q", [-0.01, 1.01, 5.0, math.nan, math.inf])
def test_quantile_rejects_q_outside_0_1(q):
    with pytest.raises(ValueError, match="^q: must be within"):
        quantile([1.0, 2.0], q)


# ------------------------------------------------------------------------- median interval


def coverage(count: int, lower: int, upper: int) -> Fraction:
    """P(X_(lower) <= median <= X_(upper)) = P(lower <= B <= upper - 1), B ~ binomial(count, 1/2)."""
    return Fraction(sum(math.comb(count, k) for k in range(lower, upper)), 2**count)


@pytest.mark.parametrize(
    ("count", "ranks", "exact"),
    [
        (0, None, None),
        (1, None, None),
        (2, None, None),
        (3, None, None),
        (4, None, None),
        (5, None, None),  # [min, max] would cover 15/16 = 93.75 %
        (6, (1, 6), Fraction(31, 32)),
        (7, (1, 7), Fraction(63, 64)),
        (8, (1, 8), Fraction(127, 128)),
        (9, (2, 8), Fraction(123, 128)),
        (10, (2, 9), Fraction(501, 512)),
        (11, (2, 10), Fraction(253, 256)),
        (12, (3, 10), Fraction(1969, 2048)),
        (20, (6, 15), Fraction(125647, 131072)),
        (30, (10, 21), Fraction(513906825, 536870912)),
        (100, (40, 61), None),
    ],
)
def test_median_ci_ranks_at_95(count, ranks, exact):
    assert median_ci_ranks(count) == ranks
    if ranks is None:
        if count:
            assert coverage(count, 1, count) < Fraction(95, 100)
        return
    lower, upper = ranks
    assert upper == count + 1 - lower
    assert coverage(count, lower, upper) >= Fraction(0.95)
    # narrowest: moving both ranks one step inwards falls short of 95 %
    assert coverage(count, lower + 1, upper - 1) < Fraction(0.95)
    if exact is not None:
        assert coverage(count, lower, upper) == exact


def test_median_ci_exact_coverage_at_100():
    assert float(coverage(100, 40, 61)) == pytest.approx(0.9647998, abs=1e-7)
    assert float(coverage(100, 41, 60)) == pytest.approx(0.9431121, abs=1e-7)


@pytest.mark.parametrize(
    ("count", "confidence", "ranks"),
    [
        (5, 0.9375, (1, 5)),  # coverage exactly 15/16: reached, so included
        (5, 0.9375000000000001, None),
        (5, 0.9, (1, 5)),
        (2, 0.5, (1, 2)),  # coverage 1/2
        (1, 0.5, None),  # coverage 0
        (10, 0.5, (4, 7)),  # 1 - 2 * 176/1024 = 0.65625; (5, 6) covers 0.24609375
        (30, 0.99, (8, 23)),
    ],
)
def test_median_ci_ranks_other_confidence(count, confidence, ranks):
    assert median_ci_ranks(count, confidence) == ranks


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([4.0], None),
        ([4.0, 1.0], None),
        ([5.0, 4.0, 3.0, 2.0, 1.0], None),
        ([6.0, 2.0, 4.0, 1.0, 5.0, 3.0], (1.0, 6.0)),
        ([9.0, 2.0, 7.0, 10.0, 1.0, 3.0, 8.0, 4.0, 6.0, 5.0], (2.0, 9.0)),
        ([2, 2, 2, 2, 2, 2], (2.0, 2.0)),
        (list(range(30, 0, -1)), (10.0, 21.0)),
    ],
)
def test_median_ci_values(values, expected):
    assert median_ci(values) == expected


def test_median_ci_brackets_the_median():
    rng = random.Random(11)
    for count in range(6, 80):
        values = [rng.lognormvariate(0.0, 1.0) for _ in range(count)]
        low, high = median_ci(values)
        assert low <= median(values) <= high


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_median_ci_rejects_confidence_outside_0_1(confidence):
    with pytest.raises(ValueError, match="^confidence: must be strictly between 0 and 1"):
        median_ci([1.0] * 10, confidence)


# -------------------------------------------------------------------------------------- Wilson


def test_z_95_is_the_97_5_percent_normal_quantile():
    assert Z_95 == 1.959963984540054
    assert abs(Z_95 - 1.95996398454005424) <= math.ulp(Z_95)
    assert NormalDist().cdf(Z_95) == pytest.approx(0.975, abs=1e-15)
    # any other confidence goes through NormalDist, which is within a few ulp of the constant
    assert wilson_interval(5, 10, 0.95) == pytest.approx(wilson_interval(5, 10, 0.9500000000000001), abs=1e-12)


# Expected bounds: the roots of (p - P)^2 = z^2 P (1 - P) / n, computed separately.
@pytest.mark.parametrize(
    ("successes", "trials", "confidence", "expected"),
    [
        (0, 0, 0.95, None),
        (0, 10, 0.95, (0.0, 0.2775327998628892)),
        (10, 10, 0.95, (0.7224672001371107, 1.0)),
        (1, 10, 0.95, (0.017876213095072934, 0.4041500267952383)),
        (5, 10, 0.95, (0.236593090512564, 0.7634069094874361)),
        (29, 30, 0.95, (0.833296090085908, 0.9940914096183879)),
        (1, 1, 0.95, (0.2065493143772375, 1.0)),
        (0, 1, 0.95, (0.0, 0.7934506856227625)),
        (5, 10, 0.9, (0.2692718211382673, 0.7307281788617327)),
        (3, 7, 0.99, (0.11637368051613818, 0.8102850959116122)),
    ],
)
def test_wilson_interval(successes, trials, confidence, expected):
    result = wilson_interval(successes, trials, confidence)
    if expected is None:
        assert result is None
        return
    assert result == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_wilson_interval_is_exact_at_the_edges_and_symmetric():
    for trials in range(1, 200):
        assert wilson_interval(0, trials)[0] == 0.0
        assert wilson_interval(trials, trials)[1] == 1.0
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            mirror_low, mirror_high = wilson_interval(trials - successes, trials)
            assert 0.0 <= low < successes / trials < high <= 1.0 or successes in (0, trials)
            assert low == pytest.approx(1.0 - mirror_high, abs=1e-12)
            assert high == pytest.approx(1.0 - mirror_low, abs=1e-12)


@pytest.mark.parametrize(
    ("successes", "trials", "confidence"),
    [(-1, 10, 0.95), (11, 10, 0.95), (0, -1, 0.95), (1, 10, 0.0), (1, 10, 1.0), (1, 10, math.nan)],
)
def test_wilson_interval_rejects_bad_input(successes, trials, confidence):
    with pytest.raises(ValueError, match="^(successes, trials|confidence): "):
        wilson_interval(successes, trials, confidence)


# --------------------------------------------------------------------------- coverage, simulated

DRAWS = 10_000


def within_sampling_error(simulated: float, exact: float) -> bool:
    """|simulated - exact| within 4 binomial standard errors of DRAWS draws (a 1 in 15,000 miss)."""
    return abs(simulated - exact) <= 4.0 * math.sqrt(exact * (1.0 - exact) / DRAWS)


# Exact coverage of the 95 % order-statistic interval: the README quotes these.
@pytest.mark.parametrize(
    ("count", "exact"),
    [
        (5, 0.9375),  # [min, max], which median_ci declines to return
        (10, 0.978515625),
        (30, 0.9572260547),
        (100, 0.9647997998),
    ],
)
def test_median_ci_coverage_simulated_on_a_skewed_distribution(count, exact):
    # lognormal(0, 1): mean e^0.5, median exactly 1.
    true_median = 1.0
    rng = random.Random(1000 + count)
    covered = 0
    for _ in range(DRAWS):
        values = [rng.lognormvariate(0.0, 1.0) for _ in range(count)]
        if count == 5:
            assert median_ci(values) is None
            interval = (min(values), max(values))
        else:
            interval = median_ci(values)
        covered += interval[0] <= true_median <= interval[1]
    simulated = covered / DRAWS
    ranks = median_ci_ranks(count) or (1, count)
    assert float(coverage(count, *ranks)) == pytest.approx(exact, abs=1e-10)
    assert within_sampling_error(simulated, exact), (count, simulated, exact)
    if count == 5:
        assert simulated < 0.95  # why there is no 95 % interval at n = 5
    else:
        assert simulated >= 0.945


def wilson_exact_coverage(trials: int, p: float) -> float:
    """P(the interval of a binomial(trials, p) count covers p), summed over every count."""
    total = 0.0
    for k in range(trials + 1):
        low, high = wilson_interval(k, trials)
        if low <= p <= high:
            total += math.comb(trials, k) * p**k * (1.0 - p) ** (trials - k)
    return total


# Wilson's exact coverage oscillates with n and p; it dips to 92.98 % at n = 30, p = 0.3 and 0.7,
# so the band around 95 % is 2.5 points, not 2.
@pytest.mark.parametrize(
    ("trials", "p", "exact"),
    [
        (30, 0.1, 0.9742),
        (30, 0.3, 0.9298),
        (30, 0.5, 0.9572),
        (30, 0.7, 0.9298),
        (30, 0.9, 0.9742),
        (100, 0.1, 0.9364),
        (100, 0.3, 0.9372),
        (100, 0.5, 0.9431),
        (100, 0.7, 0.9372),
        (100, 0.9, 0.9364),
    ],
)
def test_wilson_coverage_simulated(trials, p, exact):
    computed = wilson_exact_coverage(trials, p)
    assert computed == pytest.approx(exact, abs=5e-5)
    assert abs(computed - 0.95) <= 0.025
    rng = random.Random(round(trials * 1000 + p * 10))
    covered = 0
    for _ in range(DRAWS):
        successes = sum(rng.random() < p for _ in range(trials))
        low, high = wilson_interval(successes, trials)
        covered += low <= p <= high
    simulated = covered / DRAWS
    assert within_sampling_error(simulated, computed), (trials, p, simulated, computed)
