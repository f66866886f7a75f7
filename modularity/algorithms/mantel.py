"""Mantel test: do two task x task matrices agree, beyond what the tasks' labels explain?

Index-by-index neuron overlap between a trained model and an unrelated random init is at
chance by symmetry, so persistence of task structure is tested permutation-invariantly: the
task x task overlap matrix of one model is correlated with the other's (off-diagonal upper
triangles), and the correlation is compared with those obtained after relabelling the tasks
of one matrix, i.e. permuting its rows and columns together. Entries of a distance-like
matrix are not independent, which is why the null comes from permutations of tasks, not of
entries.

Up to ``EXACT_MAX`` (8) tasks every permutation is enumerated and the p-value is exact;
beyond, permutations are drawn at random (``modularity.algorithms.permutations``).

``partial_mantel`` asks the same while holding a third matrix fixed (Smouse, Long & Sokal
1986): both matrices' entries are regressed on the control's and the residuals are
Mantel-tested, one residual matrix relabelled (Legendre's permutation of residuals). With
the tasks' data similarity as the control, agreement that only reflects overlapping inputs
(a class inside its superclass) no longer counts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from modularity.algorithms.permutations import (
    ALTERNATIVES,
    Alternative,
    permutation_p,
    permutations,
)
from modularity.errors import invalid_choice

Method = Literal["pearson", "spearman"]
METHODS: tuple[Method, ...] = ("pearson", "spearman")
CHUNK_CELLS = 1 << 22  # permutations x matrix entries correlated at once


@dataclass(frozen=True)
class MantelResult:
    """The correlation of two matrices' off-diagonal entries and its permutation p-value."""

    statistic: float
    p_value: float
    n_permutations: int  # enumerated (exact) or drawn (Monte Carlo)
    exact: bool
    method: Method
    alternative: Alternative


def mantel(
    a: np.ndarray,
    b: np.ndarray,
    method: Method = "pearson",
    alternative: Alternative = "greater",
    n_permutations: int = 9999,
    seed: int = 0,
) -> MantelResult:
    """Mantel test between symmetric ``[T, T]`` matrices over the same tasks, in one order.

    ``greater`` (the default) asks whether the matrices agree more than under relabelling;
    ``n_permutations`` and ``seed`` only matter beyond 8 tasks.
    """
    if method not in METHODS:
        raise invalid_choice("Mantel correlation", method, METHODS)
    if alternative not in ALTERNATIVES:
        raise invalid_choice("Mantel alternative", alternative, ALTERNATIVES)
    a_, b_ = _checked(a, "a"), _checked(b, "b")
    if a_.shape != b_.shape:
        raise ValueError(f"matrices differ in shape: a is {a_.shape}, b is {b_.shape}")
    n_tasks = a_.shape[0]
    rows, cols = np.triu_indices(n_tasks, k=1)
    if method == "spearman":  # ranks are permuted with their entries: rank once
        a_, b_ = _rank_matrix(a_, rows, cols), _rank_matrix(b_, rows, cols)
    a_std = _standardised(a_[rows, cols], "a")
    b_std = _standardised(b_[rows, cols], "b")
    observed = float(a_std @ b_std)

    relabellings = permutations(n_tasks, n_permutations, seed)
    # Relabelling b's tasks moves its entries within the triangle: the mean and spread of
    # the entries are unchanged, so the standardised triangle's entries are just permuted.
    b_std_matrix = np.zeros_like(b_)
    b_std_matrix[rows, cols] = b_std
    b_std_matrix += b_std_matrix.T
    statistics = _permuted_statistics(a_std, b_std_matrix, relabellings.orders, rows, cols)
    exact = relabellings.exact
    return MantelResult(
        statistic=observed,
        p_value=permutation_p(statistics, observed, alternative, exact),
        n_permutations=math.factorial(n_tasks) if exact else n_permutations,
        exact=exact,
        method=method,
        alternative=alternative,
    )


def partial_mantel(
    a: np.ndarray,
    b: np.ndarray,
    control: np.ndarray,
    method: Method = "pearson",
    alternative: Alternative = "greater",
    n_permutations: int = 9999,
    seed: int = 0,
) -> MantelResult:
    """Mantel test of ``a`` against ``b`` with ``control`` partialled out of both; the
    statistic is the partial correlation of their off-diagonal entries (of their ranks for
    ``spearman``)."""
    if method not in METHODS:
        raise invalid_choice("Mantel correlation", method, METHODS)
    checked = [_checked(m, name) for m, name in ((a, "a"), (b, "b"), (control, "control"))]
    if len({m.shape for m in checked}) != 1:
        raise ValueError(f"matrices differ in shape: {[m.shape for m in checked]}")
    rows, cols = np.triu_indices(checked[0].shape[0], k=1)
    if method == "spearman":
        checked = [_rank_matrix(m, rows, cols) for m in checked]
    design = np.column_stack([np.ones(len(rows)), _standardised(checked[2][rows, cols], "control")])
    residuals = []
    for m in checked[:2]:
        values = m[rows, cols]
        fitted = design @ np.linalg.lstsq(design, values, rcond=None)[0]
        matrix = np.zeros_like(m)
        matrix[rows, cols] = values - fitted
        residuals.append(matrix + matrix.T)
    result = mantel(*residuals, "pearson", alternative, n_permutations, seed)
    return dataclasses.replace(result, method=method)


def _checked(matrix: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square [T, T] matrix, got shape {m.shape}")
    if m.shape[0] < 3:
        raise ValueError(f"{name} has {m.shape[0]} tasks; a Mantel test needs at least 3")
    off_diagonal = m[~np.eye(m.shape[0], dtype=bool)]
    if not np.isfinite(off_diagonal).all():
        raise ValueError(f"{name} has non-finite off-diagonal entries (e.g. an empty set's nan)")
    if not np.allclose(m, m.T, rtol=1e-10, atol=1e-12, equal_nan=True):
        raise ValueError(f"{name} is not symmetric; a Mantel test compares symmetric matrices")
    return m


def _rank_matrix(m: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m`` with its upper triangle replaced by the entries' ranks (ties averaged)."""
    ranked = np.zeros_like(m)
    ranked[rows, cols] = rankdata(m[rows, cols])
    return ranked + ranked.T


def _standardised(values: np.ndarray, name: str) -> np.ndarray:
    """Centred, unit-norm ``values``: the dot product of two such vectors is Pearson's r."""
    centred = values - values.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        raise ValueError(f"{name}'s off-diagonal entries are all equal; no correlation exists")
    return centred / norm


def _permuted_statistics(
    a_std: np.ndarray,
    b_std_matrix: np.ndarray,
    permutations: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Pearson's r of ``a`` with ``b`` relabelled by each permutation: ``[permutations]``."""
    out = np.empty(len(permutations))
    chunk = max(1, CHUNK_CELLS // len(rows))
    for start in range(0, len(permutations), chunk):
        perm = permutations[start : start + chunk]
        out[start : start + chunk] = b_std_matrix[perm[:, rows], perm[:, cols]] @ a_std
    return out
