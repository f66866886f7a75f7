"""Mantel test: statistics equal scipy's, p-values are uniform under the null, small for
related matrices, exact for few tasks; bad input is a clear error."""

import dataclasses
import itertools

import numpy as np
import pytest
from scipy import stats

from modularity.algorithms.mantel import mantel, partial_mantel
from modularity.analyses.persistence import mantel_rows, verdict
from modularity.errors import ConfigError


def symmetric(rng, n_tasks):
    x = rng.random((n_tasks, n_tasks))
    return (x + x.T) / 2


def upper(m):
    return m[np.triu_indices(m.shape[0], k=1)]


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_statistic_equals_scipy(method):
    rng = np.random.default_rng(0)
    a, b = symmetric(rng, 9), symmetric(rng, 9)
    scipy_fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    expected = scipy_fn(upper(a), upper(b)).statistic
    assert mantel(a, b, method).statistic == pytest.approx(expected, abs=1e-12)


def test_exact_p_value_equals_brute_force_enumeration():
    """T=5: every relabelling of b's tasks, correlated with scipy, counted by hand."""
    rng = np.random.default_rng(1)
    a, b = symmetric(rng, 5), symmetric(rng, 5)
    observed = stats.pearsonr(upper(a), upper(b)).statistic
    permuted = [
        stats.pearsonr(upper(a), upper(b[np.ix_(p, p)])).statistic
        for p in itertools.permutations(range(5))
    ]
    result = mantel(a, b)
    assert result.exact and result.n_permutations == 120
    assert result.p_value == pytest.approx(np.mean(np.array(permuted) >= observed - 1e-12))
    two_sided = mantel(a, b, alternative="two-sided").p_value
    assert two_sided == pytest.approx(np.mean(np.abs(permuted) >= abs(observed) - 1e-12))
    less = mantel(a, b, alternative="less").p_value
    assert less == pytest.approx(np.mean(np.array(permuted) <= observed + 1e-12))


def test_noisy_copy_gives_a_small_p_value():
    rng = np.random.default_rng(2)
    a = symmetric(rng, 12)
    result = mantel(a, a + 0.1 * symmetric(rng, 12), n_permutations=999)
    assert not result.exact and result.n_permutations == 999
    assert result.statistic > 0.9
    assert result.p_value == pytest.approx(1 / 1000)  # no relabelling does as well
    exact = mantel(a[:7, :7], a[:7, :7] + 0.1 * symmetric(rng, 7))
    assert exact.exact and exact.p_value == pytest.approx(1 / 5040)


def test_monte_carlo_is_seeded():
    rng = np.random.default_rng(3)
    a, b = symmetric(rng, 10), symmetric(rng, 10)
    assert mantel(a, b, n_permutations=199, seed=1) == mantel(a, b, n_permutations=199, seed=1)
    assert mantel(a, b, n_permutations=199, seed=1) != mantel(a, b, n_permutations=199, seed=2)


def test_three_tasks_is_exact_over_six_labellings():
    a = np.array([[1.0, 0.2, 0.5], [0.2, 1.0, 0.9], [0.5, 0.9, 1.0]])
    result = mantel(a, a)
    assert result.statistic == pytest.approx(1.0)
    assert (result.n_permutations, result.exact) == (6, True)
    # Relabelling 3 tasks permutes the 3 off-diagonal entries in all 6 ways; with distinct
    # entries only the identity gives r = 1, the smallest p-value three tasks allow.
    assert result.p_value == pytest.approx(1 / 6)
    assert mantel(a, a, alternative="less").p_value == pytest.approx(1.0)


@pytest.mark.parametrize("n_tasks,n_permutations", [(6, None), (11, 199)])
def test_p_values_of_unrelated_matrices_are_uniform(n_tasks, n_permutations):
    """Exact (T=6) and Monte Carlo (T=11) p-values over 300 pairs of independent random
    matrices: Kolmogorov-Smirnov does not reject uniformity, and 5% fall at or below 0.05."""
    rng = np.random.default_rng(4)
    kwargs = {} if n_permutations is None else {"n_permutations": n_permutations}
    p_values = np.array(
        [
            mantel(symmetric(rng, n_tasks), symmetric(rng, n_tasks), seed=i, **kwargs).p_value
            for i in range(300)
        ]
    )
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(p_values <= 0.05) <= 0.08


