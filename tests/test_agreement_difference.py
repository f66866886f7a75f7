"""The difference between two models' agreement on task structure and two random inits'
(``modularity.algorithms.agreement_difference``): statistics against scipy and a hand-made
jackknife, calibration on a planted null, and what the persistence output says about it."""

import numpy as np
import pytest
from scipy import stats

from modularity.algorithms.agreement_difference import (
    MIN_TASKS,
    agreement,
    agreement_difference,
)
from modularity.analyses.base import Row
from modularity.analyses.persistence import difference_rows, structure_tasks, verdict


def symmetric(rng, n):
    m = rng.standard_normal((n, n))
    return (m + m.T) / 2


def upper(m):
    return m[np.triu_indices(len(m), k=1)]


def test_agreement_is_spearman_and_partial_spearman_of_the_upper_triangles():
    rng = np.random.default_rng(0)
    a, b, c = (symmetric(rng, 7) for _ in range(3))
    assert agreement(a, b) == pytest.approx(stats.spearmanr(upper(a), upper(b)).statistic)
    ranks = [stats.rankdata(upper(m)) for m in (a, b, c)]
    residual = [r - np.polyval(np.polyfit(ranks[2], r, 1), ranks[2]) for r in ranks[:2]]
    assert agreement(a, b, c) == pytest.approx(np.corrcoef(*residual)[0, 1])


def test_the_interval_is_tukeys_jackknife_over_tasks():
    rng = np.random.default_rng(1)
    n = 7
    base = symmetric(rng, n)
    matrices = {k: base + 0.8 * symmetric(rng, n) for k in ("t", "i", "r1", "r2")}
    control = base + symmetric(rng, n)
    result = agreement_difference(matrices, [("t", "i")], [("r1", "r2")], control)

    def diff(keep):
        sub = {k: m[np.ix_(keep, keep)] for k, m in matrices.items()}
        held = control[np.ix_(keep, keep)]
        return agreement(sub["t"], sub["i"], held) - agreement(sub["r1"], sub["r2"], held)

    full = diff(np.arange(n))
    pseudo = np.array([n * full - (n - 1) * diff(np.delete(np.arange(n), i)) for i in range(n)])
    se = pseudo.std(ddof=1) / np.sqrt(n)  # Tukey's jackknife standard error
    low, high = stats.t.interval(0.95, n - 1, full, se)  # around the plain difference
    assert (result.value, result.low, result.high) == pytest.approx((full, low, high))
    t = full / se
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(t), n - 1))


def test_too_few_tasks_give_no_interval():
    rng = np.random.default_rng(2)
    matrices = {k: symmetric(rng, MIN_TASKS - 1) for k in ("t", "i", "r1", "r2")}
    result = agreement_difference(matrices, [("t", "i")], [("r1", "r2")])
    assert result.value == result.value and result.low != result.low


def planted(rng, n_tasks, trained_noise):
    """Four models over tasks with latent positions: each matrix the shared structure plus
    its own noise; the data similarity is the structure plus noise too."""
    x = rng.standard_normal((n_tasks, 2))
    shared = -np.linalg.norm(x[:, None] - x[None], axis=-1)
    init = shared + symmetric(rng, n_tasks)
    trained = shared if trained_noise is None else init  # None: one more random init
    noise = 1.0 if trained_noise is None else trained_noise
    matrices = {
        "trained": trained + noise * symmetric(rng, n_tasks),
        "init": init,
        "r1": shared + symmetric(rng, n_tasks),
        "r2": shared + symmetric(rng, n_tasks),
    }
    return matrices, shared + symmetric(rng, n_tasks)


@pytest.mark.slow
def test_under_a_planted_null_the_interval_covers_zero_and_finds_real_persistence(capsys):
    """Null: trained, init and both twins are exchangeable (both agreements have one
    distribution): at 8 tasks the 95% interval covers 0 in at least 92% of 150 draws (it is
    conservative). Planted persistence (trained = its init plus a little noise) is found in
    most draws at 10 tasks (about 0.8; at 8 tasks only about 0.3: the test needs tasks)."""
    rng = np.random.default_rng(3)
    null, found = [], []
    for _ in range(150):
        matrices, control = planted(rng, 8, None)
        r = agreement_difference(matrices, [("trained", "init")], [("r1", "r2")], control)
        null.append(r.low <= 0 <= r.high)
    for _ in range(40):
        matrices, control = planted(rng, 10, 0.2)
        r = agreement_difference(matrices, [("trained", "init")], [("r1", "r2")], control)
        found.append(r.low > 0)
    with capsys.disabled():
        print(
            f"\nnull covered {np.mean(null):.3f} (8 tasks); "
            f"persistence found {np.mean(found):.2f} (10 tasks)"
        )
    assert np.mean(null) >= 0.92
    assert np.mean(found) >= 0.5


def test_persistence_tests_leave_out_nested_tasks_and_say_so():
    tasks = ["fashion-trouser", "fashion-shirt", "fashion-tops", "fashion-bag"]
    kept, rows = structure_tasks(tasks)
    assert kept == ["fashion-trouser", "fashion-tops", "fashion-bag"]
    assert [(r.task, r.partner) for r in rows] == [("fashion-shirt", "fashion-tops")]
    sentence = verdict(rows, "m")
    assert "leave out tasks nested in another: fashion-shirt (inside fashion-tops)" in sentence
    assert "not compared" in sentence


def test_difference_rows_and_the_verdict_that_reads_them():
    rng = np.random.default_rng(4)
    matrices, control = planted(rng, 8, 0.05)
    matrices = {
        "m": matrices["trained"],
        "m-init": matrices["init"],
        "m-random1": matrices["r1"],
        "m-random2": matrices["r2"],
    }
    rows = difference_rows(matrices, "m", ["m-random1", "m-random2"], control)
    by_partner = {r.partner: r for r in rows}
    assert set(by_partner) == {"random twins", "m-init"}
    expected = agreement_difference(
        matrices, [("m", "m-init")], [("m-random1", "m-random2")], control
    )
    init = by_partner["m-init"]
    assert (init.value, init.low, init.high, init.n) == pytest.approx(
        (expected.value, expected.low, expected.high, 8)
    )
    mantel = [Row("mantel_r", 0.9, task="m", partner="m-init", p_value=0.01)]
    sentence = verdict(mantel + rows, "m")
    assert "trained-vs-its own init minus random-vs-random agreement (partial Mantel r" in sentence
    assert f"{init.value:+.2f} [{init.low:+.2f}, {init.high:+.2f}]" in sentence
    assert "point estimates" not in sentence
