"""The mean effect over tasks (``modularity.algorithms.across_tasks``): its interval against
hand computations with numpy/scipy, and its coverage of a planted mean on a two-level
simulation (tasks drawn around the mean, then evaluation units within each task)."""

import numpy as np
import pytest
from scipy import stats

from modularity.algorithms.across_tasks import mean_over_tasks
from modularity.algorithms.coverage import across_task_coverage


def test_scattered_tasks_give_the_t_interval_over_tasks():
    values, errors = np.array([0.0, 10.0, 4.0, 6.0]), np.full(4, 0.1)
    pooled = mean_over_tasks(values, errors, np.full(4, 30.0))
    assert (pooled.low, pooled.high) == pytest.approx(
        stats.t.interval(0.95, 3, values.mean(), stats.sem(values))
    )
    assert pooled.df == 3
    assert pooled.tau == pytest.approx(np.sqrt(values.var(ddof=1) - 0.01))


def test_agreeing_tasks_keep_their_own_errors_with_satterthwaite_df():
    values = np.array([3.0, 3.1, 2.9, 3.0])
    errors, dfs = np.array([2.0, 1.0, 1.0, 2.0]), np.array([4.0, 10.0, 10.0, 6.0])
    pooled = mean_over_tasks(values, errors, dfs)
    variance = (errors**2).sum() / 16
    df = (errors**2).sum() ** 2 / (errors**4 / dfs).sum()  # Satterthwaite by hand
    assert pooled.df == pytest.approx(df)
    assert pooled.high - pooled.value == pytest.approx(stats.t.ppf(0.975, df) * np.sqrt(variance))
    assert pooled.tau == 0.0  # the scatter is less than the errors explain


def test_unknown_dfs_fall_back_to_tasks_minus_one():
    values, errors = np.array([3.0, 3.1, 2.9]), np.array([2.0, 2.0, 2.0])
    pooled = mean_over_tasks(values, errors)
    assert pooled.high - 3.0 == pytest.approx(stats.t.ppf(0.975, 2) * np.sqrt(12 / 9))


def test_tasks_without_an_estimate_are_left_out_and_one_task_has_no_interval():
    pooled = mean_over_tasks(np.array([5.0, np.nan, 1.0]), np.array([1.0, 1.0, np.nan]))
    assert pooled.value == 5.0 and pooled.n_tasks == 1 and pooled.low != pooled.low
    with pytest.raises(ValueError, match="must be >= 0"):
        mean_over_tasks(np.array([1.0, 2.0]), np.array([-1.0, 1.0]))


@pytest.mark.slow
def test_four_tasks_of_five_units_cover_the_planted_mean(capsys):
    """The smallest design the project reports a mean for: 4 tasks, 5 skewed units each,
    a between-task spread of 3 pp. 400 experiments: binomial sd 0.011."""
    rate = across_task_coverage("two-level t (the project's)", 4, 5, 3.0, 400)
    with capsys.disabled():
        print(f"\ncoverage of the mean over 4 tasks x 5 units, tau 3 pp: {rate:.3f}")
    assert 0.93 <= rate <= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("n_tasks", [5, 8])
@pytest.mark.parametrize("tau", [0.0, 3.0])
def test_more_tasks_cover_at_every_unit_count(n_tasks, tau, capsys):
    rates = {
        n: across_task_coverage("two-level t (the project's)", n_tasks, n, tau, 300)
        for n in (5, 100)
    }
    with capsys.disabled():
        print(f"\ncoverage over {n_tasks} tasks, tau {tau}: {rates}")
    for rate in rates.values():
        assert 0.92 <= rate <= 0.99
