import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import hypergeom

from modularity.algorithms.set_overlap import (
    containment,
    intersection_null,
    jaccard,
    layer_groups,
    overlap_matrix,
    overlap_table,
)
from modularity.errors import ConfigError


def mask(indices_per_layer: list[list[int]], neurons: int = 10) -> np.ndarray:
    out = np.zeros((len(indices_per_layer), neurons), dtype=bool)
    for layer, indices in enumerate(indices_per_layer):
        out[layer, indices] = True
    return out


A = mask([[0, 1, 2, 3]])
B = mask([[2, 3, 4]])
EMPTY = mask([[]])


def random_sets(rng: np.random.Generator, n: int, k: int, draws: int) -> np.ndarray:
    """``draws`` uniform random k-subsets of n neurons, as a bool array [draws, n]."""
    chosen = rng.random((draws, n)).argsort(axis=1)[:, :k]
    out = np.zeros((draws, n), dtype=bool)
    np.put_along_axis(out, chosen, True, axis=1)
    return out


def test_known_sets():
    assert jaccard(A, B) == pytest.approx(2 / 5)
    assert containment(A, B) == pytest.approx(2 / 4)
    assert containment(B, A) == pytest.approx(2 / 3)
    assert jaccard(A, A) == 1.0


def test_empty_sets_are_nan_not_zero():
    assert math.isnan(jaccard(EMPTY, EMPTY))
    assert math.isnan(containment(EMPTY, B))
    assert containment(A, EMPTY) == 0.0
    assert jaccard(A, EMPTY) == 0.0


def test_per_layer_overlap_values():
    a = mask([[0, 1, 2, 3], [], [5]])
    b = mask([[2, 3, 4], [], [6]])
    per_layer = {
        metric: [overlap_matrix({"a": a, "b": b}, metric, layers=[i])[1] for i in range(3)]
        for metric in ("jaccard", "containment")
    }
    np.testing.assert_allclose([m[0, 1] for m in per_layer["jaccard"]], [2 / 5, np.nan, 0.0])
    np.testing.assert_allclose([m[0, 1] for m in per_layer["containment"]], [2 / 4, np.nan, 0.0])
    np.testing.assert_allclose([m[1, 0] for m in per_layer["containment"]], [2 / 3, np.nan, 0.0])
    table = overlap_table({"a": a, "b": b}, metrics=["jaccard"], per_layer=True)
    row = table.query("task_a == 'a' and task_b == 'b' and scope != 'all'")
    np.testing.assert_allclose(row["value"], [2 / 5, np.nan, 0.0])


def test_torch_and_numpy_inputs_agree():
    ta, tb = torch.from_numpy(A), torch.from_numpy(B)
    assert jaccard(ta, tb) == jaccard(A, B)
    assert containment(ta, B) == containment(A, B)
    assert intersection_null(ta, tb) == intersection_null(A, B)
    names, m = overlap_matrix({"a": ta, "b": B})
    np.testing.assert_array_equal(m, overlap_matrix({"a": A, "b": B})[1])


def test_mismatched_shapes_name_both():
    with pytest.raises(ValueError, match=r"\(1, 10\).*\(2, 10\)"):
        jaccard(A, mask([[1], [2]]))
    with pytest.raises(ValueError, match=r"'x': \(1, 10\), 'y': \(1, 11\)"):
        overlap_matrix({"x": A, "y": mask([[1]], neurons=11)})


def test_bad_inputs():
    with pytest.raises(TypeError, match="boolean"):
        jaccard(A.astype(np.float32), B)
    with pytest.raises(ValueError, match=r"\(10,\)"):
        jaccard(A[0], B[0])
    with pytest.raises(ValueError, match="at least one"):
        overlap_matrix({})
    with pytest.raises(ConfigError, match="jacard"):
        overlap_matrix({"a": A}, metric="jacard")
    with pytest.raises(ValueError, match="out of range"):
        overlap_matrix({"a": A}, layers=[3])
    with pytest.raises(ValueError, match="repeat"):
        overlap_matrix({"a": A}, layers=[0, 0])


def test_null_moments_match_simulation():
    rng = np.random.default_rng(0)
    n, ka, kb, draws = 200, 30, 50, 20_000
    inter = (random_sets(rng, n, ka, draws) & random_sets(rng, n, kb, draws)).sum(axis=1)
    a = np.zeros((1, n), dtype=bool)
    a[0, :ka] = True
    b = np.zeros((1, n), dtype=bool)
    b[0, n - kb :] = True  # disjoint from a: observed 0
    null = intersection_null(a, b, per_layer=True)
    assert null.expected[0] == pytest.approx(ka * kb / n)
    assert null.expected[0] == pytest.approx(inter.mean(), rel=0.02)
    assert null.variance[0] == pytest.approx(inter.var(ddof=1), rel=0.05)
    assert null.p_value[0] == 1.0  # P(X >= 0)
    for threshold in (5, 8, 10, 13):
        expected_tail = hypergeom.sf(threshold - 1, n, ka, kb)
        assert (inter >= threshold).mean() == pytest.approx(expected_tail, abs=0.01)


