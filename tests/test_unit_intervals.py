"""Intervals over evaluation units: point estimates equal numpy, with equal unit sizes the
interval is the textbook paired t / Welch interval, the degrees of freedom fall with skewed
sizes as the dense formula says, and degenerate input gives a defined answer. Coverage on a
planted effect: tests/test_interval_coverage.py."""

import numpy as np
import pytest
from scipy import stats

from modularity.algorithms.coverage import REFERENCE, TASK, Planted, accuracy_side, loss_side
from modularity.algorithms.unit_intervals import (
    MIN_UNITS,
    MetricSums,
    _bell_mccaffrey_df,
    drop,
    drop_difference,
    no_interval_reason,
)
from modularity.errors import ConfigError


def test_point_estimates_equal_numpy():
    rng = np.random.default_rng(0)
    before, after = accuracy_side(rng, 50, TASK)
    ref_before, ref_after = accuracy_side(rng, 70, REFERENCE)
    acc_b = before.num.sum() / before.den.sum()
    acc_a = after.num.sum() / after.den.sum()
    ref_b = ref_before.num.sum() / ref_before.den.sum()
    ref_a = ref_after.num.sum() / ref_after.den.sum()

    result = drop(before, after)
    assert result.absolute.value == pytest.approx(100 * (acc_b - acc_a), rel=1e-12)
    assert result.relative.value == pytest.approx((acc_b - acc_a) / acc_b, rel=1e-12)
    assert result.absolute.n_units == 50

    effect = drop_difference(before, after, ref_before, ref_after)
    assert effect.value == pytest.approx(100 * ((acc_b - acc_a) - (ref_b - ref_a)), rel=1e-12)
    assert (effect.n_units, effect.n_reference_units) == (50, 70)

    loss_before, loss_after = loss_side(rng, 40, Planted(3.0, 0.5))
    pooled_b = loss_before.num.sum() / loss_before.den.sum()
    pooled_a = loss_after.num.sum() / loss_after.den.sum()
    loss = drop(loss_before, loss_after, "loss")
    assert loss.absolute.value == pytest.approx(pooled_a - pooled_b, rel=1e-12)
    assert loss.relative.value == pytest.approx((pooled_a - pooled_b) / pooled_b, rel=1e-12)


def equal_sized(rng, n, tokens=50):
    """Units of ``tokens`` tokens each: the drop is the plain mean of per-unit drops."""
    ones = np.full(n, float(tokens))
    before = rng.binomial(tokens, 0.6, n).astype(float)
    after = np.minimum(before, rng.binomial(tokens, 0.45, n))
    return MetricSums(before, ones), MetricSums(after, ones)


def test_equal_sizes_give_the_paired_t_interval():
    """With equal unit sizes the drop is the mean of unit differences and the interval is
    exactly scipy's one-sample t interval on them (df = units - 1)."""
    before, after = equal_sized(np.random.default_rng(1), 8)
    diff = 100 * (before.num - after.num) / before.den
    low, high = stats.t.interval(0.95, 7, loc=diff.mean(), scale=stats.sem(diff))
    result = drop(before, after).absolute
    assert result.df == pytest.approx(7)
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert result.p_value() == pytest.approx(stats.ttest_1samp(diff, 0).pvalue)


