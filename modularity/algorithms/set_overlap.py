"""How much the neuron sets of different tasks overlap, and how much they would by chance.

A neuron set is a boolean mask ``[layers, neurons]`` (``torch.Tensor`` or ``np.ndarray``);
results are numpy. Raw overlap means little on its own: two sets that each take half of a
layer share a quarter of it by chance. So next to Jaccard and containment this module gives
the null model of two random sets of the same per-layer sizes, drawn uniformly and
independently inside each layer: the intersection in a layer is hypergeometric, and the
whole-model intersection is the sum of the independent per-layer hypergeometrics.

Empty sets: a ratio whose denominator is zero (Jaccard of two empty sets, containment of an
empty set) is ``nan``, never 0 or 1, so that "no neurons" cannot pass for "no overlap".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.special import gammaln
from scipy.stats import hypergeom

from modularity.errors import invalid_choice

Mask = np.ndarray | torch.Tensor
Metric = Literal["jaccard", "containment", "z"]
METRICS: tuple[Metric, ...] = ("jaccard", "containment", "z")


def _as_mask(mask: Mask, name: str) -> np.ndarray:
    """``mask`` as a numpy bool array ``[layers, neurons]``; rejects anything else."""
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean mask, got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must have shape [layers, neurons], both > 0; got {arr.shape}")
    return arr


def _as_pair(a: Mask, b: Mask) -> tuple[np.ndarray, np.ndarray]:
    a_, b_ = _as_mask(a, "a"), _as_mask(b, "b")
    if a_.shape != b_.shape:
        raise ValueError(f"masks differ in shape: a is {a_.shape}, b is {b_.shape}")
    return a_, b_


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, ``nan`` where ``den`` is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def jaccard(a: Mask, b: Mask) -> float:
    """|A∩B| / |A∪B| over the whole model; ``nan`` if both sets are empty."""
    a_, b_ = _as_pair(a, b)
    return float(_ratio(np.count_nonzero(a_ & b_), np.count_nonzero(a_ | b_)))


def containment(a: Mask, b: Mask) -> float:
    """|A∩B| / |A|: the share of A that B also selects (asymmetric); ``nan`` if A is empty."""
    a_, b_ = _as_pair(a, b)
    return float(_ratio(np.count_nonzero(a_ & b_), np.count_nonzero(a_)))


@dataclass(frozen=True)
class IntersectionNull:
    """Observed intersection against two random sets of the same per-layer sizes.

    Floats for the whole model, arrays ``[layers]`` per layer. ``p_value`` is the one-sided
    upper tail P(X >= observed): small when the sets share more neurons than chance.
    ``expected_jaccard`` is the approximation E[I] / (|A| + |B| - E[I]), not the exact E[J].
    """

    observed: int | np.ndarray
    expected: float | np.ndarray
    variance: float | np.ndarray
    z: float | np.ndarray  # (observed - expected) / sqrt(variance); nan where variance is 0
    p_value: float | np.ndarray
    expected_jaccard: float | np.ndarray


def _null_moments(
    size_a: np.ndarray, size_b: np.ndarray, neurons: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of hypergeometric(neurons, size_a, size_b), elementwise."""
    ka, kb, n = size_a.astype(np.float64), size_b.astype(np.float64), float(neurons)
    return ka * kb / n, ka * kb * (n - ka) * (n - kb) / (n * n * _n_minus_1(neurons))


def _n_minus_1(neurons: int) -> float:
    """n - 1, or 1 when n is 1: then the variance's numerator is 0 and so is the variance."""
    return float(max(neurons - 1, 1))