def test_whole_model_null_is_sum_of_layers():
    """Two layers of different sizes: moments and the exact tail match a simulation."""
    rng = np.random.default_rng(1)
    n, draws = 100, 20_000
    sizes = [(10, 40), (60, 30)]
    total = sum(
        (random_sets(rng, n, ka, draws) & random_sets(rng, n, kb, draws)).sum(axis=1)
        for ka, kb in sizes
    )
    a = np.zeros((2, n), dtype=bool)
    b = np.zeros((2, n), dtype=bool)
    for layer, (ka, kb) in enumerate(sizes):
        a[layer, :ka] = True
        b[layer, :kb] = True  # nested sets: observed intersection min(ka, kb) = 40 in all
    null = intersection_null(a, b)
    per_layer = intersection_null(a, b, per_layer=True)
    assert null.observed == 40
    assert null.expected == pytest.approx(per_layer.expected.sum())
    assert null.variance == pytest.approx(per_layer.variance.sum())
    assert null.expected == pytest.approx(total.mean(), rel=0.02)
    assert null.variance == pytest.approx(total.var(ddof=1), rel=0.05)
    assert null.z == pytest.approx((40 - null.expected) / math.sqrt(null.variance))
    assert null.p_value < 1e-6  # nested sets: far more overlap than chance
    # The exact tail at thresholds the simulation can resolve.
    for threshold in (20, 24, 27):
        a_t = np.zeros((2, n), dtype=bool)
        b_t = np.zeros((2, n), dtype=bool)
        a_t[0, :10], b_t[0, :40] = True, True  # layer 0: intersection 10
        start = 70 - threshold  # layer 1: intersection threshold - 10
        a_t[1, :60], b_t[1, start : start + 30] = True, True
        null_t = intersection_null(a_t, b_t)
        assert null_t.observed == threshold
        assert null_t.p_value == pytest.approx((total >= threshold).mean(), abs=0.01)


def test_whole_model_p_value_is_exact():
    n = 50
    a = mask([[*range(20)], [*range(5)], [*range(30)]], neurons=n)
    b = mask([[*range(15, 40)], [*range(3, 13)], [*range(10, 50)]], neurons=n)
    null = intersection_null(a, b)
    pmf = np.ones(1)
    for ka, kb in [(20, 25), (5, 10), (30, 40)]:
        pmf = np.convolve(pmf, hypergeom.pmf(np.arange(min(ka, kb) + 1), n, ka, kb))
    assert null.p_value == pytest.approx(pmf[null.observed :].sum(), rel=1e-8)
    one_layer = intersection_null(a[:1], b[:1])
    assert one_layer.p_value == pytest.approx(hypergeom.sf(4, n, 20, 25), rel=1e-8)


def test_null_degenerate_cases():
    full = np.ones((2, 10), dtype=bool)
    null = intersection_null(full, full)
    assert null.variance == 0.0 and math.isnan(null.z)
    assert null.p_value == pytest.approx(1.0)
    empty = intersection_null(EMPTY, EMPTY, per_layer=True)
    assert empty.expected[0] == 0.0 and math.isnan(empty.z[0])
    assert math.isnan(empty.expected_jaccard[0])
    single = np.ones((1, 1), dtype=bool)
    assert intersection_null(single, single).variance == 0.0


def test_expected_jaccard_approximation():
    null = intersection_null(A, B)
    e = 4 * 3 / 10
    assert null.expected_jaccard == pytest.approx(e / (4 + 3 - e))


def test_self_overlap_z_is_large():
    rng = np.random.default_rng(2)
    a = rng.random((4, 1000)) < 0.05
    null = intersection_null(a, a)
    assert null.z > 50 and null.p_value < 1e-100
    # Per layer the z of a set with itself is sqrt(n - 1), whatever its size.
    np.testing.assert_allclose(intersection_null(a, a, per_layer=True).z, math.sqrt(999))