def test_equal_sizes_give_welchs_interval_for_the_effect():
    rng = np.random.default_rng(2)
    task, reference = equal_sized(rng, 6), equal_sized(rng, 9, tokens=30)
    a = 100 * (task[0].num - task[1].num) / task[0].den
    b = 100 * (reference[0].num - reference[1].num) / reference[0].den
    welch = stats.ttest_ind(a, b, equal_var=False)
    effect = drop_difference(*task, *reference)
    assert effect.value == pytest.approx(a.mean() - b.mean())
    assert effect.p_value() == pytest.approx(welch.pvalue)
    ci = welch.confidence_interval(0.95)
    assert (effect.low, effect.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_bell_mccaffrey_df_equals_the_dense_formula_and_falls_with_skew():
    rng = np.random.default_rng(3)
    for n in (3, 7, 40):
        h = rng.lognormal(0, 1.2, n)
        h /= h.sum()
        a = h**2 / (1 - h)
        m = np.eye(n) - np.outer(np.ones(n), h)
        g = m.T @ np.diag(a) @ m
        assert _bell_mccaffrey_df(h) == pytest.approx(np.trace(g) ** 2 / np.trace(g @ g))
        assert _bell_mccaffrey_df(h) < n - 1
    assert _bell_mccaffrey_df(np.full(10, 0.1)) == pytest.approx(9)


def test_equivalence_p_is_below_alpha_exactly_when_the_interval_is_inside_the_margin():
    rng = np.random.default_rng(4)
    task, reference = accuracy_side(rng, 30, TASK), accuracy_side(rng, 30, TASK)
    effect = drop_difference(*task, *reference)
    assert effect.low < 0 < effect.high and effect.p_value() > 0.05
    inside = max(abs(effect.low), abs(effect.high))  # the smallest margin holding the interval
    assert effect.p_within(inside * 1.001) < 0.05 < effect.p_within(inside * 0.999)


def test_all_equal_units_give_a_zero_width_interval():
    units = MetricSums(np.full(20, 3.0), np.full(20, 10.0))
    after = MetricSums(np.full(20, 1.0), np.full(20, 10.0))
    result = drop(units, after)
    assert result.absolute.value == pytest.approx(20.0)
    assert result.absolute.low == pytest.approx(20.0)
    assert result.absolute.high == pytest.approx(20.0)
    assert result.absolute.p_value() == 0.0


def test_too_few_units_have_a_value_but_no_interval_and_say_why():
    two = drop(MetricSums([4.0, 3.0], [10.0, 8.0]), MetricSums([2.0, 2.0], [10.0, 8.0]))
    assert two.absolute.value == pytest.approx(100 * (7 / 18 - 4 / 18))
    assert np.isnan(two.absolute.low) and np.isnan(two.absolute.high)
    assert np.isnan(two.absolute.p_value())
    three = [MetricSums([4.0, 5.0, 3.0], [10.0, 10.0, 9.0]) for _ in range(2)]
    effect = drop_difference(*three, *(MetricSums([4.0, 1.0], [10.0, 3.0]),) * 2)
    assert effect.value == pytest.approx(0.0) and np.isnan(effect.low)
    assert "2 evaluation unit(s) on a side, fewer than 3" in no_interval_reason(3, 2)
    assert no_interval_reason(MIN_UNITS, MIN_UNITS) == ""


def test_units_without_tokens_are_left_out():
    """A document with no rare tokens has no skip-metric denominator: it changes nothing,
    not even the interval, and is not counted."""
    rng = np.random.default_rng(5)
    before, after = accuracy_side(rng, 30, TASK)
    padded = [
        MetricSums(np.append(s.num, [0, 0]), np.append(s.den, [0, 0])) for s in (before, after)
    ]
    assert drop(*padded) == drop(before, after)
    assert drop(*padded).absolute.n_units == 30
    assert padded[0].n_units == 30


def test_no_tokens_at_all_is_nan():
    empty = MetricSums(np.zeros(5), np.zeros(5))
    result = drop(empty, empty)
    assert result.absolute.n_units == 0
    assert all(np.isnan(v) for v in (result.absolute.value, result.absolute.low))
    assert np.isnan(result.relative.value)


def test_relative_drop_is_nan_from_zero_accuracy():
    zero = MetricSums(np.zeros(10), np.full(10, 5.0))
    result = drop(zero, zero)
    assert result.absolute.value == 0.0 and result.absolute.low == result.absolute.high == 0.0
    assert np.isnan(result.relative.value) and np.isnan(result.relative.low)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="same units: 3 vs 2"):
        drop(MetricSums(np.ones(3), np.ones(3)), MetricSums(np.ones(2), np.ones(2)))
    with pytest.raises(ValueError, match="den must be >= 0"):
        MetricSums([1.0], [-1.0])
    with pytest.raises(ValueError, match=r"\[units\] arrays"):
        MetricSums(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        MetricSums([np.nan], [1.0])
    sums = MetricSums(np.ones(3), np.ones(3))
    with pytest.raises(ConfigError, match="unknown metric kind 'perplexity'"):
        drop(sums, sums, "perplexity")
    with pytest.raises(ValueError, match="confidence"):
        drop(sums, sums, confidence=95)


def test_welch_df_survives_variances_whose_squares_underflow():
    """Variances near 1e-170 (a metric that barely moves) square to 0 in float64; the df
    is computed in shares of the total, so it is still Welch's value, never a division by 0."""
    import math

    from modularity.algorithms.unit_intervals import _Linearised, _welch_df

    task, reference = _Linearised(0.1, 1e-170, 4.0, 5), _Linearised(0.0, 2e-170, 6.0, 7)
    assert math.isclose(_welch_df(task, reference), 9 / (1 / 4 + 4 / 6))
    assert _welch_df(_Linearised(0.1, 1.0, math.inf, 5), _Linearised(0, 0, 6, 7)) == math.inf
