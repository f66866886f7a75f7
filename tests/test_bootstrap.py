"""Bootstrap drops: point estimates equal numpy, intervals cover a known effect at about the
nominal rate, and degenerate input gives a defined answer."""

import time

import numpy as np
import pytest

from modularity.algorithms.bootstrap import MetricSums, _resampled_sums, drop, drop_difference
from modularity.errors import ConfigError


def accuracy_side(rng, n_units, accuracy, relative_drop):
    """Documents of random length whose own accuracy varies around ``accuracy``; pruning
    keeps a ``1 - relative_drop`` share of each one's. True drop: 100 * accuracy *
    relative_drop pp (lengths are independent of accuracies, so the pooled mean is the mean)."""
    tokens = rng.geometric(1 / 60, n_units)
    own = rng.beta(2 * accuracy / (1 - accuracy), 2, n_units)
    before = rng.binomial(tokens, own)
    after = rng.binomial(tokens, own * (1 - relative_drop))
    return MetricSums(before, tokens), MetricSums(after, tokens)


def loss_side(rng, n_units, loss, rise):
    """Summed cross-entropy per document, mean ``loss`` nats per token before, ``loss +
    rise`` after, with per-document variation."""
    tokens = rng.geometric(1 / 60, n_units)
    own = rng.gamma(4, loss / 4, n_units)
    before = rng.gamma(tokens * 4.0, own / 4)
    after = before + rng.gamma(tokens * 2.0, rise / 2 * own / loss)
    return MetricSums(before, tokens), MetricSums(after, tokens)


def test_point_estimates_equal_numpy():
    rng = np.random.default_rng(0)
    before, after = accuracy_side(rng, 50, 0.6, 0.2)
    ref_before, ref_after = accuracy_side(rng, 70, 0.5, 0.05)
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

    loss_before, loss_after = loss_side(rng, 40, 3.0, 0.5)
    pooled_b = loss_before.num.sum() / loss_before.den.sum()
    pooled_a = loss_after.num.sum() / loss_after.den.sum()
    loss = drop(loss_before, loss_after, "loss")
    assert loss.absolute.value == pytest.approx(pooled_a - pooled_b, rel=1e-12)
    assert loss.relative.value == pytest.approx((pooled_a - pooled_b) / pooled_b, rel=1e-12)


def test_interval_width_matches_the_standard_error_of_a_paired_mean():
    """One token per unit: the drop is a mean of paired differences, whose bootstrap 95%
    interval is about +-1.96 standard errors (the plug-in one, with 1/n)."""
    rng = np.random.default_rng(1)
    n = 400
    before = rng.random(n) < 0.7
    after = before & (rng.random(n) < 0.8)
    ones = np.ones(n)
    result = drop(MetricSums(before, ones), MetricSums(after, ones), n_resamples=4000).absolute
    diff = 100 * (before.astype(float) - after)
    half_width = 1.96 * diff.std() / np.sqrt(n)
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.08)
    assert result.low < result.value < result.high


def test_seeded_and_deterministic():
    rng = np.random.default_rng(2)
    sides = accuracy_side(rng, 30, 0.5, 0.2) + accuracy_side(rng, 30, 0.5, 0.0)
    assert drop_difference(*sides, seed=3) == drop_difference(*sides, seed=3)
    assert drop_difference(*sides, seed=3) != drop_difference(*sides, seed=4)
    assert drop(*sides[:2], seed=5) == drop(*sides[:2], seed=5)


def test_resampled_sums_are_multinomial_resamples():
    """Every resample draws exactly ``units`` rows; on average each row once."""
    rng = np.random.default_rng(3)
    columns = np.column_stack([np.ones(500), rng.random(500)])
    sums = _resampled_sums(columns, 3000, np.random.default_rng(0))
    assert np.array_equal(sums[:, 0], np.full(3000, 500.0))
    assert sums[:, 1].mean() == pytest.approx(columns[:, 1].sum(), rel=2e-3)
    # variance of a resampled sum: n * population variance of the rows
    assert sums[:, 1].var() == pytest.approx(500 * columns[:, 1].var(), rel=0.1)


def test_all_equal_units_give_a_zero_width_interval():
    units = MetricSums(np.full(20, 3.0), np.full(20, 10.0))
    after = MetricSums(np.full(20, 1.0), np.full(20, 10.0))
    result = drop(units, after)
    assert result.absolute.value == pytest.approx(20.0)
    assert result.absolute.low == pytest.approx(20.0)
    assert result.absolute.high == pytest.approx(20.0)


def test_one_unit_has_a_value_but_no_interval():
    result = drop(MetricSums([4.0], [10.0]), MetricSums([2.0], [10.0]))
    assert result.absolute.value == pytest.approx(20.0)
    assert np.isnan(result.absolute.low) and np.isnan(result.absolute.high)
    effect = drop_difference(
        MetricSums([4.0, 5.0], [10.0, 10.0]),
        MetricSums([2.0, 2.0], [10.0, 10.0]),
        MetricSums([4.0], [10.0]),
        MetricSums([4.0], [10.0]),
    )
    assert effect.value == pytest.approx(25.0)
    assert np.isnan(effect.low)


def test_units_without_tokens_are_left_out():
    """A document with no rare tokens has no skip-metric denominator: it changes nothing,
    not even the interval, and is not counted."""
    rng = np.random.default_rng(4)
    before, after = accuracy_side(rng, 30, 0.5, 0.2)
    padded = [
        MetricSums(np.append(s.num, [0, 0]), np.append(s.den, [0, 0])) for s in (before, after)
    ]
    assert drop(*padded, seed=1) == drop(before, after, seed=1)
    assert drop(*padded).absolute.n_units == 30


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


@pytest.mark.slow
def test_intervals_cover_a_known_effect_at_the_nominal_rate(capsys):
    """95% intervals over 400 simulated evaluations of 200 documents each: the share that
    covers the true effect is within 3 points of 95% (binomial sd about 1.1 points)."""
    rng = np.random.default_rng(5)
    n_datasets, hits = 400, {"absolute": 0, "relative": 0, "difference": 0, "loss": 0}
    for i in range(n_datasets):
        task = accuracy_side(rng, 200, 0.5, 0.3)
        reference = accuracy_side(rng, 150, 0.4, 0.05)
        one = drop(*task, n_resamples=1000, seed=i)
        hits["absolute"] += one.absolute.low <= 15.0 <= one.absolute.high
        hits["relative"] += one.relative.low <= 0.3 <= one.relative.high
        effect = drop_difference(*task, *reference, n_resamples=1000, seed=i)
        hits["difference"] += effect.low <= 15.0 - 2.0 <= effect.high
        loss = drop_difference(
            *loss_side(rng, 200, 3.0, 0.4), *loss_side(rng, 150, 2.5, 0.1), "loss", seed=i
        )
        hits["loss"] += loss.low <= 0.3 <= loss.high
    coverage = {name: count / n_datasets for name, count in hits.items()}
    with capsys.disabled():
        print(f"\nbootstrap 95% coverage over {n_datasets} datasets: {coverage}")
    for name, rate in coverage.items():
        assert 0.92 <= rate <= 0.98, name


def test_ten_thousand_units_two_thousand_resamples_is_fast(capsys):
    rng = np.random.default_rng(6)
    sides = accuracy_side(rng, 10_000, 0.5, 0.2) + accuracy_side(rng, 10_000, 0.5, 0.0)
    start = time.perf_counter()
    drop_difference(*sides, n_resamples=2000)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\ndrop_difference, 2 x 10k units x 2000 resamples: {seconds:.2f} s")
    assert seconds < 10