def test_matrices():
    rng = np.random.default_rng(3)
    sets = {f"t{i}": rng.random((6, 40)) < p for i, p in enumerate([0.1, 0.3, 0.5, 0.2])}
    sets["shared"] = sets["t1"] | sets["t2"]
    names, jac = overlap_matrix(sets, "jaccard")
    _, con = overlap_matrix(sets, "containment")
    _, z = overlap_matrix(sets, "z")
    assert names == ["t0", "t1", "t2", "t3", "shared"]
    np.testing.assert_array_equal(jac, jac.T)
    np.testing.assert_array_equal(z, z.T)
    np.testing.assert_array_equal(np.diag(jac), 1.0)
    np.testing.assert_array_equal(np.diag(con), 1.0)
    assert con[1, 4] == 1.0  # t1 is inside shared
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            assert jac[i, j] == pytest.approx(jaccard(sets[a], sets[b]))
            assert con[i, j] == pytest.approx(containment(sets[a], sets[b]))
            assert z[i, j] == pytest.approx(intersection_null(sets[a], sets[b]).z)


def test_matrix_layer_subset_equals_sliced_sets():
    rng = np.random.default_rng(4)
    sets = {f"t{i}": rng.random((9, 30)) < 0.3 for i in range(3)}
    for layers in (slice(3, 6), [0, 8], [2]):
        for metric in ("jaccard", "containment", "z"):
            _, sub = overlap_matrix(sets, metric, layers=layers)
            _, ref = overlap_matrix({k: v[layers] for k, v in sets.items()}, metric)
            np.testing.assert_allclose(sub, ref)


def test_matrix_with_empty_set():
    names, jac = overlap_matrix({"a": A, "empty": EMPTY}, "jaccard")
    assert jac[0, 0] == 1.0 and jac[0, 1] == 0.0 and math.isnan(jac[1, 1])
    _, con = overlap_matrix({"a": A, "empty": EMPTY}, "containment")
    assert con[0, 1] == 0.0 and math.isnan(con[1, 0])


def test_layer_groups():
    groups = layer_groups(32)
    assert list(groups) == ["early", "middle", "late"]
    assert [len(g) for g in groups.values()] == [11, 11, 10]
    assert sum(groups.values(), []) == list(range(32))
    assert list(layer_groups(8, 4)) == ["g0", "g1", "g2", "g3"]
    assert layer_groups(1, 1) == {"g0": [0]}
    with pytest.raises(ValueError, match="n_groups"):
        layer_groups(2, 3)


def test_overlap_table(tmp_path):
    rng = np.random.default_rng(5)
    sets = {f"t{i}": rng.random((6, 50)) < 0.2 for i in range(3)}
    groups = layer_groups(6)
    df = overlap_table(sets, groups=groups, per_layer=True)
    assert list(df.columns) == ["task_a", "task_b", "scope", "metric", "value"]
    scopes = ["all", "early", "middle", "late", *map(str, range(6))]
    assert df["scope"].unique().tolist() == scopes
    assert len(df) == len(scopes) * 3 * 3 * 3
    row = df.query("task_a == 't0' and task_b == 't2' and scope == 'middle'")
    values = dict(zip(row["metric"], row["value"], strict=True))
    for metric in ("jaccard", "containment", "z"):
        ref = overlap_matrix(sets, metric, layers=groups["middle"])[1][0, 2]
        assert values[metric] == pytest.approx(ref)
    layer = df.query("task_a == 't1' and task_b == 't0' and scope == '4' and metric == 'jaccard'")
    t1, t0 = sets["t1"][4], sets["t0"][4]
    assert layer["value"].item() == pytest.approx((t1 & t0).sum() / (t1 | t0).sum())
    df.to_csv(tmp_path / "overlap.csv", index=False)
    back = pd.read_csv(tmp_path / "overlap.csv", dtype={"scope": str})
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    with pytest.raises(ValueError, match="clash"):
        overlap_table(sets, groups={"all": [0]})


masks = st.integers(1, 4).flatmap(
    lambda layers: st.integers(1, 12).flatmap(
        lambda neurons: st.tuples(
            arrays(np.bool_, (layers, neurons)), arrays(np.bool_, (layers, neurons))
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_properties(pair):
    a, b = pair
    j = jaccard(a, b)
    assert math.isnan(j) or 0.0 <= j <= 1.0
    if a.any() and b.any():
        assert j == pytest.approx(jaccard(b, a))
        assert j <= min(containment(a, b), containment(b, a)) + 1e-12
    _, m = overlap_matrix({"a": a, "b": b}, "jaccard")
    np.testing.assert_array_equal(m, m.T)
    null = intersection_null(a, b)
    assert 0.0 <= null.p_value <= 1.0
    assert null.expected <= min(a.sum(), b.sum()) + 1e-9
