"""Does a selected set of neurons concentrate in few experts, compared with random sets?

:func:`alignment_statistics` takes a partition of one layer's neurons into experts (from
``modularity.algorithms.kmeans``) and a selected set (e.g. the neurons pruning finds task
specific), and compares the set's concentration with random sets of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import entr, xlogy
from scipy.stats import hypergeom

from modularity.algorithms.kmeans import check_n_experts, check_positive
from modularity.errors import ConfigError

# Names of the statistics returned by alignment_statistics, in a stable order.
ALIGNMENT_STATISTICS = ("topk_fraction", "entropy", "ami")


@dataclass(frozen=True)
class AlignmentStat:
    """One statistic of a selected neuron set against random sets of the same size.

    ``z`` and ``p_value`` are oriented so that a set MORE concentrated in few experts than
    chance gives ``z > 0`` and a small ``p_value``, for every statistic. ``z`` is nan when
    the null has no spread.
    """

    observed: float
    null_mean: float
    null_std: float
    z: float
    p_value: float


def alignment_statistics(
    labels: np.ndarray,
    selected: np.ndarray,
    n_experts: int,
    *,
    top_k: int = 1,
    n_null: int = 1000,
    seed: int = 0,
) -> dict[str, AlignmentStat]:
    """Is the ``selected`` [d_mlp] bool neuron set concentrated in few of the experts?

    ``labels`` [d_mlp] gives each neuron's expert. Returns, keyed by
    :data:`ALIGNMENT_STATISTICS`:

    - ``topk_fraction``: fraction of selected neurons in the ``top_k`` experts holding most;
    - ``entropy``: entropy (nats) of the selected neurons' distribution over experts;
    - ``ami``: adjusted mutual information between expert labels and selected/unselected
      (as ``sklearn.metrics.adjusted_mutual_info_score``).

    The null is ``n_null`` sets of the same size drawn uniformly from the layer's neurons
    (exact multivariate hypergeometric expert counts). ``z`` is ``(observed - null_mean) /
    null_std`` for topk_fraction and ami, and ``(null_mean - observed) / null_std`` for entropy,
    so concentration is positive; ``p_value`` is ``(1 + #null at least as concentrated) /
    (1 + n_null)``.
    """
    labels = np.asarray(labels)
    selected = np.asarray(selected)
    if labels.ndim != 1 or selected.shape != labels.shape:
        raise ConfigError(
            f"labels and selected must be 1-D of the same length; got shapes {labels.shape} "
            f"and {selected.shape}"
        )
    if selected.dtype != np.bool_:
        raise ConfigError(f"selected must be a boolean mask; got dtype {selected.dtype}")
    d_mlp = labels.shape[0]
    check_n_experts(n_experts, d_mlp)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_experts:
        raise ConfigError(
            f"labels must be integers in [0, {n_experts}); got dtype {labels.dtype}, "
            f"range [{labels.min()}, {labels.max()}]"
        )
    if not 1 <= top_k <= n_experts:
        raise ConfigError(f"top_k must be between 1 and n_experts={n_experts}; got {top_k}")
    check_positive("n_null", n_null)
    n_selected = int(selected.sum())
    if not 0 < n_selected < d_mlp:
        raise ConfigError(
            f"selected must mark between 1 and {d_mlp - 1} of the {d_mlp} neurons; got {n_selected}"
        )

    sizes = np.bincount(labels, minlength=n_experts)
    observed = np.bincount(labels[selected], minlength=n_experts)
    rng = np.random.default_rng(seed)
    null = rng.multivariate_hypergeometric(sizes, n_selected, size=n_null, method="count")
    counts = np.vstack([observed, null])
    fractions = counts / n_selected
    values = {
        "topk_fraction": np.sort(fractions, axis=1)[:, n_experts - top_k :].sum(axis=1),
        "entropy": entr(fractions).sum(axis=1),
        "ami": _ami_from_counts(counts, sizes, n_selected),
    }
    signs = {"topk_fraction": 1.0, "entropy": -1.0, "ami": 1.0}
    return {name: _against_null(values[name], signs[name]) for name in ALIGNMENT_STATISTICS}


def _ami_from_counts(counts: np.ndarray, sizes: np.ndarray, n_selected: int) -> np.ndarray:
    """AMI [R] of expert labels vs selected, for each row of selected-per-expert counts [R, E].

    Same definition as sklearn (arithmetic normalisation). Every row shares the marginals, so
    the entropies and the expected mutual information are computed once.
    """
    nonempty = sizes > 0
    if nonempty.sum() == 1:
        return np.zeros(counts.shape[0])
    a = sizes[nonempty].astype(np.float64)
    n = a.sum()
    b = np.array([n_selected, n - n_selected], dtype=np.float64)
    inside = counts[:, nonempty].astype(np.float64)
    table = np.stack([inside, a - inside], axis=2)  # [R, E, 2] contingency tables
    mi = xlogy(table, n * table / (a[:, None] * b[None, :])).sum(axis=(1, 2)) / n
    mi = np.clip(mi, 0.0, None)
    h_experts = entr(a / n).sum()
    h_selected = entr(b / n).sum()
    emi = _expected_mutual_information(a, b, n)
    denominator = (h_experts + h_selected) / 2.0 - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return (mi - emi) / denominator


def _expected_mutual_information(a: np.ndarray, b: np.ndarray, n: float) -> float:
    """E[MI] between labelings with marginals a [E] and b [2] under random permutation."""
    values, multiplicity = np.unique(a, return_counts=True)
    k = np.arange(1, int(values.max()) + 1, dtype=np.float64)[None, None, :]
    row = values[:, None, None]
    col = b[None, :, None]
    pmf = hypergeom.pmf(k, int(n), row, col)  # P(cell = k), zero outside the support
    terms = (k / n) * np.log(n * k / (row * col)) * pmf
    return float((terms.sum(axis=(1, 2)) * multiplicity).sum())


def _against_null(values: np.ndarray, sign: float) -> AlignmentStat:
    """values[0] observed, values[1:] null draws; sign +1 when larger is more concentrated."""
    observed, null = float(values[0]), values[1:]
    mean = float(null.mean())
    std = float(null.std(ddof=1)) if null.size > 1 else 0.0
    z = sign * (observed - mean) / std if std > 0 else float("nan")
    # Count ties as at least as extreme, with slack for rounding in sums of the same counts.
    slack = 1e-9 * max(1.0, abs(observed))
    as_extreme = int(np.sum(sign * (null - observed) >= -slack))
    return AlignmentStat(
        observed=observed,
        null_mean=mean,
        null_std=std,
        z=z,
        p_value=(1 + as_extreme) / (1 + null.size),
    )