def test_nan_diagonal_is_ignored():
    rng = np.random.default_rng(5)
    a, b = symmetric(rng, 5), symmetric(rng, 5)
    with_nan = a.copy()
    np.fill_diagonal(with_nan, np.nan)
    assert mantel(with_nan, b) == mantel(a, b)


def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(6)
    a = symmetric(rng, 4)
    with pytest.raises(ValueError, match=r"differ in shape: a is \(4, 4\), b is \(5, 5\)"):
        mantel(a, symmetric(rng, 5))
    with pytest.raises(ValueError, match="b is not symmetric"):
        mantel(a, rng.random((4, 4)))
    with pytest.raises(ValueError, match="square"):
        mantel(a, rng.random((4, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        mantel(a[:2, :2], a[:2, :2])
    with pytest.raises(ValueError, match="all equal"):
        mantel(a, np.ones((4, 4)))
    broken = a.copy()
    broken[0, 1] = broken[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        mantel(broken, a)
    with pytest.raises(ConfigError, match="unknown Mantel correlation 'kendall'"):
        mantel(a, a, "kendall")


def test_partial_statistic_is_the_partial_correlation_of_the_entries():
    rng = np.random.default_rng(20)
    a, b, c = symmetric(rng, 9), symmetric(rng, 9), symmetric(rng, 9)
    r = {
        pair: stats.pearsonr(upper(x), upper(y)).statistic
        for pair, (x, y) in {"ab": (a, b), "ac": (a, c), "bc": (b, c)}.items()
    }
    expected = (r["ab"] - r["ac"] * r["bc"]) / np.sqrt((1 - r["ac"] ** 2) * (1 - r["bc"] ** 2))
    assert partial_mantel(a, b, c).statistic == pytest.approx(expected, abs=1e-12)


def test_agreement_that_only_reflects_shared_inputs_is_not_significant_once_controlled():
    """Two models that both just mirror the tasks' input similarity (with one strongly
    overlapping pair, as a class inside its superclass) agree by the plain Mantel test, not
    once the input similarity is partialled out (Pearson: 1 of 30 below 5%; on ranks the
    partial test is more liberal, 0.10 in 60 draws); genuine shared structure still shows."""
    rng = np.random.default_rng(21)
    data = symmetric(rng, 7)
    data[0, 1] = data[1, 0] = 3.0  # the nested pair
    plain, partial, genuine = [], [], []
    shared = symmetric(rng, 7)
    for _ in range(30):
        a = data + 0.3 * symmetric(rng, 7)
        b = data + 0.3 * symmetric(rng, 7)
        plain.append(mantel(a, b, "spearman").p_value)
        partial.append(partial_mantel(a, b, data).p_value)
        genuine.append(partial_mantel(a + shared, b + shared, data, "spearman").p_value)
    assert np.median(plain) < 0.01
    assert np.mean(np.array(partial) < 0.05) <= 0.1
    assert np.median(genuine) < 0.01


def test_partial_mantel_rejects_a_mismatched_control():
    rng = np.random.default_rng(22)
    with pytest.raises(ValueError, match="differ in shape"):
        partial_mantel(symmetric(rng, 5), symmetric(rng, 5), symmetric(rng, 6))


def test_persistence_rows_hold_the_partial_test_and_the_verdict_reads_it():
    rng = np.random.default_rng(23)
    data = symmetric(rng, 6)
    trained, twin = data + 0.1 * symmetric(rng, 6), data + 0.1 * symmetric(rng, 6)
    matrices = {"m": trained, "m-random1": twin}
    rows = mantel_rows(matrices, [("m", "m-random1")], 99, data)
    assert [r.metric for r in rows] == ["mantel_r", "partial_mantel_r"]
    expected = partial_mantel(trained, twin, data, "spearman")
    assert rows[1].value == pytest.approx(expected.statistic)
    assert rows[1].p_value == pytest.approx(expected.p_value)
    init = [dataclasses.replace(r, partner="m-init") for r in rows]
    sentence = verdict(init, "m")
    assert "point estimates" not in sentence  # no random-vs-random control here
    held = "beyond" if expected.p_value < 0.05 else "not beyond"
    assert f"partial r {expected.statistic:.2f} (p {expected.p_value:.3g}), {held}" in sentence