def _log_comb(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    return gammaln(np.add(n, 1)) - gammaln(np.add(k, 1)) - gammaln(np.subtract(n, k) + 1)


def _hypergeom_pmf(neurons: int, size_a: int, size_b: int) -> tuple[int, np.ndarray]:
    """Intersection pmf on the values where it is nonzero in float64: (first value, pmf)."""
    first = max(0, size_a + size_b - neurons)
    x = np.arange(first, min(size_a, size_b) + 1)
    log_p = _log_comb(size_a, x) + _log_comb(neurons - size_a, size_b - x)
    p = np.exp(log_p - log_p.max())  # normalise by the sum, not by C(n, kb): fewer roundings
    nonzero = np.flatnonzero(p)
    p = p[nonzero[0] : nonzero[-1] + 1]
    return first + int(nonzero[0]), p / p.sum()


def _sum_upper_tail(observed: int, neurons: int, size_a: np.ndarray, size_b: np.ndarray) -> float:
    """Exact P(sum of per-layer hypergeometrics >= observed), by convolving the pmfs.

    Direct convolution of nonnegative arrays keeps relative precision far into the tail; the
    arrays stay short because pmf values that underflow to 0 are trimmed (32 layers x 14336
    neurons with half of each layer selected take about 0.05 s).
    """
    pmf, first = np.ones(1), 0
    for ka, kb in zip(size_a.tolist(), size_b.tolist(), strict=True):
        layer_first, layer_pmf = _hypergeom_pmf(neurons, ka, kb)
        pmf = np.convolve(pmf, layer_pmf)
        nonzero = np.flatnonzero(pmf)
        pmf = pmf[nonzero[0] : nonzero[-1] + 1]
        first += layer_first + int(nonzero[0])
    return float(min(1.0, pmf[max(observed - first, 0) :].sum()))


def intersection_null(a: Mask, b: Mask, per_layer: bool = False) -> IntersectionNull:
    """Is |A∩B| larger than for random sets of the same per-layer sizes?

    Null: inside each layer, A and B are independent uniform draws of their observed sizes
    from that layer's neurons, so the layer's intersection is hypergeometric. The whole-model
    intersection is the sum over layers; its mean and variance are the sums of the layers',
    and its p-value is exact (convolution of the per-layer pmfs, not a normal approximation).
    The z-score is a normal-scale summary of the same comparison.
    """
    a_, b_ = _as_pair(a, b)
    neurons = a_.shape[1]
    inter = np.count_nonzero(a_ & b_, axis=1)
    size_a, size_b = np.count_nonzero(a_, axis=1), np.count_nonzero(b_, axis=1)
    mean, var = _null_moments(size_a, size_b, neurons)
    if per_layer:
        return IntersectionNull(
            observed=inter,
            expected=mean,
            variance=var,
            z=_ratio(inter - mean, np.sqrt(var)),
            p_value=hypergeom.sf(inter - 1, neurons, size_a, size_b),
            expected_jaccard=_ratio(mean, size_a + size_b - mean),
        )
    observed, total_mean, total_var = int(inter.sum()), float(mean.sum()), float(var.sum())
    size_sum = float(size_a.sum() + size_b.sum())
    return IntersectionNull(
        observed=observed,
        expected=total_mean,
        variance=total_var,
        z=float(_ratio(observed - total_mean, np.sqrt(total_var))),
        p_value=_sum_upper_tail(observed, neurons, size_a, size_b),
        expected_jaccard=float(_ratio(total_mean, size_sum - total_mean)),
    )


def layer_groups(n_layers: int, n_groups: int = 3) -> dict[str, list[int]]:
    """Contiguous groups of layers, sizes differing by at most one (earlier groups larger).

    Three groups are named "early", "middle", "late"; any other count "g0", "g1", ...
    """
    if not 1 <= n_groups <= n_layers:
        raise ValueError(f"need 1 <= n_groups <= n_layers, got {n_groups} groups of {n_layers}")
    chunks = np.array_split(np.arange(n_layers), n_groups)
    names = ["early", "middle", "late"] if n_groups == 3 else [f"g{i}" for i in range(n_groups)]
    return {name: chunk.tolist() for name, chunk in zip(names, chunks, strict=True)}


@dataclass(frozen=True)
class _Counts:
    """Everything the matrices need: per-layer pairwise intersections and set sizes."""

    names: list[str]
    intersection: np.ndarray  # [layers, T, T]
    sizes: np.ndarray  # [T, layers]
    neurons: int


def _counts(sets: Mapping[str, Mask]) -> _Counts:
    if not sets:
        raise ValueError("need at least one neuron set")
    names = list(sets)
    masks = [_as_mask(m, f"set {name!r}") for name, m in sets.items()]
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        by_name = ", ".join(f"{n!r}: {m.shape}" for n, m in zip(names, masks, strict=True))
        raise ValueError(f"neuron sets differ in shape: {by_name}")
    # A float matmul counts exactly while every partial sum (<= neurons) is exact in its type.
    # torch's bmm, not numpy's: OpenBLAS takes seconds on these skinny products when the CPUs
    # are shared with other work, torch a few hundredths.
    dtype = torch.float32 if masks[0].shape[1] < 2**24 else torch.float64
    x = torch.from_numpy(np.stack(masks, axis=1)).to(dtype)  # [layers, T, neurons]
    inter = torch.bmm(x, x.transpose(1, 2)).double().numpy()
    sizes = np.diagonal(inter, axis1=1, axis2=2).T.copy()
    return _Counts(names, inter, sizes, masks[0].shape[1])


def _layer_index(layers: slice | Sequence[int] | None, n_layers: int) -> np.ndarray:
    if layers is None:
        return np.arange(n_layers)
    try:
        idx = np.arange(n_layers)[layers]
    except IndexError as err:
        raise ValueError(f"layers {layers!r} out of range for a model of {n_layers}") from err
    if idx.size == 0:
        raise ValueError(f"layers {layers!r} select none of the model's {n_layers}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"layers {layers!r} repeat a layer")
    return idx


def _symmetric(m: np.ndarray) -> np.ndarray:
    """Mirror the upper triangle, so rounding in float matmuls cannot break symmetry."""
    return np.triu(m) + np.triu(m, 1).T


def _matrix(counts: _Counts, idx: np.ndarray, metric: Metric) -> np.ndarray:
    inter = counts.intersection[idx].sum(axis=0)
    sizes = counts.sizes[:, idx]
    total = sizes.sum(axis=1)
    if metric == "jaccard":
        return _symmetric(_ratio(inter, total[:, None] + total[None, :] - inter))
    if metric == "containment":
        return _ratio(inter, total[:, None])
    n = float(counts.neurons)  # metric "z": the moments of _null_moments, summed over layers
    spread = sizes * (n - sizes)
    mean = sizes @ sizes.T / n
    var = spread @ spread.T / (n * n * _n_minus_1(counts.neurons))
    return _symmetric(_ratio(inter - mean, np.sqrt(var)))


def _check_metrics(metrics: Sequence[str]) -> None:
    for metric in metrics:
        if metric not in METRICS:
            raise invalid_choice("overlap metric", metric, METRICS)


def overlap_matrix(
    sets: Mapping[str, Mask],
    metric: Metric = "jaccard",
    layers: slice | Sequence[int] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Task x task overlap ``[T, T]``, rows and columns in the order of ``sets``.

    "jaccard" and "z" (per-layer hypergeometric null, see ``intersection_null``) are
    symmetric; "containment" reads row -> column, |A_row ∩ A_col| / |A_row|. ``layers``
    restricts every set to those layers first (e.g. a group from ``layer_groups``).
    """
    _check_metrics([metric])
    counts = _counts(sets)
    return counts.names, _matrix(counts, _layer_index(layers, counts.sizes.shape[1]), metric)


def overlap_table(
    sets: Mapping[str, Mask],
    metrics: Sequence[Metric] = METRICS,
    groups: Mapping[str, Sequence[int]] | None = None,
    per_layer: bool = False,
) -> pd.DataFrame:
    """Long-format overlap of every ordered task pair, ready to write as CSV.

    Columns: task_a, task_b, scope, metric, value. Scope is "all" (whole model), a name from
    ``groups`` (e.g. ``layer_groups(n_layers)``), or with ``per_layer`` a layer index written
    as a string, so the column has one type. Containment reads task_a -> task_b.
    """
    _check_metrics(metrics)
    counts = _counts(sets)
    n_layers = counts.sizes.shape[1]
    scopes: dict[str, np.ndarray] = {"all": np.arange(n_layers)}
    for name, layers in (groups or {}).items():
        if name == "all" or name.isdigit():
            raise ValueError(f"group name {name!r} would clash with the 'all' or layer scopes")
        scopes[name] = _layer_index(list(layers), n_layers)
    if per_layer:
        scopes.update({str(i): np.array([i]) for i in range(n_layers)})

    names = np.array(counts.names, dtype=object)
    t = len(names)
    frames = [
        pd.DataFrame(
            {
                "task_a": np.repeat(names, t),
                "task_b": np.tile(names, t),
                "scope": scope,
                "metric": metric,
                "value": _matrix(counts, idx, metric).ravel(),
            }
        )
        for scope, idx in scopes.items()
        for metric in metrics
    ]
    return pd.concat(frames, ignore_index=True)
